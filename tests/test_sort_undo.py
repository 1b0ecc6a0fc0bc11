"""Issue 15 item 0: every input of a sort ends up as its own file, and undo brings back every
source path for each action kind the moves log can hold."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from test_sort import _write_predictions

from sortsight.fileops import UNDOABLE, ActionLog, place_file
from sortsight.fix import relabel, retag, trash
from sortsight.sort import LOG_NAME, sort_into
from sortsight.undo import undo_log


def _digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _twins(tmp_path: Path, copies: int = 2) -> list[Path]:
    """The same bytes at several paths (two archive records sharing a placeholder)."""
    paths = []
    for i in range(copies):
        p = tmp_path / "in" / str(i) / "a.png"
        p.parent.mkdir(parents=True)
        p.write_bytes(b"\x89PNG same placeholder")
        paths.append(p)
    return paths


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p): _digest(p) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("move", [False, True])
def test_identical_inputs_each_become_their_own_file_and_undo_restores_all(
    tmp_path: Path, move: bool
) -> None:
    twins = _twins(tmp_path, 3)
    before = _snapshot(tmp_path / "in")
    preds = _write_predictions(tmp_path / "p.csv", [(p, "face", 0.9, "ok") for p in twins])
    dest = tmp_path / "sorted"
    summary = sort_into(preds, dest, move=move)
    assert summary.counts == {"move" if move else "copy": 3}
    assert sorted(p.name for p in (dest / "face").iterdir()) == ["a (1).png", "a (2).png", "a.png"]
    assert all(p.exists() != move for p in twins)
    undo_log(dest / LOG_NAME)
    assert _snapshot(tmp_path / "in") == before
    assert not list((dest / "face").iterdir())


def test_merge_identical_is_explicit_logged_and_undone(tmp_path: Path) -> None:
    twins = _twins(tmp_path, 3)
    before = _snapshot(tmp_path / "in")
    preds = _write_predictions(tmp_path / "p.csv", [(p, "face", 0.9, "ok") for p in twins])
    dest = tmp_path / "sorted"
    summary = sort_into(preds, dest, move=True, merge_identical=True)
    assert summary.counts == {"move": 1, "identical": 2}
    assert [p.name for p in (dest / "face").iterdir()] == ["a.png"]
    assert not any(p.exists() for p in twins)
    merged = [e for e in ActionLog(dest / LOG_NAME).entries() if e["action"] == "identical"]
    assert len(merged) == 2 and all(e["source_removed"] for e in merged)
    undone = undo_log(dest / LOG_NAME)
    assert len(undone) == 3
    assert _snapshot(tmp_path / "in") == before  # every source path is back, with its bytes
    assert not (dest / "face" / "a.png").exists()


def test_merge_identical_in_copy_mode_keeps_sources_and_undo_keeps_the_users_file(tmp_path: Path) -> None:
    src = _twins(tmp_path, 1)[0]
    dest = tmp_path / "sorted"
    users_own = dest / "face" / "a.png"
    users_own.parent.mkdir(parents=True)
    users_own.write_bytes(src.read_bytes())  # already there before sortsight came
    preds = _write_predictions(tmp_path / "p.csv", [(src, "face", 0.9, "ok")])
    assert sort_into(preds, dest, merge_identical=True).counts == {"identical": 1}
    undo_log(dest / LOG_NAME)
    assert src.is_file() and users_own.is_file()  # nothing of either is removed


def test_sort_undo_sort_undo(tmp_path: Path) -> None:
    twins = _twins(tmp_path, 2)
    before = _snapshot(tmp_path / "in")
    preds = _write_predictions(tmp_path / "p.csv", [(p, "face", 0.9, "ok") for p in twins])
    dest = tmp_path / "sorted"
    for _ in range(2):  # a log that holds an earlier undo still undoes the second sort
        assert sort_into(preds, dest, move=True).counts == {"move": 2}
        assert len(undo_log(dest / LOG_NAME)) == 2
        assert _snapshot(tmp_path / "in") == before
    assert undo_log(dest / LOG_NAME) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root may delete from a read-only folder")
def test_move_whose_source_cannot_be_deleted_is_logged_as_a_copy(tmp_path: Path) -> None:
    src = _twins(tmp_path, 1)[0]
    preds = _write_predictions(tmp_path / "p.csv", [(src, "face", 0.9, "ok")])
    src.parent.chmod(0o555)
    try:
        summary = sort_into(preds, tmp_path / "sorted", move=True)
    finally:
        src.parent.chmod(0o755)
    assert summary.counts == {"copy": 1} and "could not be removed" in summary.actions[0].note
    entry = ActionLog(tmp_path / "sorted" / LOG_NAME).entries()[0]
    assert entry["action"] == "copy" and "could not be removed" in entry["note"]
    undo_log(tmp_path / "sorted" / LOG_NAME)
    assert src.is_file() and not (tmp_path / "sorted" / "face" / "a.png").exists()


def test_undo_covers_every_action_kind_of_the_log(tmp_path: Path) -> None:
    """One log holding copy, move, identical (kept and source-removed), relabel, delete, a copy
    whose move failed, a recovered move and a retag: undo restores every source path and the
    labels file's row."""
    root = tmp_path / "data"
    files = {}
    for name in ("copy", "move", "same1", "same2", "relabel", "delete", "failed", "recovered", "tagged"):
        p = root / "cats" / f"{name}.png" if name != "same2" else root / "dogs" / "same1.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"same" if name.startswith("same") else name.encode())
        files[name] = p
    (root / "labels.csv").write_text("image,labels\ncats/tagged.png,a|b\n", encoding="utf-8")
    before = _snapshot(root)
    log = ActionLog(tmp_path / "moves.jsonl")
    out = tmp_path / "out"

    def logged(kind: str, src: Path, **kw: object) -> None:
        placed = place_file(src, out, **kw)  # type: ignore[arg-type]
        log.record(
            kind, placed.source, placed.destination, placed.sha256, source_removed=placed.source_removed
        )

    logged("copy", files["copy"])
    logged("move", files["move"], move=True)
    logged("move", files["same1"], move=True)
    logged("identical", files["same2"], move=True, merge_identical=True)  # merged, source removed
    assert ActionLog(log.path).entries()[-1]["source_removed"] is True
    relabel(files["relabel"], "dogs", root=root, log=log)
    trash(files["delete"], root=root, log=log)
    copied = place_file(files["failed"], out)  # what a move whose source stays leaves behind
    log.record("copy", copied.source, copied.destination, copied.sha256, note="source could not be removed")
    moved = place_file(files["recovered"], out, move=True)
    log.record("move", moved.source, moved.destination, moved.sha256, recovered=True)
    retag(files["tagged"], ["c"], labels_file=root / "labels.csv", log=log)
    assert "cats/tagged.png,c" in (root / "labels.csv").read_text(encoding="utf-8")
    kinds = {e["action"] for e in log.entries()}
    assert kinds == set(UNDOABLE)  # the test holds every kind undo knows
    assert not files["same2"].exists()
    undone = undo_log(log.path)
    assert not [e for e in undone if "failed" in e]
    assert _snapshot(root) == before
    assert not [p for p in out.rglob("*") if p.is_file()]
    assert undo_log(log.path) == []
