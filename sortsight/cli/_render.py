"""Rendering of library progress events for the terminal (one renderer for every command)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from sortsight.progress import ProgressEvent

__all__ = [
    "PHASES",
    "ProgressView",
    "counts_table",
    "output_console",
    "print_next",
    "render_run_skipped",
    "render_skipped",
]

PHASES = {
    "scan": "Checking images",
    "verify": "Checking images",
    "extract": "Extracting dataset images",
    "features": "Reading features",
    "cache": "Preparing images",
    "trunk": "Caching early layers",
    "warmup": "Measuring speed",
    "head": "Training the head",
    "train": "Fine-tuning",
    "finetune": "Fine-tuning",
    "evaluate": "Evaluating",
    "predict": "Predicting",
    "sort": "Sorting",
    "doctor": "Examining the data",
    "fetch": "Downloading",
}


def output_console(*, markup: bool = True) -> Console:
    """The console for a command's results on stdout: paths and commands are never wrapped
    (a wrapped ``cd … && python app.py`` cannot be pasted), and nothing is recoloured. With
    ``markup=False`` text is printed as it is (a file named ``[b]x[/].png`` is not markup)."""
    return Console(highlight=False, soft_wrap=True, markup=markup)


class ProgressView:
    """Progress bars (with ETA) on stderr for :class:`ProgressEvent` s; messages print above them.

    Use as a context manager and pass the instance as ``progress=`` to any sortsight function.
    """

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> ProgressView:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def __call__(self, event: ProgressEvent) -> None:
        if event.phase == "validate":
            m = event.metrics
            scores = (
                f"validation mAP {m.get('val_map', 0):.3f}"  # a tagger's epochs are judged by mAP
                if "val_accuracy" not in m and "val_map" in m
                else f"validation accuracy {m.get('val_accuracy', 0):.3f}, F1 {m.get('val_f1_macro', 0):.3f}"
            )
            self.console.print(
                f"  epoch {event.step}/{event.total}: loss {m.get('train_loss') or 0:.4f} | "
                f"{scores}, loss {m.get('val_loss', 0):.4f}"
            )
            return
        if event.message:
            self.console.print(event.message)
        if not event.total:
            return
        task = self.tasks.get(event.phase)
        if task is None:
            description = PHASES.get(event.phase, event.phase.capitalize())
            task = self.bar.add_task(description, total=event.total, info="")
            self.tasks[event.phase] = task
        self.bar.update(task, completed=event.step, total=event.total, info=_info(event.metrics))


def _info(metrics: dict[str, Any]) -> str:
    if "loss" in metrics:
        return f"loss {metrics['loss']:.3f}"
    failed = metrics.get("broken", 0) + metrics.get("failed", 0)
    if failed:
        return f"{failed} failed"
    rate = metrics.get("images_per_second")
    return f"{rate:.1f} img/s" if rate else ""


def counts_table(first: str, footer: str, summary: Mapping[str, Any]) -> Table:
    """Images per class (or tag) and split, a total column and a footer of split totals: the
    table of ``check``. ``first`` heads the name column and ``footer`` labels its footer cell;
    ``summary`` has ``splits``, ``counts`` (name → split → count, with ``total``) and ``totals``."""
    totals = summary["totals"]
    table = Table(show_footer=True)
    table.add_column(first, footer=footer)
    for split in summary["splits"]:
        table.add_column(split, justify="right", footer=str(totals[split]))
    table.add_column("total", justify="right", footer=str(totals["total"]))
    for name, row in summary["counts"].items():
        table.add_row(name, *(str(row[s]) for s in summary["splits"]), str(row["total"]))
    return table


def render_skipped(
    console: Console, skipped: Sequence[Mapping[str, Any]], *, full_list: str, max_rows: int = 15
) -> None:
    """The files left out of a dataset, as ``check`` and ``train`` show them: one line with the
    count per reason, a table of the first ``max_rows`` paths, and where the full list is."""
    from sortsight.data import skip_reasons

    if not skipped:
        return
    line = f"{len(skipped)} file(s) skipped ({skip_reasons(Counter(str(s['reason']) for s in skipped))})."
    console.print(f"[yellow]{escape(line)}[/yellow]", highlight=False)
    table = Table(title_justify="left")
    table.add_column("file", overflow="fold")
    table.add_column("reason")
    for entry in skipped[:max_rows]:
        table.add_row(escape(str(entry["path"])), escape(str(entry["reason"])))
    console.print(table)
    if len(skipped) > max_rows:
        console.print(f"… and {len(skipped) - max_rows} more ({full_list}).", highlight=False)
    else:
        console.print(f"Full list: {full_list}.", highlight=False)


def render_run_skipped(console: Console, run_dir: Path) -> None:
    """:func:`render_skipped` for a finished training run (the list is kept in its sortsight.json)."""
    from sortsight.runs import RECORD, RunFolder

    data = RunFolder.at(run_dir).info().get("data")
    skipped = data.get("skipped") if isinstance(data, dict) else None
    if isinstance(skipped, list):
        render_skipped(console, skipped, full_list=f"{run_dir / RECORD} (data.skipped)")


def print_next(console: Console, text: str) -> None:
    """The one short line every command ends with: what to open or run next."""
    console.print(Text.assemble(("Next:", "bold"), " ", text))  # file names are never markup
