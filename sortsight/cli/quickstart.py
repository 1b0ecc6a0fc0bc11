"""``sortsight quickstart``: the whole job on the bundled sample, in a few minutes."""

from __future__ import annotations

from shlex import quote

import click
from rich.table import Table

from sortsight.cli._options import config_options
from sortsight.cli._render import ProgressView, output_console, print_next
from sortsight.config import TrainConfig


@click.command()
@click.option(
    "--out",
    "workdir",
    default="sortsight-quickstart",
    show_default=True,
    type=click.Path(),
    help="Work folder (an existing one is kept; a new '-2' sibling is used).",
)
@click.option(
    "--threshold",
    default=0.6,
    show_default=True,
    type=float,
    help="Inbox images scored below this go into sorted/unsure/.",
)
@config_options(TrainConfig, only=("epochs",))  # training's own declaration, checked by TrainConfig
def quickstart(workdir: str, threshold: float, epochs: int | None) -> None:
    """Train → evaluate → report → sort on the bundled Fashion-MNIST sample (offline, CPU)."""
    from sortsight.quickstart import run_quickstart

    console = output_console()
    with ProgressView() as view:
        result = run_quickstart(workdir, threshold=threshold, epochs=epochs, progress=view)

    best = result.train.best
    table = Table(title="sortsight quickstart", show_header=False)
    totals = result.data["totals"]
    table.add_row(
        "data",
        f"{totals['total']} images in {len(result.data['classes'])} classes "
        f"({totals['train']} train, {totals['validation']} validation, {totals.get('test', 0)} test)",
    )
    table.add_row("model", f"{best.model} at {best.image_size} px, kept: {best.chosen}")
    table.add_row(
        "validation accuracy",
        f"{best.metrics.get('accuracy', 0):.3f} "
        f"(logistic-regression head alone: {best.head_metrics.get('accuracy', 0):.3f})",
    )
    table.add_row(f"{result.evaluation.split} accuracy", f"{result.evaluation.accuracy:.3f}")
    table.add_row("training time", f"{result.train.seconds:.0f} s")
    table.add_row("report", str(result.report))
    table.add_row("model folder", str(result.train.model_dir))
    if result.sorted is not None:
        counts = ", ".join(f"{k}: {v}" for k, v in result.sorted.per_folder.items())
        table.add_row("inbox sorted", f"{result.sorted.dest} ({counts})")
    table.add_row("predictions", str(result.predictions.output))
    console.print(table)
    print_next(
        console,
        f"open {quote(str(result.report))} in a browser; try the demo: "
        f"sortsight app {quote(str(result.train.run_dir))}",
    )
