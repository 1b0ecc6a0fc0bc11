"""ONNX graphs of a model folder: made (quick or optimised), checked, described, cached, found, run.

A graph is made from a loaded model folder by one of two exporters: the TorchScript exporter
(the *quick* graph, 1–2 s for Lite0) or the ``torch.export``-based one (the *optimised*
graph: ONNX Runtime runs it faster, but it takes ~15 s to make on a 2-core CPU); see
:mod:`sortsight.engines` for which a job makes and ``docs/predict.md`` for the figures. Every
graph is checked against PyTorch before it is used, and carries the labels, the preprocessing,
the exporter and the SHA-256 of the files it was made from in its ``metadata_props``, so a
``.onnx`` file alone is enough to predict and a stale one is never used.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from sortsight import __version__
from sortsight.errors import ModelError, first_line
from sortsight.fileops import cache_dir as _cache_root
from sortsight.model_folder import LoadedModel
from sortsight.models import DataConfig
from sortsight.ort import ort_session

logger = logging.getLogger(__name__)

__all__ = [
    "OPTIMISED_PAYS_FROM",
    "OnnxEngine",
    "cached_graph",
    "export_onnx",
    "find_current_onnx",
    "onnx_cache_dir",
    "quiet",
    "read_onnx_metadata",
    "source_digest",
    "wants_optimised",
]

#: the fewest images for which a job exports the optimised graph (measured break-even: docs/predict.md)
OPTIMISED_PAYS_FROM = 4000
_META_PREFIX = "sortsight."


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Hide the exporters' deprecation chatter and progress lines (the library never prints)."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


class OnnxEngine:
    """An ONNX graph run by ONNX Runtime's CPU provider.

    Two settings differ from ONNX Runtime's defaults, for decoding and compute to share the
    cores: a batch is run ``micro_batch`` images at a time, and idle threads sleep instead of
    busy-waiting (``spin=False``), so the processes decoding the next batch get the cores
    between the small runs. ``benchmarks/predict_speed.py`` compares them end to end; on a
    2-core Xeon (AVX512, Lite0) its medians were 69.3 img/s with the defaults, 72.1 without
    spinning alone, and 84.3 with both. An image's logits do not depend on its batch.
    """

    name = "onnx"

    def __init__(
        self,
        model: str | Path | bytes,
        *,
        threads: int | None = None,
        micro_batch: int = 4,
        spin: bool = False,
    ) -> None:
        self.micro_batch = max(1, int(micro_batch))
        try:
            self.session = ort_session(model, threads=threads, spin=spin)
        except ImportError as exc:
            raise ModelError("The onnx engine needs onnxruntime. Run: pip install onnxruntime") from exc
        except Exception as exc:  # onnxruntime raises its own untyped errors
            first = first_line(exc)
            raise ModelError(
                f"ONNX Runtime cannot load this model: {first}. Re-export it with "
                f"'sortsight export MODEL --onnx'."
            ) from exc
        self.input_name = self.session.get_inputs()[0].name
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)

    def __call__(self, pixels: Any) -> np.ndarray:
        x = pixels.numpy() if hasattr(pixels, "numpy") else np.asarray(pixels)
        x = np.ascontiguousarray(x, dtype=np.float32)  # (B, 3, H, W)
        step = self.micro_batch
        chunks = [x[i : i + step] for i in range(0, len(x), step)] or [x]
        outs = [self.session.run(None, {self.input_name: chunk})[0] for chunk in chunks]
        return np.concatenate(outs).astype(np.float32, copy=False)


def source_digest(model_dir: str | Path) -> str:
    """SHA-256 of what an exported graph is made from: a model folder's weights, config, processor."""
    digest = hashlib.sha256()
    folder = Path(model_dir)
    weights = sorted(p.name for p in folder.glob("*.safetensors"))
    if not weights:
        raise ModelError(f"No .safetensors weights in '{folder}'. Give an HF model folder.")
    for name in [*weights, "config.json", "preprocessor_config.json"]:
        if not (folder / name).is_file():
            continue
        digest.update(name.encode())
        with open(folder / name, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def onnx_cache_dir() -> Path:
    """Where exported graphs are cached: ``$SORTSIGHT_CACHE/onnx`` or ``~/.cache/sortsight/onnx``."""
    return _cache_root() / "onnx"


def _metadata(labels: Sequence[str], data_config: DataConfig, name: str, digest: str) -> dict[str, str]:
    dc = asdict(data_config)
    return {
        "labels": json.dumps(list(labels), ensure_ascii=False),
        "id2label": json.dumps({str(i): label for i, label in enumerate(labels)}, ensure_ascii=False),
        "input_size": str(dc["input_size"]),
        "mean": json.dumps(list(dc["mean"])),
        "std": json.dumps(list(dc["std"])),
        "interpolation": str(dc["interpolation"]),
        "crop_pct": str(dc["crop_pct"]),
        "crop_mode": str(dc["crop_mode"]),
        "input_layout": "NCHW float32, RGB, normalised with mean/std after resize+centre crop",
        "model_name": name,
        _META_PREFIX + "source_sha256": digest,
        _META_PREFIX + "version": __version__,
    }


def _torch_export(module: Any, example: tuple[Any, ...]) -> Any:
    """The optimised graph: torch.export, then ONNX (slow to make, faster to run)."""
    import torch

    program = torch.onnx.export(
        module,
        example,
        None,
        dynamo=True,
        verbose=False,
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        input_names=["pixel_values"],
        output_names=["logits"],
    )
    if program is None:  # pragma: no cover - torch returns a program when no file is given
        raise ModelError("torch.export gave no ONNX program")
    return program.model_proto


def _torchscript_export(module: Any, example: tuple[Any, ...]) -> Any:
    """The quick graph: the TorchScript exporter (1–2 s for Lite0 on a 2-core CPU)."""
    import onnx
    import torch

    buffer = io.BytesIO()
    torch.onnx.export(
        module,
        example,
        buffer,  # type: ignore[arg-type]
        dynamo=False,
        opset_version=17,
        dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"}},
        input_names=["pixel_values"],
        output_names=["logits"],
    )
    return onnx.load_from_string(buffer.getvalue())


_EXPORTERS = {"torch.export": _torch_export, "torchscript": _torchscript_export}


def _export_proto(module: Any, input_size: int, *, optimised: bool) -> tuple[Any, str]:
    """The module as an ONNX ``ModelProto`` with a dynamic batch axis, and the exporter that made it:
    the optimised graph's exporter first when ``optimised``, else the quick one; each is the
    other's fallback for a model it cannot capture."""
    import torch

    module = module.eval()
    example = (torch.zeros(2, 3, input_size, input_size),)  # (B, 3, H, W)
    order = ["torch.export", "torchscript"] if optimised else ["torchscript", "torch.export"]
    failure: Exception | None = None
    for name in order:
        try:
            with quiet():
                return _EXPORTERS[name](module, example), name
        except Exception as exc:  # the exporters raise many types; the next one is tried
            logger.info("ONNX export with %s failed (%s)", name, first_line(exc))
            failure = failure or exc
    assert failure is not None
    raise ModelError(
        f"This model cannot be exported to ONNX ({type(failure).__name__}: {first_line(failure)}); "
        "use --engine jit or eager."
    ) from failure


def _write_proto(proto: Any, out: Path) -> None:
    from sortsight.fileops import atomic_write

    data = proto.SerializeToString()
    atomic_write(out, lambda fh: fh.write(data))  # a unique temporary name: concurrent exports are safe


def export_onnx(loaded: LoadedModel, out: str | Path | None = None, *, optimised: bool = True) -> Path:
    """Export a loaded model folder to ONNX, with labels and preprocessing in ``metadata_props``.

    Args:
        loaded: from :func:`sortsight.model_folder.load_model_folder`.
        out: the ``.onnx`` file to write (default: ``model.onnx`` in the model folder).
        optimised: make the graph ONNX Runtime runs fastest (torch.export: seconds longer to make);
            False: the quick graph (TorchScript exporter). The exporter is in the metadata.

    Returns:
        The path written (atomically: a temporary file, then a rename).

    Raises:
        ModelError: the model cannot be exported.

    Example:
        >>> from sortsight.model_folder import load_model_folder
        >>> export_onnx(load_model_folder("runs/covers"))  # doctest: +SKIP
        PosixPath('runs/covers/model/model.onnx')
    """
    import onnx

    target = Path(out) if out is not None else Path(loaded.path) / "model.onnx"
    proto, exporter = _export_proto(loaded.module, loaded.data_config.input_size, optimised=optimised)
    meta = _metadata(loaded.labels, loaded.data_config, loaded.name, source_digest(loaded.path))
    meta[_META_PREFIX + "exporter"] = exporter
    _check_parity(proto, loaded)
    from sortsight.multilabel import with_sigmoid_output

    proto, meta = with_sigmoid_output(proto, meta, loaded.path)  # multi-label: + "scores" output
    onnx.helper.set_model_props(proto, meta)
    _write_proto(proto, target)
    return target


def _check_parity(proto: Any, loaded: LoadedModel, tolerance: float = 1e-3) -> None:
    """Refuse an exported graph whose logits differ from PyTorch's on a random batch."""
    import torch

    size = loaded.data_config.input_size
    x = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(0))  # (B, 3, H, W)
    with torch.inference_mode():
        expected = loaded.module.eval()(x).float().numpy()
    got = OnnxEngine(proto.SerializeToString(), threads=1)(x)
    diff = float(np.abs(expected - got).max())
    if not diff <= tolerance:
        raise ModelError(
            f"The ONNX export of this model differs from PyTorch (max logit difference {diff:.2g}); "
            f"use --engine jit or eager."
        )


def read_onnx_metadata(path: str | Path) -> tuple[list[str], DataConfig, str, dict[str, str]]:
    """Labels, preprocessing and model name stored in an exported ``.onnx`` file.

    Raises:
        ModelError: the file is missing or was not exported with this metadata.
    """
    import onnx

    p = Path(path)
    if not p.is_file():
        raise ModelError(f"ONNX file '{p}' not found. Export one with 'sortsight export MODEL --onnx'.")
    try:
        proto = onnx.load(str(p), load_external_data=False)
    except Exception as exc:  # protobuf decode errors
        raise ModelError(
            f"'{p}' is not a readable ONNX file. Export one with 'sortsight export MODEL --onnx'."
        ) from exc
    meta = {prop.key: prop.value for prop in proto.metadata_props}
    if "labels" not in meta or "input_size" not in meta:
        raise ModelError(
            f"'{p}' has no labels/preprocessing metadata. Export it with 'sortsight export "
            f"MODEL --onnx', or give the model folder instead."
        )
    data_config = DataConfig(
        input_size=int(meta["input_size"]),
        mean=tuple(json.loads(meta.get("mean", "[0.5, 0.5, 0.5]"))),  # type: ignore[arg-type]
        std=tuple(json.loads(meta.get("std", "[0.5, 0.5, 0.5]"))),  # type: ignore[arg-type]
        interpolation=meta.get("interpolation", "bicubic"),
        crop_pct=float(meta.get("crop_pct", "1.0")),
        crop_mode=meta.get("crop_mode", "center"),
    )
    return list(json.loads(meta["labels"])), data_config, meta.get("model_name", p.stem), meta


def cached_graph(digest: str, cache_dir: Path | None, *, optimised: bool) -> Path:
    kind = "" if optimised else "-quick"
    return (cache_dir or onnx_cache_dir()) / f"{digest[:32]}-{__version__}{kind}.onnx"


def wants_optimised(images: int | None) -> bool:
    """Whether a job of ``images`` images (None: unknown) is big enough to make the optimised graph."""
    return images is not None and images >= OPTIMISED_PAYS_FROM


def find_current_onnx(
    model_dir: str | Path, cache_dir: str | Path | None = None, *, optimised: bool = False
) -> Path | None:
    """An ONNX graph made from exactly this folder's files: its own ``model.onnx`` or a cached export
    (the optimised graph before the quick one; only the optimised one when ``optimised``).

    Needs no model load, so a cached model starts fast and light.
    """
    folder = Path(model_dir)
    digest = source_digest(folder)
    beside = folder / "model.onnx"
    if beside.is_file():
        try:
            meta = read_onnx_metadata(beside)[3]
        except ModelError:
            meta = {}
        quick = meta.get(_META_PREFIX + "exporter") == "torchscript"
        if meta.get(_META_PREFIX + "source_sha256") == digest and not (optimised and quick):
            return beside
    cache = Path(cache_dir) if cache_dir is not None else None
    for kind in (True,) if optimised else (True, False):
        cached = cached_graph(digest, cache, optimised=kind)
        if cached.is_file():
            return cached
    return None
