"""sort_into: copy/move into label folders, unsure threshold, clashes, dry run, log, undo, kill + resume."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from helpers import kill_after_lines

from sortsight.errors import PredictError
from sortsight.fileops import ActionLog
from sortsight.predictions import CSV_COLUMNS, read_predictions
from sortsight.sort import LOG_NAME, folder_name, sort_into
from sortsight.undo import undo_log


def _write_images(root: Path, n: int, *, size: int = 200) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = root / f"img_{i:04d}.jpg"
        # distinct content per file (the index in the bytes), a few hundred bytes each
        p.write_bytes(b"\xff\xd8" + i.to_bytes(4, "big") + os.urandom(size))
        paths.append(p)
    return paths


def _write_predictions(csv_path: Path, rows: list[tuple[Path, str, float, str]]) -> Path:
    with open(csv_path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(CSV_COLUMNS)
        for path, label, score, status in rows:
            top = json.dumps([{"label": label, "score": score}]) if label else "[]"
            w.writerow([str(path), label, f"{score:.6f}" if label else "", top, status, "m", ""])
    return csv_path


def _digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != LOG_NAME)


def test_copies_into_label_folders_with_unsure_and_log(tmp_path: Path) -> None:
    imgs = _write_images(tmp_path / "in", 4)
    preds = _write_predictions(
        tmp_path / "p.csv",
        [
            (imgs[0], "cat", 0.95, "ok"),
            (imgs[1], "dog", 0.80, "ok"),
            (imgs[2], "dog", 0.40, "ok"),
            (imgs[3], "", 0.0, "unreadable"),
        ],
    )
    dest = tmp_path / "sorted"
    summary = sort_into(preds, dest, threshold=0.5)
    assert (dest / "cat" / imgs[0].name).read_bytes() == imgs[0].read_bytes()
    assert (dest / "dog" / imgs[1].name).is_file()
    assert (dest / "unsure" / imgs[2].name).is_file()  # 0.40 < 0.5
    assert all(p.is_file() for p in imgs)  # copies: sources stay
    assert summary.per_folder == {"cat": 1, "dog": 1, "unsure": 1}
    assert summary.counts == {"copy": 3, "unreadable": 1}
    entries = ActionLog(dest / LOG_NAME).entries()
    assert [e["action"] for e in entries] == ["copy", "copy", "copy"]
    for e in entries:
        assert e["sha256"] == _digest(Path(e["source"])) == _digest(Path(e["destination"]))


def test_status_column_decides_when_no_threshold(tmp_path: Path) -> None:
    imgs = _write_images(tmp_path / "in", 2)
    preds = _write_predictions(
        tmp_path / "p.csv", [(imgs[0], "cat", 0.3, "unsure"), (imgs[1], "cat", 0.3, "ok")]
    )
    sort_into(preds, tmp_path / "out")
    assert (tmp_path / "out" / "unsure" / imgs[0].name).is_file()
    assert (tmp_path / "out" / "cat" / imgs[1].name).is_file()


def test_clash_gets_suffix_and_identical_content_is_not_copied_twice(tmp_path: Path) -> None:
    a = _write_images(tmp_path / "a", 1)[0]
    b_dir = tmp_path / "b"
    b_dir.mkdir()
    b = b_dir / a.name  # same name, different content
    b.write_bytes(b"different content")
    dest = tmp_path / "out"
    (dest / "cat").mkdir(parents=True)
    existing = dest / "cat" / a.name
    existing.write_bytes(b"a user's own file")
    preds = _write_predictions(tmp_path / "p.csv", [(a, "cat", 0.9, "ok"), (b, "cat", 0.9, "ok")])
    sort_into(preds, dest)
    assert existing.read_bytes() == b"a user's own file"  # never overwritten
    names = sorted(p.name for p in (dest / "cat").iterdir())
    assert names == sorted([a.name, f"{a.stem} (1){a.suffix}", f"{a.stem} (2){a.suffix}"])
    # a second, fresh sort in the log's absence, asked to merge identical content: nothing copied twice
    (dest / LOG_NAME).unlink()
    again = sort_into(preds, dest, merge_identical=True)
    assert again.counts == {"identical": 2}
    assert len(list((dest / "cat").iterdir())) == 3


def test_dry_run_touches_nothing_and_shows_the_plan(tmp_path: Path) -> None:
    imgs = _write_images(tmp_path / "in", 3)
    preds = _write_predictions(tmp_path / "p.csv", [(p, "cat", 0.9, "ok") for p in imgs])
    dest = tmp_path / "out"
    summary = sort_into(preds, dest, move=True, dry_run=True)
    assert not dest.exists()
    assert all(p.is_file() for p in imgs)
    assert summary.dry_run and summary.counts == {"move": 3}
    assert [Path(a.destination) for a in summary.actions] == [dest / "cat" / p.name for p in imgs]
    twin = tmp_path / "other" / imgs[0].name  # same name, other content: the plan shows its suffix
    twin.parent.mkdir()
    twin.write_bytes(b"other")
    plan = sort_into(
        [
            {"path": str(imgs[0]), "label": "cat", "score": 0.9, "status": "ok"},
            {"path": str(twin), "label": "cat", "score": 0.9, "status": "ok"},
        ],
        dest,
        dry_run=True,
    )
    assert [Path(a.destination).name for a in plan.actions] == [imgs[0].name, f"{imgs[0].stem} (1).jpg"]


def test_move_then_undo_restores(tmp_path: Path) -> None:
    imgs = _write_images(tmp_path / "in", 3)
    before = {p: _digest(p) for p in imgs}
    preds = _write_predictions(
        tmp_path / "p.csv",
        [(imgs[0], "cat", 0.9, "ok"), (imgs[1], "dog", 0.9, "ok"), (imgs[2], "dog", 0.1, "unsure")],
    )
    dest = tmp_path / "out"
    summary = sort_into(preds, dest, move=True)
    assert summary.counts == {"move": 3}
    assert not any(p.exists() for p in imgs)
    assert _digest(dest / "unsure" / imgs[2].name) == before[imgs[2]]
    # rerunning after a finished move does nothing and loses nothing
    again = sort_into(preds, dest, move=True)
    assert again.counts == {"done": 3}
    undo_log(dest / LOG_NAME)
    assert {p: _digest(p) for p in imgs} == before


def test_label_becomes_a_safe_folder_name_and_unsure_label_does_not_collide(tmp_path: Path) -> None:
    assert folder_name("maps/plans") == "maps_plans"
    assert folder_name("..") == "_"
    imgs = _write_images(tmp_path / "in", 2)
    preds = _write_predictions(
        tmp_path / "p.csv", [(imgs[0], "unsure", 0.9, "ok"), (imgs[1], "a/b", 0.1, "unsure")]
    )
    sort_into(preds, tmp_path / "out")
    assert (tmp_path / "out" / "unsure" / imgs[0].name).is_file()  # the model's own class 'unsure'
    assert (tmp_path / "out" / "_unsure" / imgs[1].name).is_file()  # below threshold


def test_dest_that_is_a_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(PredictError, match="is a file"):
        sort_into([], tmp_path / "file")
    with pytest.raises(PredictError, match="not found"):
        sort_into(tmp_path / "missing.csv", tmp_path / "out")


_SORT_SCRIPT = """
import sys
from sortsight.sort import sort_into
sort_into(sys.argv[1], sys.argv[2], move=sys.argv[3] == "move")
"""


@pytest.mark.parametrize("mode", ["copy", "move"])
def test_resume_after_kill_loses_and_duplicates_nothing(tmp_path: Path, mode: str) -> None:
    imgs = _write_images(tmp_path / "in", 300, size=20_000)
    digests = Counter(_digest(p) for p in imgs)
    preds = _write_predictions(
        tmp_path / "p.csv", [(p, ("cat", "dog")[i % 2], 0.9, "ok") for i, p in enumerate(imgs)]
    )
    dest = tmp_path / "out"
    log = dest / LOG_NAME
    proc = subprocess.Popen([sys.executable, "-c", _SORT_SCRIPT, str(preds), str(dest), mode])
    assert kill_after_lines(proc, log, 20), "the sort finished before it could be killed"
    done_before = len(ActionLog(log).entries())
    assert 20 <= done_before < 300
    sort_into(preds, dest, move=mode == "move")
    sorted_files = _files(dest)
    assert Counter(_digest(p) for p in sorted_files) == digests  # every image exactly once
    assert not list(dest.rglob(".*.part-*"))
    if mode == "move":
        assert not any(p.exists() for p in imgs)
    else:
        assert all(p.exists() for p in imgs)
    sources = [e["source"] for e in ActionLog(log).entries()]
    assert sorted(sources) == sorted(str(p) for p in imgs)  # each source logged once
    assert next(iter(read_predictions(preds)))["score"] == pytest.approx(0.9)
