"""Issue 15 item 1: ``train --overwrite`` never removes anything sortsight did not write."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from conftest import write_class_folder

from sortsight.config import TrainConfig
from sortsight.errors import SortsightError, TrainError
from sortsight.fileops import clear_for_overwrite
from sortsight.training.distributed import Environment
from sortsight.training.run_dir import prepare_run_dir


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _old_run(run: Path) -> Path:
    (run / "model").mkdir(parents=True)
    (run / "model" / "model.safetensors").write_bytes(b"weights")
    (run / "checkpoints" / "epoch-0001").mkdir(parents=True)
    (run / "checkpoints" / "epoch-0001" / "state.json").write_text("{}")
    (run / "sortsight.json").write_text("{}")
    (run / "events.jsonl").write_text('{"phase": "done"}\n')
    return run


def _env() -> Environment:
    return Environment(accelerator=None, world=1, rank=0, is_main=True, cpu="test", threads=1)


def test_data_inside_the_run_folder_is_refused_and_untouched(tmp_path: Path) -> None:
    run = _old_run(tmp_path / "run")
    data = write_class_folder(run / "images", per_class=2, size=16)
    before = _tree(run)
    config = TrainConfig(data_path=str(data), out=str(run), overwrite=True)
    with pytest.raises(TrainError, match="lies inside") as info:
        prepare_run_dir(config, _env())
    assert "\n" not in str(info.value)
    assert _tree(run) == before  # nothing moved, nothing deleted


def test_only_sortsight_files_are_removed_and_the_users_are_kept_aside(tmp_path: Path) -> None:
    run = _old_run(tmp_path / "run")
    (run / "notes.txt").write_text("my notes")
    (run / "checkpoints" / "keep.png").write_bytes(b"a user's image among ours")
    data = write_class_folder(tmp_path / "data", per_class=2, size=16)
    config = TrainConfig(data_path=str(data), out=str(run), overwrite=True)
    prepare_run_dir(config, _env())
    assert run.is_dir() and not any(run.iterdir())  # the new run starts empty
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run.replaced-")]
    assert len(aside) == 1
    assert _tree(aside[0]) == _tree_of({"notes.txt": b"my notes", "checkpoints/keep.png": None})


def _tree_of(files: dict[str, bytes | None]) -> dict[str, str]:
    out = {}
    for name, content in files.items():
        data = content if content is not None else b"a user's image among ours"
        out[name] = hashlib.sha256(data).hexdigest()
    return out | {"checkpoints/epoch-0001/state.json": hashlib.sha256(b"{}").hexdigest()}


def test_a_pure_run_folder_is_replaced_without_leftovers(tmp_path: Path) -> None:
    run = _old_run(tmp_path / "run")
    assert clear_for_overwrite(run, inputs=[tmp_path / "data"]) is None
    assert not run.exists() and list(tmp_path.iterdir()) == []


def test_a_killed_runs_half_written_folders_go_with_it_and_a_users_hidden_file_stays(tmp_path: Path) -> None:
    """A run killed while saving leaves fileops' temporary names behind (``.model.tmp-<pid>-<hex>``):
    --overwrite removes them with the run's own entries; a hidden file of the user's is kept."""
    run = _old_run(tmp_path / "run")
    half = run / ".model.tmp-4242-0a1b2c3d"
    half.mkdir()
    (half / "model.safetensors").write_bytes(b"half")
    (run / ".metrics.jsonl.tmp-4242-deadbeef").write_text("{")
    (run / ".notes.tmp").write_text("mine")
    aside = clear_for_overwrite(run, inputs=[tmp_path / "data"])
    assert aside is not None and not run.exists()
    assert sorted(p.name for p in aside.iterdir()) == [".notes.tmp"]


def test_refusals_are_one_line(tmp_path: Path) -> None:
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "a.png").write_bytes(b"x")
    with pytest.raises(TrainError, match="not a sortsight run folder"):
        clear_for_overwrite(foreign, inputs=[])
    assert (foreign / "a.png").read_bytes() == b"x"
    run = _old_run(tmp_path / "run")
    with pytest.raises(TrainError, match="lies inside"):
        clear_for_overwrite(run, inputs=[run])  # the data is the run folder itself
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    config = TrainConfig(data_path=str(foreign), out=str(a_file), overwrite=True)
    with pytest.raises(SortsightError, match="is a file") as info:
        prepare_run_dir(config, _env())
    assert "\n" not in str(info.value) and a_file.read_text() == "x"
