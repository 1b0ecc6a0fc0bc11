"""sortsight.runs: one resolver for "run folder or model folder", forgiving readers of a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sortsight.errors import ExportError, ModelError
from sortsight.runs import RunFolder


def _run(root: Path, *, status: str = "done", model: bool = True) -> Path:
    root.mkdir(parents=True)
    (root / "sortsight.json").write_text(json.dumps({"status": status, "data": {"path": "x"}}))
    if model:
        (root / "model").mkdir()
        (root / "model" / "config.json").write_text("{}")
        (root / "model" / "model.safetensors").write_bytes(b"weights")
    return root


def test_run_folder_and_its_model_folder_resolve_alike(tmp_path: Path) -> None:
    run = _run(tmp_path / "runs" / "covers")
    for given in (run, run / "model"):
        found = RunFolder.resolve(given)
        assert (found.model_dir, found.run_dir) == (run / "model", run)
        assert found.is_complete() and found.info()["status"] == "done"
    assert RunFolder.find(run) == RunFolder.find(run / "model") == RunFolder(run / "model", run)


def test_a_bare_model_folder_has_no_run(tmp_path: Path) -> None:
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    found = RunFolder.resolve(folder)
    assert found == RunFolder(folder, None) and found.info() == {} and found.metrics() == []
    assert not found.is_complete()  # config.json without weights
    (folder / "model.safetensors").write_bytes(b"w")
    assert found.is_complete() and RunFolder.find(folder) is None


def test_readers_skip_what_a_running_job_has_half_written(tmp_path: Path) -> None:
    run = _run(tmp_path / "r", status="running")
    (run / "metrics.jsonl").write_text('{"epoch": 1, "val_accuracy": 0.5}\n{"epoch": 2, "val_acc')
    (run / "events.jsonl").write_text('{"phase": "estimate", "metrics": {"seconds": 3.5}}\n[1, 2]\n')
    (run / "leaderboard.json").write_text('[{"rank": 1}')
    found = RunFolder.resolve(run)
    assert found.metrics() == [{"epoch": 1, "val_accuracy": 0.5}]
    assert found.events() == [{"phase": "estimate", "metrics": {"seconds": 3.5}}]
    assert found.leaderboard() == [] and not found.is_complete()  # still running
    (run / "sortsight.json").write_text('{"status": "do')  # torn while being replaced
    assert found.info() == {}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        ("missing", "not found"),
        ("empty", "no model found"),
        ("unfinished", "has no model yet"),
    ],
)
def test_clear_errors(tmp_path: Path, make: str, message: str) -> None:
    path = tmp_path / "x"
    if make == "empty":
        path.mkdir()
    elif make == "unfinished":
        _run(path, status="running", model=False)
    with pytest.raises(ModelError, match=message) as info:
        RunFolder.resolve(path)
    assert "\n" not in str(info.value)
    with pytest.raises(ExportError, match=message):
        RunFolder.resolve(path, error=ExportError)
