"""``sortsight predict MODEL PATHS...``: label new images, write predictions.csv, optionally sort them.

Thin: parse → :class:`~sortsight.config.PredictConfig` → :func:`sortsight.predict.run_predict` → render.
"""

from __future__ import annotations

from shlex import quote
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from sortsight.cli._options import config_options, given
from sortsight.cli._render import ProgressView, output_console, print_next
from sortsight.config import PREDICT_ENGINES, PredictConfig, describe_fields

__all__ = ["predict"]

#: PredictConfig's declaration of --engine; the command adds "ray" (another way to run, not an engine)
_ENGINE = next(d for d in describe_fields(PredictConfig) if d["name"] == "engine")


@click.command()
@config_options(
    PredictConfig,
    skip=("model", "inputs"),
    names={"output": ("--out", "--csv", "-o"), "num_workers": ("--workers",)},
)
@click.argument("model", type=click.Path())
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option(
    "--engine",
    type=click.Choice([*PREDICT_ENGINES, "ray"]),
    default=None,
    help=f"{_ENGINE['help'].rstrip('.')}; ray spreads the job over a Ray cluster (RAY_ADDRESS, else a "
    f"local one; see docs/scale.md).  [default: {_ENGINE['default_text']}]",
)
def predict(model: str, paths: tuple[str, ...], **options: Any) -> None:
    """Predict labels for PATHS (image files, folders searched recursively, or a CSV of paths).

    MODEL is a run folder (runs/NAME), an HF image-classification model folder, or an exported .onnx file.

    \b
    Examples:
      sortsight predict runs/covers new_scans/
      sortsight predict runs/covers new_scans/ --sort-into sorted/ --threshold 0.6 --dry-run
    """
    from sortsight.predict import run_predict

    options = given(options)
    if options.get("engine") == "ray":  # Ray Data actors, each running the fastest local engine
        from sortsight.predict_ray import run_predict_ray as run_predict

        options["engine"] = "auto"
    config = PredictConfig(model=model, inputs=paths, **options)
    err = Console(stderr=True)
    with ProgressView(err) as progress:
        summary, sorted_summary = run_predict(config, progress=progress)
    out = output_console(markup=False)  # file names and labels are printed as they are
    parts = [f"{summary.ok} ok", f"{summary.unsure} unsure", f"{summary.unreadable} unreadable"]
    resumed = f" ({summary.already_done} already done earlier)" if summary.already_done else ""
    rate = f" at {summary.images_per_second:.1f} images/s ({summary.engine})" if summary.predicted else ""
    out.print(f"Predicted {summary.predicted} images{rate}: {', '.join(parts)}{resumed}.")
    if summary.reasons:
        out.print(
            "Unreadable: " + ", ".join(f"{n} {reason}" for reason, n in sorted(summary.reasons.items()))
        )
    out.print(f"Predictions: {summary.output}")
    if sorted_summary is None:
        print_next(
            out,
            f"open {quote(str(summary.output))}, or add --sort-into DIR to copy the images into one "
            "folder per label.",
        )
        return
    table = Table(title="Dry run: nothing was copied or moved" if sorted_summary.dry_run else "Sorted")
    table.add_column("folder")
    table.add_column("images", justify="right")
    for folder, n in sorted_summary.per_folder.items():
        table.add_row(f"{sorted_summary.dest}/{folder}", str(n))
    out.print(table)
    counts = sorted_summary.counts
    out.print(", ".join(f"{n} {action}" for action, n in sorted(counts.items())))
    verb = "move" if config.move else "copy"
    for action in sorted_summary.notes[:20]:  # what did not go as asked: a source kept, a link
        out.print(f"  note: {action.source}: {action.note}")
    if len(sorted_summary.notes) > 20:
        out.print(f"  … and {len(sorted_summary.notes) - 20} more notes (see the log)")
    if sorted_summary.dry_run:
        for action in sorted_summary.actions[:20]:
            if action.destination:
                what = verb if action.action in ("copy", "move") else action.action
                out.print(f"  {what}: {action.source} -> {action.destination}")
        if len(sorted_summary.actions) > 20:
            out.print(f"  … and {len(sorted_summary.actions) - 20} more")
        print_next(out, f"run the same command without --dry-run to {verb} the images.")
    else:
        unsure = sorted_summary.per_folder.get("unsure", 0)
        dest = sorted_summary.dest
        look = f"look through {quote(str(dest / 'unsure'))} ({unsure} images)" if unsure else f"open {dest}"
        if sorted_summary.log_path.is_file():
            undo = f"sortsight undo {quote(str(sorted_summary.log_path))}"
            print_next(out, f"{look}; to put everything back: {undo}")
        else:  # nothing copied or moved (--tags-only writes DEST/tags.csv): nothing to undo
            print_next(out, look)
