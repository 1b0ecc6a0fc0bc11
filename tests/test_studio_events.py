"""The studio reads a training run's state from RUN/events.jsonl (the library's event stream) only."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from sortsight.studio.runs import fmt_duration, train_progress


def write_events(run: Path, *events: dict, torn: str = "") -> None:
    run.mkdir(parents=True, exist_ok=True)
    lines = []
    for e in events:
        full = {"time": 1.0, "step": 0, "total": 0, "metrics": {}, "eta": None, "message": "", **e}
        lines.append(json.dumps(full))
    (run / "events.jsonl").write_text("\n".join(lines) + ("\n" + torn if torn else "\n"), encoding="utf-8")


def test_progress_from_each_stage_of_the_event_stream(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert train_progress(run).headline == "Getting ready…" and train_progress(run).now == "Starting…"
    estimate = {
        "phase": "estimate",
        "metrics": {"seconds": 420.0},
        "eta": 420.0,
        "message": "lite0: about 7 min",
    }
    write_events(run, estimate, {"phase": "cache", "step": 40, "total": 160, "eta": 12.0})
    p = train_progress(run)
    assert p.estimate_seconds == 420.0 and p.fraction == 0.25
    assert p.now == "Reading the images: 40 of 160 · about 12 s left"
    assert p.headline == "Training: about 7 min in all, as measured before the start."
    ready = {"phase": "model_ready", "metrics": {"model_dir": "m", "stage": "head", "val_accuracy": 0.97}}
    epoch = {"phase": "validate", "step": 2, "total": 5, "eta": 80.0, "metrics": {"val_accuracy": 0.95}}
    write_events(run, estimate, ready, epoch, torn='{"phase": "valid')  # a line being written
    p = train_progress(run)
    assert p.model_ready == {"model_dir": "m", "stage": "head", "val_accuracy": 0.97} and p.done is None
    assert p.headline == (
        "Model ready (first model, validation accuracy 97.0%): you can use it now. "
        "Training goes on to improve it."
    )
    assert p.now == "Fine-tuning: epoch 2 of 5 · about 80 s left"
    done = {
        "phase": "done",
        "step": 1,
        "total": 1,
        "metrics": {"chosen": "head", "val_accuracy": 0.98, "test_accuracy": 0.993},
    }
    write_events(run, estimate, ready, epoch, done)
    p = train_progress(run)
    assert p.headline == "Finished. Kept the first model: validation accuracy 98.0%, test accuracy 99.3%."
    assert p.now == "Done"


def test_durations_in_words() -> None:
    assert [fmt_duration(s) for s in (0.2, 59, 89.6, 90, 3599, 3600, 4200)] == [
        "about 1 s",
        "about 59 s",
        "about 90 s",
        "about 2 min",
        "about 60 min",
        "about 1 h",
        "about 1 h 10 min",
    ]


def test_a_failed_step_reports_the_clis_recorded_error_not_log_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runner takes a step's failure reason from the error file the CLI writes, even when the
    step printed more after it; a crash without one falls back to the log's last line."""
    import shlex
    import sys

    from sortsight.studio.runner import main, read_state

    monkeypatch.setattr(signal, "signal", lambda *a: None)  # the runner's handlers stay out of pytest
    missing = tmp_path / "no-such-folder"
    check = shlex.join([sys.executable, "-m", "sortsight", "check", str(missing)])
    job = tmp_path / "job"
    job.mkdir()
    (job / "steps.json").write_text(json.dumps([["sh", "-c", f"{check}; echo later noise; exit 1"]]))
    assert main([str(job)]) == 1
    state = read_state(job)
    recorded = json.loads((job / "error.json").read_text(encoding="utf-8"))
    assert state["status"] == "failed" and state["error"] == recorded["error"]
    assert str(missing) in state["error"] and recorded["kind"] == "DataError"
    assert f"Error: {recorded['error']}" in (job / "log.txt").read_text(encoding="utf-8")

    crash = tmp_path / "crash"
    crash.mkdir()
    (crash / "steps.json").write_text(json.dumps([[sys.executable, "-c", "raise SystemExit('it broke')"]]))
    assert main([str(crash)]) == 1
    assert read_state(crash)["error"] == "it broke" and not (crash / "error.json").exists()
