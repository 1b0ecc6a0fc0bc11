"""Reading what jobs write: a run's events, metrics, leaderboard and evaluation.

A training job is followed through ``RUN/events.jsonl``, the structured event stream the
library writes (one JSON object per line: ``time, phase, step, total, metrics, eta, message``,
with the named phases ``estimate``, ``model_ready`` and ``done``), never through log text.

These readers are forgiving on purpose: they run while a job is still writing (a torn last
line is ignored) and show whatever is there so far.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sortsight.runs import LEADERBOARD, RunFolder, read_json, read_jsonl

__all__ = [
    "TrainProgress",
    "fmt_duration",
    "metric_series",
    "read_json",
    "read_jsonl",
    "read_leaderboard",
    "job_run",
    "run_folder",
    "train_progress",
    "train_metrics",
]


def run_folder(job_folder: str | Path) -> Path:
    """The run folder of a train job."""
    return Path(job_folder) / "run"


def job_run(job_folder: str | Path) -> RunFolder:
    """The run of a train job, read through :class:`sortsight.runs.RunFolder`."""
    return RunFolder.at(run_folder(job_folder))


def _candidate_of(row: dict[str, Any]) -> str:
    for key in ("candidate", "name", "model"):
        if row.get(key) not in (None, ""):
            return str(row[key])
    return "run"


def metric_series(rows: list[dict[str, Any]]) -> dict[str, dict[str, list[list[float]]]]:
    """``{candidate: {metric: [[x, y], ...]}}`` from metrics.jsonl rows, x being epoch (or step)."""
    series: dict[str, dict[str, list[list[float]]]] = {}
    for index, row in enumerate(rows):
        x = row.get("epoch", row.get("step", index + 1))
        if not isinstance(x, (int, float)):
            continue
        per = series.setdefault(_candidate_of(row), {})
        for key, value in row.items():
            if key in ("epoch", "step", "time", "elapsed", "lr") or isinstance(value, bool):
                continue
            if isinstance(value, (int, float)):
                per.setdefault(key, []).append([float(x), float(value)])
    return series


def train_metrics(run: Path) -> list[dict[str, Any]]:
    """Every metrics row of a run: ``metrics.jsonl`` of a one-model run, or of each candidate
    (``candidates/<name>/metrics.jsonl``, where the folder name tells candidates apart)."""
    rows = RunFolder.at(run).metrics()
    for path in sorted((run / "candidates").glob("*/metrics.jsonl")):
        rows += [{**row, "candidate": path.parent.name} for row in read_jsonl(path)]
    return rows


def read_leaderboard(run: Path) -> list[dict[str, Any]]:
    """The candidates' scores: ``leaderboard.json``, else ``sortsight.json``'s candidates (both
    written when training ends); empty before."""
    data = read_json(run / LEADERBOARD)
    if isinstance(data, dict):
        data = next((v for v in data.values() if isinstance(v, list)), None)
    if not isinstance(data, list):
        data = RunFolder.at(run).info().get("candidates")
    if not isinstance(data, list):
        data = []
    rows = [{k: v for k, v in row.items() if k != "model_dir"} for row in data if isinstance(row, dict)]
    return rows


#: what each training phase is called on the job page
_PHASES = {
    "load": "Finding the images",
    "data": "Finding the images",
    "estimate": "Measuring this computer's speed",
    "cache": "Reading the images",
    "features": "Looking at every image",
    "head": "Training a first model",
    "train": "Fine-tuning",
    "validate": "Fine-tuning",
    "epoch": "Fine-tuning",
    "save": "Saving the model",
    "model_ready": "Model ready",
    "done": "Done",
}
_STAGES = {"head": "first model", "finetune": "fine-tuned model", "final": "final model"}


def _score(metrics: dict[str, Any]) -> str:
    """A run's main validation score in words: micro-F1 for a tagger (its ``accuracy`` is the
    share of images with every tag right), accuracy for a classifier."""
    accuracy = _percent(metrics.get("val_accuracy"))
    if isinstance(metrics.get("val_f1_micro"), (int, float)):
        f1 = _percent(metrics["val_f1_micro"])
        return f"validation micro-F1 {f1} (every tag right on {accuracy} of the images)"
    return f"validation accuracy {accuracy}"


def fmt_duration(seconds: float) -> str:
    """``"about 40 s"``, ``"about 7 min"``, ``"about 1 h 10 min"``.

    Example:
        >>> fmt_duration(42.4), fmt_duration(400), fmt_duration(4200)
        ('about 42 s', 'about 7 min', 'about 1 h 10 min')
    """
    if seconds < 90:
        return f"about {max(1, round(seconds))} s"
    if seconds < 3600:
        return f"about {round(seconds / 60)} min"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"about {hours} h {minutes} min" if minutes else f"about {hours} h"


def _percent(value: Any) -> str:
    return f"{100 * float(value):.1f}%" if isinstance(value, (int, float)) else "?"


@dataclass(frozen=True)
class TrainProgress:
    """A training run's state as its events tell it.

    Attributes:
        estimate_seconds: the estimate made before training (None before it is made).
        now: what is happening, in words ("Fine-tuning: epoch 2 of 5 · about 40 s left").
        fraction: how far the current phase is (0–1), None when unknown.
        model_ready: the newest ``model_ready`` event's metrics (a usable model is on disk).
        done: the ``done`` event's metrics (which model was kept and its scores).
        headline: one sentence for the top of the job page.
    """

    estimate_seconds: float | None
    now: str
    fraction: float | None
    model_ready: dict[str, Any] | None
    done: dict[str, Any] | None
    headline: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "estimate_seconds": self.estimate_seconds,
            "estimate_human": fmt_duration(self.estimate_seconds) if self.estimate_seconds else "",
            "now": self.now,
            "fraction": self.fraction,
            "model_ready": self.model_ready,
            "done": self.done,
            "headline": self.headline,
        }


def _now(event: dict[str, Any]) -> tuple[str, float | None]:
    phase = str(event.get("phase", ""))
    words = _PHASES.get(phase, phase.replace("_", " ").capitalize())
    step, total = event.get("step"), event.get("total")
    fraction = None
    if isinstance(step, int) and isinstance(total, int) and total > 0:
        fraction = min(1.0, max(0.0, step / total))
        unit = "epoch " if phase in ("train", "validate", "epoch") else ""
        if phase not in ("head", "save", "done", "model_ready", "estimate"):
            words += f": {unit}{step} of {total}"
    eta = event.get("eta")
    if isinstance(eta, (int, float)) and eta > 0 and phase not in ("estimate", "done"):
        words += f" · {fmt_duration(eta)} left"
    return words, fraction


def train_progress(run: Path) -> TrainProgress:
    """Read ``run/events.jsonl`` into a :class:`TrainProgress` (an empty one before the first event)."""
    events = read_jsonl(run / "events.jsonl")
    estimate = next(
        (
            float(e["metrics"]["seconds"])
            for e in events
            if e.get("phase") == "estimate"
            and isinstance(e.get("metrics"), dict)
            and isinstance(e["metrics"].get("seconds"), (int, float))
        ),
        None,
    )
    ready = [e.get("metrics") or {} for e in events if e.get("phase") == "model_ready"]
    done = next((e.get("metrics") or {} for e in reversed(events) if e.get("phase") == "done"), None)
    shown = [e for e in events if e.get("phase") not in ("model_ready",)]
    now, fraction = _now(shown[-1]) if shown else ("Starting…", None)
    model_ready = ready[-1] if ready else None
    if done is not None:
        kept = _STAGES.get(str(done.get("chosen", "")), "model")
        headline = f"Finished. Kept the {kept}: {_score(done)}"
        if isinstance(done.get("test_accuracy"), (int, float)):
            headline += f", test accuracy {_percent(done['test_accuracy'])}"
        headline += "."
    elif model_ready is not None:
        stage = _STAGES.get(str(model_ready.get("stage", "")), "model")
        headline = (
            f"Model ready ({stage}, {_score(model_ready)}): "
            "you can use it now. Training goes on to improve it."
        )
    elif estimate is not None:
        headline = f"Training: {fmt_duration(estimate)} in all, as measured before the start."
    else:
        headline = "Getting ready…"
    return TrainProgress(estimate, now, fraction, model_ready, done, headline)
