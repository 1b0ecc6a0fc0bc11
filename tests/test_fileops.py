"""fileops.py: never overwrite, recognise identical content, log everything, undo."""

from __future__ import annotations

from pathlib import Path

import pytest

from sortsight.errors import SortsightError
from sortsight.fileops import ActionLog, atomic_write_text, place_file, sha256_file
from sortsight.undo import undo_log


def _file(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_copy_clash_gets_suffix_and_identical_is_recognised(tmp_path: Path) -> None:
    a = _file(tmp_path / "in" / "a.jpg", b"one")
    b = _file(tmp_path / "in2" / "a.jpg", b"two")
    dest = tmp_path / "out"
    first = place_file(a, dest)
    second = place_file(b, dest)
    again = place_file(a, dest, merge_identical=True)
    own = place_file(a, dest)  # by default every source becomes its own file
    assert (first.action, first.destination.name) == ("copy", "a.jpg")
    assert (second.action, second.destination.name) == ("copy", "a (1).jpg")
    assert (again.action, again.destination) == ("identical", first.destination)
    assert (own.action, own.destination.name) == ("copy", "a (2).jpg")
    assert (dest / "a.jpg").read_bytes() == b"one" and (dest / "a (1).jpg").read_bytes() == b"two"
    assert a.exists() and b.exists()
    assert first.sha256 == sha256_file(a)


def test_a_name_taken_meanwhile_by_the_same_image_is_recognised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another worker places the very same image under the name between the look and the link:
    with merge_identical that is one file, not 'a.jpg' and 'a (1).jpg' (a fetch resumed while an
    interrupted run's download was still finishing doubled an image this way)."""
    import sortsight.fileops as fileops

    real_put = fileops._put
    raced: list[Path] = []

    def other_worker_first(src: Path, candidate: Path, *args: object) -> object:
        if not raced:
            raced.append(candidate)
            candidate.parent.mkdir(parents=True, exist_ok=True)
            candidate.write_bytes(src.read_bytes())
        return real_put(src, candidate, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(fileops, "_put", other_worker_first)
    a = _file(tmp_path / "in" / "a.jpg", b"same")
    placed = place_file(a, tmp_path / "out", move=True, merge_identical=True)
    assert raced and placed.action == "identical" and placed.destination.name == "a.jpg"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.jpg"]
    assert not a.exists()  # moved: the source went once its copy was known to be there

    b = _file(tmp_path / "in" / "b.jpg", b"mine")
    raced.clear()
    monkeypatch.setattr(fileops, "_put", other_worker_first)

    def another_image_first(src: Path, candidate: Path, *args: object) -> object:
        if not raced:
            raced.append(candidate)
            candidate.parent.mkdir(parents=True, exist_ok=True)
            candidate.write_bytes(b"theirs")
        return real_put(src, candidate, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(fileops, "_put", another_image_first)
    placed = place_file(b, tmp_path / "out", merge_identical=True)
    assert placed.destination.name == "b (1).jpg" and placed.destination.read_bytes() == b"mine"
    assert (tmp_path / "out" / "b.jpg").read_bytes() == b"theirs"  # never overwritten


def test_move_and_dry_run(tmp_path: Path) -> None:
    a = _file(tmp_path / "a.png", b"data")
    plan = place_file(a, tmp_path / "out", move=True, dry_run=True)
    assert plan.action == "move" and a.exists() and not (tmp_path / "out").exists()
    done = place_file(a, tmp_path / "out", move=True)
    assert not a.exists() and done.destination.read_bytes() == b"data"


def test_missing_source_is_clear(tmp_path: Path) -> None:
    with pytest.raises(SortsightError, match="not found"):
        place_file(tmp_path / "nope.jpg", tmp_path / "out")


def test_log_and_undo_restore_everything(tmp_path: Path) -> None:
    log = ActionLog(tmp_path / "out" / "sortsight-moves.jsonl")
    moved_src = _file(tmp_path / "data" / "cats" / "x.jpg", b"cat")
    copied_src = _file(tmp_path / "data" / "dogs" / "y.jpg", b"dog")
    moved = place_file(moved_src, tmp_path / "data" / "dogs", move=True)
    log.record("relabel", moved.source, moved.destination, moved.sha256)
    copied = place_file(copied_src, tmp_path / "out" / "dogs")
    log.record("copy", copied.source, copied.destination, copied.sha256)
    with open(log.path, "a") as fh:
        fh.write('{"torn line')  # a crash mid-write must not break the log
    assert len(log.entries()) == 2
    undone = undo_log(log.path)
    assert len(undone) == 2
    assert moved_src.read_bytes() == b"cat" and not moved.destination.exists()
    assert not copied.destination.exists() and copied_src.exists()
    assert undo_log(log.path) == []  # a second undo has nothing left to do


def test_undo_missing_log(tmp_path: Path) -> None:
    with pytest.raises(SortsightError, match="not found"):
        undo_log(tmp_path / "missing.jsonl")


def test_atomic_write(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "f.json"
    atomic_write_text(target, "{}")
    atomic_write_text(target, '{"a": 1}')
    assert target.read_text() == '{"a": 1}'
    assert [p.name for p in target.parent.iterdir()] == ["f.json"]


def test_concurrent_atomic_writes_never_share_a_temporary_file(tmp_path: Path) -> None:
    """Issue 15 item 7: the temporary name was per process only, so two threads collided."""
    from concurrent.futures import ThreadPoolExecutor

    target = tmp_path / "shared.json"
    texts = [f'{{"writer": {i}, "pad": "{"x" * 200_000}"}}' for i in range(12)]
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda t: atomic_write_text(target, t), texts))  # raises if a temp file vanished
    assert target.read_text() in texts  # one whole text, never a mix
    assert [p.name for p in tmp_path.iterdir()] == ["shared.json"]


def test_outputs_honour_the_umask(tmp_path: Path) -> None:
    import os
    import stat

    from sortsight.fileops import atomic_write, file_mode

    old = os.umask(0o027)
    try:
        atomic_write(tmp_path / "out.png", lambda fh: fh.write(b"png"))
        assert stat.S_IMODE((tmp_path / "out.png").stat().st_mode) == 0o640 == file_mode()
    finally:
        os.umask(old)


def test_output_paths_are_checked_with_one_line_errors(tmp_path: Path) -> None:
    from sortsight.fileops import ensure_output_dir, ensure_output_file

    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    with pytest.raises(SortsightError, match="is a file"):
        ensure_output_dir(a_file)
    with pytest.raises(SortsightError, match="is a folder"):
        ensure_output_file(tmp_path)
    with pytest.raises(SortsightError, match="file"):
        ensure_output_file(a_file / "inside.csv")  # under a file: NotADirectoryError
    assert a_file.read_text() == "x"


def test_a_staged_folder_replaces_the_old_one_in_one_rename_or_not_at_all(tmp_path: Path) -> None:
    from sortsight.fileops import staged_folder

    dest = tmp_path / "model"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), staged_folder(dest) as tmp:
        (tmp / "new.txt").write_text("half")
        raise RuntimeError("killed mid-write")
    assert [p.name for p in dest.iterdir()] == ["old.txt"]  # the old folder, whole
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temporary folder left
    with staged_folder(dest) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".model.tmp-") and not any(tmp.iterdir())
        (tmp / "new.txt").write_text("new")
        assert (dest / "old.txt").is_file()  # untouched until the block ends
    assert [p.name for p in dest.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # the old one removed, nothing aside


def test_a_staged_folder_keeps_or_refuses_what_another_writer_put_there(tmp_path: Path) -> None:
    from sortsight.fileops import staged_folder

    cache = tmp_path / "cache"
    with staged_folder(cache, existing="keep") as tmp:
        (tmp / "a").write_text("mine")
        cache.mkdir()
        (cache / "a").write_text("theirs")  # another process finished first
    assert (cache / "a").read_text() == "theirs" and [p.name for p in tmp_path.iterdir()] == ["cache"]
    empty = tmp_path / "space"
    empty.mkdir()  # an empty folder the user named is filled
    with staged_folder(empty, existing="refuse") as tmp:
        (tmp / "app.py").write_text("app")
    assert (empty / "app.py").read_text() == "app"
    full = tmp_path / "full"
    with pytest.raises(FileExistsError), staged_folder(full, existing="refuse") as tmp:
        (tmp / "app.py").write_text("app")
        full.mkdir()
        (full / "users.txt").write_text("the user's")
    assert [p.name for p in full.iterdir()] == ["users.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "full", "space"]


def test_staged_names_honour_the_umask_and_are_recognised_as_leftovers(tmp_path: Path) -> None:
    import os
    import stat

    from sortsight._outputs import STAGED_NAME
    from sortsight.fileops import staged_file, staged_folder

    old = os.umask(0o027)
    try:
        with staged_folder(tmp_path / "run" / "model") as folder:
            assert STAGED_NAME.match(folder.name)
        with staged_file(tmp_path / "w.safetensors") as tmp:
            assert STAGED_NAME.match(tmp.name)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)  # as a library that makes files private
            os.write(fd, b"weights")
            os.close(fd)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "run" / "model").stat().st_mode) == 0o750
    assert stat.S_IMODE((tmp_path / "w.safetensors").stat().st_mode) == 0o640
    assert (tmp_path / "w.safetensors").read_bytes() == b"weights"
    with pytest.raises(OSError), staged_file(tmp_path / "x.bin") as tmp:
        tmp.write_bytes(b"half")
        raise OSError("disk full")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "w.safetensors"]
    assert not STAGED_NAME.match(".notes.tmp") and not STAGED_NAME.match("model.tmp")


def test_a_killed_writers_half_folder_is_cleared_by_the_next_one_but_a_live_writers_is_not(
    tmp_path: Path,
) -> None:
    import os
    import subprocess
    import sys

    from sortsight.fileops import staged_folder

    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead, alive = int(gone.stdout), os.getppid()  # a finished process; the one that started pytest
    for pid in (dead, alive):
        (tmp_path / f".model.tmp-{pid}-0a1b2c3d").mkdir()
    (tmp_path / f".other.tmp-{dead}-0a1b2c3d").mkdir()  # another output's: not this writer's business
    with staged_folder(tmp_path / "model") as tmp:
        (tmp / "config.json").write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["model", f".model.tmp-{alive}-0a1b2c3d", f".other.tmp-{dead}-0a1b2c3d"]
    )
    with staged_folder(tmp_path / "other", existing="keep") as tmp:  # a shared cache: never cleared
        pass
    assert (tmp_path / f".other.tmp-{dead}-0a1b2c3d").is_dir()
