"""Safe file operations: nothing of the user's data is ever overwritten or deleted outright.

Every copy, move, relabel or delete that sortsight does to a user's files goes through
:func:`place_file` and is written to an :class:`ActionLog` (``sortsight-moves.jsonl``), so it
can be replayed backwards with :func:`sortsight.undo.undo_log`. Outputs are written atomically through
unique temporary names (:mod:`sortsight._atomic`, re-exported here: :func:`atomic_write`,
:func:`staged_file`, :func:`staged_folder`), with the mode the user's umask gives; output
paths are checked up front (:func:`ensure_output_dir`, :func:`ensure_output_file`), and a run
folder is replaced only through :func:`clear_for_overwrite`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sortsight._atomic import (
    atomic_write,
    atomic_write_text,
    file_mode,
    honour_umask,
    staged_file,
    staged_folder,
    trim_name,
)
from sortsight._outputs import (
    cache_dir,
    clear_for_overwrite,
    ensure_output_dir,
    ensure_output_file,
    output_error,
    repair_tail,
)
from sortsight.errors import SortsightError

__all__ = [
    "UNDOABLE",
    "ActionLog",
    "Placed",
    "active_entries",
    "atomic_write",
    "atomic_write_text",
    "cache_dir",
    "clear_for_overwrite",
    "ensure_output_dir",
    "ensure_output_file",
    "file_mode",
    "honour_umask",
    "json_line",
    "output_error",
    "part_name",
    "place_file",
    "repair_tail",
    "sha256_file",
    "staged_file",
    "staged_folder",
]

_CHUNK = 1 << 20
_NAME_MAX = 255  # bytes in one file name on common file systems


def sha256_file(path: str | Path) -> str:
    """The SHA-256 hex digest of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def json_line(entry: Any) -> str:
    """One JSON line, readable UTF-8 where possible; names with undecodable bytes (surrogate
    escapes) are written as ``\\u`` escapes so the line stays valid UTF-8 and reads back exactly."""
    text = json.dumps(entry, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(entry)
    return text


@dataclass(frozen=True)
class Placed:
    """What :func:`place_file` did (or would do, in a dry run).

    ``action`` is ``"copy"``, ``"move"`` or ``"identical"`` (the same content already sits in
    the destination, so nothing was written; with ``source_removed`` a merging move removed
    the source). ``note`` says what went wrong on the way, e.g. a move whose source could not
    be deleted (then ``action`` is ``"copy"``: the source is still there).
    """

    source: Path
    destination: Path
    action: str
    sha256: str
    source_removed: bool = False
    note: str = ""


def _candidates(dest_dir: Path, name: str) -> Iterator[Path]:
    stem, suffix = Path(name).stem, Path(name).suffix
    yield dest_dir / name
    for i in range(1, 100_000):
        tail = f" ({i}){suffix}"
        yield dest_dir / f"{trim_name(stem, _NAME_MAX - len(os.fsencode(tail)))}{tail}"


def part_name(candidate: Path) -> Path:
    """The temporary hard link ``.NAME.part-PID-TID`` that stays beside a placed file until its log
    line is written; one found later with the same inode proves sortsight placed that file.
    (A name too long to carry is replaced by its hash; the placed file is then found by inode.)"""
    owner = f"{os.getpid()}-{threading.get_native_id()}"  # two threads never share one
    name = f".{candidate.name}.part-{owner}"
    if len(os.fsencode(name)) > _NAME_MAX:
        name = f".{hashlib.sha256(os.fsencode(candidate.name)).hexdigest()[:24]}.part-{owner}"
    return candidate.with_name(name)


def _unlink_source(src: Path) -> str:
    try:
        src.unlink()
    except FileNotFoundError:
        return ""
    except OSError as exc:
        return f"source could not be removed ({exc.strerror or type(exc).__name__})"
    return ""


def place_file(
    src: str | Path,
    dest_dir: str | Path,
    *,
    move: bool = False,
    name: str | None = None,
    dry_run: bool = False,
    sha256: str | None = None,
    merge_identical: bool = False,
    record: Callable[[Placed], object] | None = None,
) -> Placed:
    """Copy (or move) ``src`` into ``dest_dir`` without ever overwriting anything.

    A name clash gets a suffix (``photo (1).jpg``), so every source becomes its own file. With
    ``merge_identical`` the same content already present under the name or one of its suffixed
    forms is recognised instead, and nothing is written (a move then removes the source, after
    ``record`` has logged it, so undo can bring the path back).

    Args:
        src: the file to place.
        dest_dir: the folder to place it in (created when needed).
        move: move instead of copy. When the source cannot be deleted afterwards the result is a
            copy (``action="copy"``, ``note`` says why) and the source stays.
        name: file name in ``dest_dir`` (default: the source's name).
        dry_run: decide and return the plan, touch nothing.
        sha256: the source's digest when already known.
        merge_identical: reuse a file with the same content instead of adding a suffixed copy.
        record: called with the outcome once the file is in place and before the temporary link
            is removed (write the log line here: a crash before it leaves a provable trace).

    Returns:
        A :class:`Placed` saying where the file went.

    Raises:
        SortsightError: the source is missing, or the destination cannot be written.

    Example:
        >>> placed = place_file("in/cat.jpg", "sorted/cats")  # doctest: +SKIP
        >>> placed.destination.name  # doctest: +SKIP
        'cat.jpg'
    """
    src, dest_dir = Path(src), Path(dest_dir)
    if src.is_symlink() and move:
        raise SortsightError(f"'{src}' is a symbolic link; sortsight never moves through a link.")
    if not src.is_file():
        raise SortsightError(f"File '{src}' not found; it may have been moved already. Check the path.")
    digest = sha256 or sha256_file(src)
    size = src.stat().st_size
    for candidate in _candidates(dest_dir, name or src.name):
        for _look in range(2):  # a name taken meanwhile is looked at again: it may be this very image
            if candidate.exists() or candidate.is_symlink():
                identical = _identical(src, candidate, move, digest, size, merge_identical, dry_run, record)
                if identical is not None:
                    return identical
                break  # another file has this name: try the next one
            if dry_run:
                return Placed(src, candidate, "move" if move else "copy", digest)
            put = _put(src, candidate, move, digest, record)
            if put is not None:
                return put
    raise SortsightError(f"Too many files named like '{src.name}' in '{dest_dir}'. Tidy that folder first.")


def _identical(
    src: Path,
    candidate: Path,
    move: bool,
    digest: str,
    size: int,
    merge_identical: bool,
    dry_run: bool,
    record: Callable[[Placed], object] | None,
) -> Placed | None:
    """The outcome when ``candidate`` (which exists) already is ``src`` or, with ``merge_identical``,
    holds the same bytes; None when it is another file."""
    if candidate.resolve() == src.resolve():  # the source is already where it should be
        return Placed(src, candidate, "identical", digest)
    if not (
        merge_identical
        and not candidate.is_symlink()
        and candidate.is_file()
        and candidate.stat().st_size == size
        and sha256_file(candidate) == digest
    ):
        return None
    placed = Placed(src, candidate, "identical", digest, source_removed=move)
    if dry_run:
        return placed
    if record is not None:
        record(placed)  # logged before the source goes: undo can restore it
    note = _unlink_source(src) if move else ""
    if note:
        placed = replace(placed, source_removed=False, note=note)
        if record is not None:
            record(placed)
    return placed


def _put(
    src: Path, candidate: Path, move: bool, digest: str, record: Callable[[Placed], object] | None
) -> Placed | None:
    """Place ``src`` at exactly ``candidate`` (None when that name was taken meanwhile)."""
    try:
        candidate.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _write_error(candidate.parent, exc) from exc
    tmp = part_name(candidate)
    try:
        if move:
            try:
                os.link(src, tmp)  # same filesystem: cheap, and the source stays until the end
            except OSError:
                shutil.copy2(src, tmp)
        else:
            shutil.copy2(src, tmp)
        try:
            os.link(tmp, candidate)  # link-then-rename never replaces an existing file
        except FileExistsError:
            tmp.unlink()
            return None
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise _write_error(candidate.parent, exc) from exc
    try:
        note = _unlink_source(src) if move else ""
        placed = Placed(src, candidate, "copy" if (not move or note) else "move", digest, note=note)
        if record is not None:
            record(placed)
    finally:
        tmp.unlink(missing_ok=True)
    return placed


def _write_error(folder: Path, exc: OSError) -> SortsightError:
    why = exc.strerror or type(exc).__name__
    return SortsightError(f"Cannot write into '{folder}' ({why}). Choose a folder you can write to.")


class ActionLog:
    """An append-only JSONL journal of what was done to files (``sortsight-moves.jsonl``).

    Each line: ``{"time", "action", "source", "destination", "sha256", ...extra}``. Lines are
    flushed and fsynced one by one, so a killed process leaves a log that is true up to its
    last line. File names that are not valid UTF-8 are kept exactly (see :func:`json_line`).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def record(
        self, action: str, source: str | Path, destination: str | Path, sha256: str, **extra: Any
    ) -> dict:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "action": action,
            "source": str(source),
            "destination": str(destination),
            "sha256": sha256,
            **extra,
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json_line(entry) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise _write_error(self.path.parent, exc) from exc
        return entry

    def entries(self) -> list[dict]:
        """All complete entries (a torn last line from a crash is ignored)."""
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8", errors="surrogateescape").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict):
                out.append(entry)
        return out


#: What a log line can record and undo can reverse: ``copy`` (the copy is removed), ``move``,
#: ``relabel`` and ``delete`` (moved back), ``identical`` (nothing was written; when a merging
#: move removed its source, the content is copied back to the source path), ``retag`` (the
#: image's row of the labels file gets its ``before`` tags back; see :func:`sortsight.fix.retag`).
UNDOABLE = ("copy", "move", "relabel", "delete", "identical", "retag")


def active_entries(entries: list[dict]) -> list[dict]:
    """The logged actions not yet undone, in log order (each ``undo`` line cancels the latest
    earlier action with the same source and destination, so sort → undo → sort → undo works)."""
    active: list[dict] = []
    for entry in entries:
        if entry.get("action") == "undo":
            key = (entry.get("source"), entry.get("destination"))
            for i in range(len(active) - 1, -1, -1):
                if (active[i].get("source"), active[i].get("destination")) == key:
                    del active[i]
                    break
        elif entry.get("action") in UNDOABLE:
            active.append(entry)
    return active
