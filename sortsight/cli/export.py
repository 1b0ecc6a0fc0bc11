"""``sortsight export MODEL``: ONNX (``--onnx``), a Space folder (``--space``), Hub push (``--push-to-hub``).

Thin: parse → :mod:`sortsight.export` → render.
"""

from __future__ import annotations

from pathlib import Path
from shlex import quote
from typing import Literal

import click
from rich.console import Console

from sortsight.cli._render import output_console, print_next
from sortsight.errors import ConfigError

__all__ = ["export"]


def _free_folder(base: Path) -> Path:
    candidate, n = base, 2
    while candidate.exists():
        candidate, n = base.with_name(f"{base.name}-{n}"), n + 1
    return candidate


def _export_dataset(out: Console, data: str, folder: str | None, repo: str | None, public: bool) -> None:
    from sortsight.dataset_export import export_dataset, push_dataset_to_hub
    from sortsight.hub import check_repo_id

    if repo:
        check_repo_id(repo)  # before the export, not after it
    source = Path(data).resolve()
    name = source.stem if source.is_file() else source.name  # labels.csv -> labels-dataset
    target = Path(folder) if folder else _free_folder(Path(name + "-dataset"))
    done = export_dataset(data, target)
    per_split = done.images or {s: sum(c.values()) for s, c in done.counts.items()}
    splits = ", ".join(f"{s} {n}" for s, n in per_split.items())
    kind = "with {} tags" if done.task == "multi_label" else "in {} classes"
    out.print(f"Dataset: {done.folder} ({done.total} images {kind.format(len(done.classes))}: {splits}).")
    if repo:
        visibility = "public" if public else "private"
        out.print(f"Pushing the dataset folder to {repo} ({visibility})…")
        url = push_dataset_to_hub(done.folder, repo, private=not public)
        out.print(f"Pushed: {url}")
        print_next(out, f"open {url}")
    else:
        print_next(
            out, f"datasets.load_dataset({str(done.folder)!r}) reads it; push it with --dataset-to-hub"
        )


@click.command()
@click.argument("model", type=click.Path())
@click.option(
    "--onnx",
    "to_onnx",
    is_flag=True,
    help="Write model.onnx (labels and preprocessing in its metadata) into the model folder.",
)
@click.option(
    "--onnx-file",
    type=click.Path(),
    default=None,
    help="Where to write the ONNX file instead (implies --onnx).",
)
@click.option(
    "--space",
    "space_dir",
    type=click.Path(),
    default=None,
    help="Write a Hugging Face Space folder (Gradio demo, runs as it is) into this new folder.",
)
@click.option(
    "--examples",
    type=click.Path(),
    default=None,
    help="Example images for the Space (default: the run's validation images).",
)
@click.option("--title", default=None, help="The Space's title (default: from the model card).")
@click.option(
    "--push-to-hub",
    "repo_id",
    default=None,
    metavar="USER/NAME",
    help="Upload to the Hub: the Space folder with --space, else the model folder. Private.",
)
@click.option(
    "--dataset-out",
    type=click.Path(file_okay=False),
    default=None,
    help="MODEL is then a dataset (DATA): write it in the HF datasets format into this new folder.",
)
@click.option(
    "--dataset-to-hub",
    "dataset_repo",
    default=None,
    metavar="USER/NAME",
    help="MODEL is then a dataset (DATA): export it (to --dataset-out or DATA-dataset/) and upload. Private.",
)
@click.option("--public", is_flag=True, help="Make a new Hub repo public (default: private).")
def export(
    model: str,
    dataset_out: str | None,
    dataset_repo: str | None,
    to_onnx: bool,
    onnx_file: str | None,
    space_dir: str | None,
    examples: str | None,
    title: str | None,
    repo_id: str | None,
    public: bool,
) -> None:
    """Export MODEL (a run folder or model folder) for use elsewhere.

    \b
    Examples:
      sortsight export runs/covers --onnx
      sortsight export runs/covers --onnx-file covers.onnx
      sortsight export runs/covers --space covers-space
      sortsight export runs/covers --space covers-space --push-to-hub me/covers
      sortsight export birds/ --dataset-out birds-dataset
      sortsight export birds/ --dataset-to-hub me/birds
    """
    from sortsight import export as api

    out = output_console()
    if dataset_out or dataset_repo:
        if to_onnx or onnx_file or space_dir or repo_id:
            raise ConfigError("--dataset-out/--dataset-to-hub export a dataset: leave out the model options.")
        _export_dataset(out, model, dataset_out, dataset_repo, public)
        return
    then = ""  # what to do next: the last thing made
    if to_onnx or onnx_file:
        path = api.export_onnx(model, onnx_file)
        size = Path(path).stat().st_size / 1e6
        out.print(f"ONNX: {path} ({size:.1f} MB; checked against PyTorch within 1e-3).")
        then = f"predict with it: sortsight predict {quote(str(path))} IMAGES/"
    if (examples or title) and not space_dir:
        raise ConfigError("--examples and --title belong to a Space: add --space DIR.")
    if public and not repo_id:
        raise ConfigError("--public only applies to an upload: add --push-to-hub USER/NAME.")
    if space_dir:
        space = api.export_space(model, space_dir, examples=examples, title=title)
        out.print(f"Space folder: {space}")
        then = f"try it: cd {quote(str(space))} && python app.py"
    if repo_id:
        folder = space_dir or model  # MODEL may also be a Space folder exported before
        kind: Literal["model", "space"] = "space" if (Path(folder) / "app.py").is_file() else "model"
        visibility = "public" if public else "private"
        out.print(f"Pushing the {kind} folder to {repo_id} ({visibility})…")
        url = api.push(folder, repo_id, repo_type=kind, private=not public)
        out.print(f"Pushed: {url}")
        then = f"open {url}"
    if not then:
        raise ConfigError(
            "Nothing to export. Choose a target, e.g. --onnx or --space DIR. See 'sortsight export --help'."
        )
    print_next(out, then)
