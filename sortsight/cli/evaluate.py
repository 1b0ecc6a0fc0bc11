"""``sortsight evaluate MODEL [DATA]``: metrics, confusion matrix, top losses, calibration, report.html.

Thin: parse → :func:`sortsight.evaluate.evaluate` → :meth:`Evaluation.save` → render.
"""

from __future__ import annotations

import json
from pathlib import Path
from shlex import quote

import click
from rich.console import Console
from rich.table import Table

from sortsight.cli._options import config_options, given
from sortsight.cli._render import ProgressView, output_console, print_next
from sortsight.config import DEFAULT_TOP_LOSSES, PredictConfig
from sortsight.runs import RunFolder

__all__ = ["evaluate"]


@click.command()
@config_options(
    PredictConfig, only=("engine", "batch_size", "num_workers", "tta"), names={"num_workers": ("--workers",)}
)
@click.argument("model", type=click.Path())
@click.argument("data", required=False, type=click.Path())
@click.option(
    "--split", default=None, help="Split of DATA to use (default: test when it has one, else all images)."
)
@click.option(
    "--out",
    "-o",
    "out_dir",
    type=click.Path(),
    default=None,
    help="Folder for report.html and evaluation.json (default: the run folder, else ./evaluation).",
)
@click.option(
    "--top-losses", default=DEFAULT_TOP_LOSSES, show_default=True, type=int, help="Worst predictions shown."
)
@click.option("--no-thumbnails", is_flag=True, help="Leave image thumbnails out of report.html.")
@click.option("--json", "as_json", is_flag=True, help="Print evaluation.json's numbers instead of tables.")
def evaluate(
    model: str,
    data: str | None,
    split: str | None,
    out_dir: str | None,
    engine: str | None,
    batch_size: int | None,
    num_workers: int | None,
    top_losses: int,
    no_thumbnails: bool,
    as_json: bool,
    tta: bool | None,
) -> None:
    """Measure MODEL on labelled DATA and write report.html + evaluation.json.

    MODEL is a run folder (runs/NAME; its held-out test split is used when DATA is omitted) or any
    HF image-classification model folder, e.g. one saved by a transformers Trainer.

    \b
    Examples:
      sortsight evaluate runs/covers
      sortsight evaluate path/to/hf-model labelled_photos/ --out eval/
    """
    from sortsight.evaluate import evaluate as run_evaluate

    # the prediction settings are PredictConfig's: declared and checked there
    settings = PredictConfig(
        model=model,
        **given({"engine": engine, "batch_size": batch_size, "num_workers": num_workers, "tta": tta}),
    )
    err = Console(stderr=True)
    with ProgressView(err) as progress:
        ev = run_evaluate(
            model,
            data,
            split=split,
            engine=settings.engine,
            batch_size=settings.batch_size,
            num_workers=settings.num_workers,
            top_losses=top_losses,
            progress=progress,
            tta=settings.tta,
        )
    if out_dir is None:  # a run keeps its report; any other model gets ./evaluation
        run = RunFolder.find(model) if Path(model).is_dir() else None
        out_dir = str(run.run_dir) if run is not None else "evaluation"
    written = ev.save(out_dir, thumbnails=not no_thumbnails)
    out = output_console()
    if as_json:
        payload = {k: v for k, v in ev.to_dict().items() if k != "predictions"}
        payload["files"] = {k: str(v) for k, v in written.items()}
        click.echo(json.dumps(payload, indent=2, ensure_ascii=False))
        return
    if ev.note:
        err.print(f"[yellow]Note:[/yellow] {ev.note}")
    table = Table(title=f"{ev.model} on {ev.data} ({ev.split}, {ev.metrics['n_images']} images)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in ev.metrics.items():
        if key != "n_images":
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    table.add_row("ece", f"{ev.calibration['ece']:.4f}")
    out.print(table)
    per_class = Table(title="Per class")
    for name in ("label", "precision", "recall", "f1", "images"):
        per_class.add_column(name, justify="left" if name == "label" else "right")
    for row in ev.per_class:
        per_class.add_row(
            row["label"],
            f"{row['precision']:.3f}",
            f"{row['recall']:.3f}",
            f"{row['f1']:.3f}",
            str(row["support"]),
        )
    out.print(per_class)
    worst = getattr(ev, "worst", None)  # a multi-label evaluation
    if worst:
        shown = "; ".join(f"{Path(w['path']).name} ({w['wrong']})" for w in worst[:5])
        out.print(f"Most wrong tags: {shown}")
    if ev.most_confused:
        out.print(
            "Most confused: "
            + "; ".join(f"{p['true']} → {p['predicted']} ({p['count']})" for p in ev.most_confused[:5])
        )
    if ev.skipped:
        out.print(f"{len(ev.skipped)} images could not be read (listed in the report).")
    out.print(f"Report: {written['report']}")
    out.print(f"Numbers: {written['json']}")
    print_next(
        out,
        f"open {quote(str(written['report']))} in a browser; sort new images with: "
        f"sortsight predict {quote(model)} NEW_IMAGES/ --sort-into sorted/",
    )
