"""Safe file operations: nothing of the user's data is ever overwritten or deleted outright.

Every copy, move, relabel or delete that sortsight does to a user's files goes through
:func:`place_file` and is written to an :class:`ActionLog` (``sortsight-moves.jsonl``), so it
can be replayed backwards with :func:`undo_log`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sortsight.errors import SortsightError

__all__ = ["ActionLog", "Placed", "atomic_write_text", "place_file", "sha256_file", "undo_log"]

_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """The SHA-256 hex digest of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@dataclass(frozen=True)
class Placed:
    """What :func:`place_file` did (or would do, in a dry run).

    ``action`` is ``"copy"``, ``"move"`` or ``"identical"`` (the same content already sits in
    the destination folder under the wanted name or a suffixed one, so nothing was written).
    """

    source: Path
    destination: Path
    action: str
    sha256: str


def _candidates(dest_dir: Path, name: str) -> Iterator[Path]:
    stem, suffix = Path(name).stem, Path(name).suffix
    yield dest_dir / name
    for i in range(1, 100_000):
        yield dest_dir / f"{stem} ({i}){suffix}"


def place_file(
    src: str | Path,
    dest_dir: str | Path,
    *,
    move: bool = False,
    name: str | None = None,
    dry_run: bool = False,
    sha256: str | None = None,
) -> Placed:
    """Copy (or move) ``src`` into ``dest_dir`` without ever overwriting anything.

    A name clash with different content gets a suffix (``photo (1).jpg``); the same content
    already present under the name or one of its suffixed forms is recognised, and then
    nothing is written (a move then removes the source, which is safely duplicated).

    Args:
        src: the file to place.
        dest_dir: the folder to place it in (created when needed).
        move: move instead of copy.
        name: file name in ``dest_dir`` (default: the source's name).
        dry_run: decide and return the plan, touch nothing.
        sha256: the source's digest when already known.

    Returns:
        A :class:`Placed` saying where the file went.

    Raises:
        SortsightError: the source is missing.

    Example:
        >>> placed = place_file("in/cat.jpg", "sorted/cats")  # doctest: +SKIP
        >>> placed.destination.name  # doctest: +SKIP
        'cat.jpg'
    """
    src, dest_dir = Path(src), Path(dest_dir)
    if not src.is_file():
        raise SortsightError(f"File '{src}' not found; it may have been moved already. Check the path.")
    digest = sha256 or sha256_file(src)
    size = src.stat().st_size
    for candidate in _candidates(dest_dir, name or src.name):
        if candidate.exists():
            if candidate.resolve() == src.resolve():
                return Placed(src, candidate, "identical", digest)
            if candidate.is_file() and candidate.stat().st_size == size and sha256_file(candidate) == digest:
                if move and not dry_run:
                    src.unlink()
                return Placed(src, candidate, "identical", digest)
            continue
        if dry_run:
            return Placed(src, candidate, "move" if move else "copy", digest)
        dest_dir.mkdir(parents=True, exist_ok=True)
        tmp = candidate.with_name(f".{candidate.name}.part-{os.getpid()}")
        if move:
            try:
                os.link(src, tmp)  # same filesystem: cheap, and the source stays until the rename
            except OSError:
                shutil.copy2(src, tmp)
        else:
            shutil.copy2(src, tmp)
        try:
            # link-then-rename never replaces an existing file (os.link fails on a clash)
            os.link(tmp, candidate)
        except FileExistsError:
            tmp.unlink()
            continue
        finally:
            if tmp.exists():
                tmp.unlink()
        if move:
            src.unlink()
        return Placed(src, candidate, "move" if move else "copy", digest)
    raise SortsightError(f"Too many files named like '{src.name}' in '{dest_dir}'. Tidy that folder first.")


class ActionLog:
    """An append-only JSONL journal of what was done to files (``sortsight-moves.jsonl``).

    Each line: ``{"time", "action", "source", "destination", "sha256", ...extra}``. Lines are
    flushed and fsynced one by one, so a killed process leaves a log that is true up to its
    last line.
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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        return entry

    def entries(self) -> list[dict]:
        """All complete entries (a torn last line from a crash is ignored)."""
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out


_UNDOABLE = {"move", "relabel", "delete", "copy"}


def undo_log(path: str | Path, *, dry_run: bool = False) -> list[dict]:
    """Undo every action in the log at ``path``, newest first; return what was (or would be) undone.

    Moves (including relabel and delete-to-trash) are moved back; copies are removed only when
    the copy still has the logged content. Undone entries are recorded in the same log with
    action ``undo``, so running undo twice does nothing the second time.

    Raises:
        SortsightError: the log does not exist.
    """
    log = ActionLog(path)
    if not log.path.exists():
        raise SortsightError(
            f"Action log '{path}' not found. Give the sortsight-moves.jsonl written by the job."
        )
    entries = log.entries()
    undone_ids = {(e.get("source"), e.get("destination")) for e in entries if e.get("action") == "undo"}
    done: list[dict] = []
    for entry in reversed(entries):
        action = entry.get("action")
        key = (entry.get("source"), entry.get("destination"))
        if action not in _UNDOABLE or key in undone_ids:
            continue
        src, dst = Path(entry["source"]), Path(entry["destination"])
        if not dst.is_file():
            continue  # already gone or moved on: nothing safe to do
        if not dry_run:
            if action == "copy":
                if sha256_file(dst) == entry.get("sha256"):
                    dst.unlink()
            else:
                if src.exists():
                    placed = place_file(dst, src.parent, move=True)
                    if placed.destination != src and placed.action != "identical":
                        entry = {**entry, "restored_as": str(placed.destination)}
                else:
                    place_file(dst, src.parent, move=True, name=src.name)
            log.record("undo", entry["source"], entry["destination"], entry.get("sha256", ""), undid=action)
        done.append(entry)
    return done
