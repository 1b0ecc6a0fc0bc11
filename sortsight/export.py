"""Export façade used by ``sortsight export`` and the studio: ONNX, a Space folder, a Hub push.

The work is done elsewhere — ONNX in :mod:`sortsight.onnx_graphs`, the Space folder in
:mod:`sortsight.space`, the upload in :mod:`sortsight.hub` — so every front-end exports the
same way.

    >>> from sortsight import export
    >>> export.export_space("runs/covers", "covers-space")  # doctest: +SKIP
    >>> export.push("covers-space", "me/covers", repo_type="space")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from sortsight.hub import RepoType, push_to_hub
from sortsight.space import export_space, resolve_model_dir

__all__ = ["export_onnx", "export_space", "push", "push_to_hub"]


def export_onnx(model_dir: str | Path, out: str | Path | None = None, *, optimised: bool = True) -> Path:
    """Write ``model.onnx`` (labels and preprocessing in its metadata) for a run or model folder.

    Args:
        model_dir: a run folder or a model folder.
        out: the ``.onnx`` file (default: ``model.onnx`` inside the model folder).
        optimised: the graph ONNX Runtime runs fastest (torch.export: ~15 s to make for Lite0 on
            a 2-core CPU); False: the quick graph (TorchScript exporter, a second or two).

    Returns:
        The path written.

    Raises:
        ModelError: the folder cannot be loaded or exported.
    """
    from sortsight.model_folder import load_model_folder
    from sortsight.onnx_graphs import export_onnx as _export_onnx

    return _export_onnx(load_model_folder(model_dir), out, optimised=optimised)


def push(
    folder: str | Path,
    repo_id: str,
    *,
    repo_type: RepoType | None = None,
    private: bool = True,
    token: str | None = None,
) -> str:
    """Push a model folder (or run folder) or a Space folder to the Hub; private unless ``private=False``.

    ``repo_type`` defaults to ``"space"`` for a folder with ``app.py`` and ``"model"`` otherwise.
    Returns the repo URL. See :func:`sortsight.hub.push_to_hub` (errors: ``ExportError``).
    """
    folder = Path(folder)
    if repo_type is None:
        repo_type = "space" if (folder / "app.py").is_file() else "model"
    if repo_type == "model":
        folder, _ = resolve_model_dir(folder)
    return push_to_hub(folder, repo_id, repo_type=repo_type, private=private, token=token)
