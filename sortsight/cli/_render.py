"""Rendering of library progress events for the terminal (one renderer for every command)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from sortsight.progress import ProgressEvent

__all__ = ["PHASES", "ProgressView", "output_console", "print_next"]

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


def output_console() -> Console:
    """The console for a command's results on stdout: paths and commands are never wrapped
    (a wrapped ``cd … && python app.py`` cannot be pasted), and nothing is recoloured."""
    return Console(highlight=False, soft_wrap=True)


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
            self.console.print(
                f"  epoch {event.step}/{event.total}: loss {m.get('train_loss') or 0:.4f} | "
                f"validation accuracy {m.get('val_accuracy', 0):.3f}, F1 {m.get('val_f1_macro', 0):.3f}, "
                f"loss {m.get('val_loss', 0):.4f}"
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


def print_next(console: Console, text: str) -> None:
    """The one short line every command ends with: what to open or run next."""
    console.print(f"[bold]Next:[/bold] {text}")
