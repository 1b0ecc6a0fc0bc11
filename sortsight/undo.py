"""Undo: replay an action log (``sortsight-moves.jsonl``) backwards, newest first.

:mod:`sortsight.fileops` writes the log (:class:`~sortsight.fileops.ActionLog`) and says which
actions are undoable (:data:`~sortsight.fileops.UNDOABLE`); this module reverses them. It backs
``sortsight undo``, the studio's "Undo the last fix" and :func:`sortsight.fix.undo_fixes`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sortsight.errors import SortsightError
from sortsight.fileops import ActionLog, active_entries, place_file, sha256_file

__all__ = ["undo_log"]


def _holds(path: Path, sha256: Any) -> bool:
    try:
        return path.is_file() and not path.is_symlink() and sha256_file(path) == sha256
    except OSError:
        return False


def _content_source(entry: dict, entries: list[dict]) -> Path | None:
    """A file that still holds ``entry``'s logged content: its destination, else any path of the log."""
    sha = entry.get("sha256")
    same = [e for e in reversed(entries) if e.get("sha256") == sha]
    seen = [entry.get("destination")] + [p for e in same for p in (e.get("destination"), e.get("source"))]
    for path in dict.fromkeys(p for p in seen if p):
        if _holds(Path(path), sha):
            return Path(path)
    return None


def _undo_one(entry: dict, entries: list[dict], dry_run: bool) -> dict | None:
    """Reverse one action; the entry (with ``restored_as`` when the path was taken) or None."""
    action, sha = entry.get("action"), entry.get("sha256")
    src, dst = Path(str(entry["source"])), Path(str(entry["destination"]))
    if action == "retag":
        return _undo_retag(entry, src, dst, dry_run)
    if action == "copy":
        if not _holds(dst, sha):
            return None  # gone, or changed since: not ours to remove
        if not dry_run:
            dst.unlink()
        return entry
    if action == "identical":
        if not entry.get("source_removed") or src.exists() or src.is_symlink():
            return None
        origin = _content_source(entry, entries)
        if origin is None:
            raise SortsightError(f"The content of '{src}' is no longer in any file the log names.")
        placed = place_file(origin, src.parent, name=src.name, dry_run=dry_run)
        return entry if placed.destination == src else {**entry, "restored_as": str(placed.destination)}
    if not dst.is_file() or dst.is_symlink():
        return None  # already gone or moved on: nothing safe to do
    if src.exists() or src.is_symlink():
        if _holds(src, sha) and _holds(dst, sha):  # the source is back already (or never left)
            if not dry_run:
                dst.unlink()
            return entry
        placed = place_file(dst, src.parent, move=True, dry_run=dry_run)
        return {**entry, "restored_as": str(placed.destination)}
    place_file(dst, src.parent, move=True, name=src.name, dry_run=dry_run)
    return entry


def _undo_retag(entry: dict, image: Path, labels: Path, dry_run: bool) -> dict:
    """Give ``image`` its logged ``before`` tags again in the labels file, if they are still the
    logged ``after`` ones (a later edit is not overwritten)."""
    from sortsight.tagedit import set_tags, tags_of

    now = tags_of(labels, image)
    if now != entry.get("after"):
        shown = "no row" if now is None else "|".join(now) or "no tag"
        raise SortsightError(
            f"The tags of '{image.name}' in '{labels.name}' changed since ({shown}); "
            "undo the later edit first."
        )
    if not dry_run:
        set_tags(labels, image, entry.get("before"), fields=entry.get("row"))
    return entry


def undo_log(path: str | Path, *, dry_run: bool = False) -> list[dict]:
    """Undo every action in the log at ``path``, newest first; return what was (or would be) undone.

    Every source path comes back in every mode: moves (including relabel and delete-to-trash)
    are moved back; copies are removed only when the copy still has the logged content; a
    source that a merging move removed is restored from the identical file it was merged with.
    A path taken meanwhile gets a suffix (``restored_as``). Undone entries are recorded in the
    same log with action ``undo``, so running undo twice does nothing the second time. An entry
    that cannot be undone (a read-only folder, say) is returned with ``failed`` and left in the
    log for a later try.

    Raises:
        SortsightError: the log does not exist.
    """
    log = ActionLog(path)
    if not log.path.exists():
        raise SortsightError(
            f"Action log '{path}' not found. Give the sortsight-moves.jsonl written by the job."
        )
    entries = log.entries()
    done: list[dict] = []
    for entry in reversed(active_entries(entries)):
        try:
            result = _undo_one(entry, entries, dry_run)
        except (SortsightError, OSError) as exc:
            done.append({**entry, "failed": str(exc)})
            continue
        if not dry_run:
            log.record(
                "undo", entry["source"], entry["destination"], entry.get("sha256", ""), undid=entry["action"]
            )
        if result is not None:
            done.append(result)
    return done
