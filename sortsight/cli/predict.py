"""``sortsight predict MODEL PATHS...``: label new images, write predictions.csv, optionally sort them.

Thin: parse → :class:`~sortsight.config.PredictConfig` → :func:`sortsight.predict.run_predict` → render.
"""

from __future__ import annotations

from typing import Any

import click
from rich.console import Console
from rich.table import Table

from sortsight.cli._render import ProgressView, output_console
from sortsight.config import PREDICT_ENGINES, PredictConfig

__all__ = ["predict"]


@click.command()
@click.argument("model", type=click.Path())
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option(
    "--out",
    "--csv",
    "-o",
    "output",
    default="predictions.csv",
    show_default=True,
    help="Predictions file (CSV; JSON Lines when it ends in .jsonl). Rerunning resumes it.",
)
@click.option("--jsonl", is_flag=True, help="Write JSON Lines (predictions.jsonl) instead of CSV.")
@click.option("--top-k", default=5, show_default=True, type=int, help="Labels kept per image.")
@click.option(
    "--threshold",
    default=0.0,
    show_default=True,
    type=float,
    help="Below this best score an image is 'unsure' (and sorted into unsure/). Multi-label models: "
    "one threshold for every tag instead of each tag's own (0: the model's own).",
)
@click.option(
    "--sort-into",
    type=click.Path(),
    default=None,
    help="Copy each image into DIR/<label>/ (unsure ones into DIR/unsure/).",
)
@click.option("--move", is_flag=True, help="With --sort-into: move the images instead of copying them.")
@click.option("--dry-run", is_flag=True, help="With --sort-into: show the plan, touch no image.")
@click.option(
    "--merge-identical",
    is_flag=True,
    help="With --sort-into: content already in the label folder is not copied again "
    "(with --move the source is removed; logged, undo restores it).",
)
@click.option(
    "--follow-links",
    is_flag=True,
    help="Also search folders reached through symbolic links (not with --move).",
)
@click.option(
    "--tags-only",
    is_flag=True,
    help="Multi-label models, with --sort-into: write DIR/tags.csv (path, tags) instead of copying images.",
)
@click.option(
    "--engine",
    type=click.Choice([*PREDICT_ENGINES, "ray"]),
    default="auto",
    show_default=True,
    help="Inference engine; auto takes the fastest available (onnx, then jit, then eager); "
    "ray spreads the job over a Ray cluster (RAY_ADDRESS, else a local one; see docs/scale.md).",
)
@click.option("--batch-size", default=32, show_default=True, type=int)
@click.option(
    "--workers",
    "num_workers",
    default=None,
    type=int,
    help="Image-decoding processes (default: sized for this machine).",
)
@click.option("--tta", is_flag=True, help="Flip test-time augmentation: average with the mirror image.")
def predict(model: str, paths: tuple[str, ...], **options: Any) -> None:
    """Predict labels for PATHS (image files, folders searched recursively, or a CSV of paths).

    MODEL is a run folder (runs/NAME), an HF image-classification model folder, or an exported .onnx file.

    \b
    Examples:
      sortsight predict runs/covers new_scans/
      sortsight predict runs/covers new_scans/ --sort-into sorted/ --threshold 0.6 --dry-run
    """
    from sortsight.predict import run_predict

    if options["engine"] == "ray":  # Ray Data actors, each running the fastest local engine
        from sortsight.ray_engine import run_predict_ray as run_predict

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
    if sorted_summary is not None:
        table = Table(title="Dry run: nothing was copied or moved" if sorted_summary.dry_run else "Sorted")
        table.add_column("folder")
        table.add_column("images", justify="right")
        for folder, n in sorted_summary.per_folder.items():
            table.add_row(f"{sorted_summary.dest}/{folder}", str(n))
        out.print(table)
        counts = sorted_summary.counts
        out.print(", ".join(f"{n} {action}" for action, n in sorted(counts.items())))
        if sorted_summary.dry_run:
            for action in sorted_summary.actions[:20]:
                if action.destination:
                    verb = "move" if config.move else "copy"
                    what = verb if action.action in ("copy", "move") else action.action
                    out.print(f"  {what}: {action.source} -> {action.destination}")
            if len(sorted_summary.actions) > 20:
                out.print(f"  … and {len(sorted_summary.actions) - 20} more")
        else:
            out.print(f"Log (for 'sortsight undo'): {sorted_summary.log_path}")
        for action in sorted_summary.notes[:20]:  # what did not go as asked: a source kept, a link
            out.print(f"  note: {action.source}: {action.note}")
        if len(sorted_summary.notes) > 20:
            out.print(f"  … and {len(sorted_summary.notes) - 20} more notes (see the log)")
