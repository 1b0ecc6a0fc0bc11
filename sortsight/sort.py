"""Sort predicted images into ``DEST/<label>/`` folders — safely, resumably, with a log for undo.

Images are copied by default (``move=True`` to move them); those whose best score is below the
threshold go to ``DEST/unsure/``. Nothing is ever overwritten and every input ends up as its
own file: a name clash gets a suffix (``photo (1).jpg``), even when the content is the same.
``merge_identical=True`` (``--merge-identical``) instead reuses a file with the same content
already in the label folder (a move then removes the source; logged, and undo restores it).
Every action is appended to ``DEST/sortsight-moves.jsonl`` (source, destination, SHA-256), which
``sortsight undo`` replays backwards. Running the same sort again after an interruption (even
``kill -9``) skips what the log says is done, adopts a file the killed run had placed but not
yet logged (its temporary hard link proves it), and finishes the rest: no file lost, none
duplicated. Symbolic links are never moved (they are listed as ``link`` and left in place).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sortsight.errors import PredictError, SortsightError
from sortsight.fileops import ActionLog, Placed, active_entries, place_file, sha256_file
from sortsight.predictions import read_predictions
from sortsight.progress import ProgressCallback, Ticker

logger = logging.getLogger(__name__)

__all__ = ["LOG_NAME", "UNSURE", "SortAction", "SortSummary", "folder_name", "sort_into"]

LOG_NAME = "sortsight-moves.jsonl"
UNSURE = "unsure"
_UNSAFE = re.compile(r'[\\/:*?"<>|\x00-\x1f]')
_PLACED = ("copy", "move", "identical", "done")


@dataclass(frozen=True)
class SortAction:
    """One file's fate: ``action`` is copy, move, identical (the same content already there,
    with ``merge_identical``), done (by an earlier run), missing (source gone), unreadable
    (left in place) or link (a symbolic link, never moved; left in place). ``note`` says what
    went wrong on the way (e.g. a move whose source could not be deleted: then it is a copy)."""

    source: str
    destination: str
    action: str
    label: str
    score: float | None
    note: str = ""


@dataclass
class SortSummary:
    """What :func:`sort_into` did, or would do in a dry run."""

    dest: Path
    log_path: Path
    dry_run: bool
    actions: list[SortAction] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for a in self.actions:
            out[a.action] = out.get(a.action, 0) + 1
        return out

    @property
    def per_folder(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for a in self.actions:
            if a.action in _PLACED:
                folder = Path(a.destination).parent.name
                out[folder] = out.get(folder, 0) + 1
        return dict(sorted(out.items()))

    @property
    def notes(self) -> list[SortAction]:
        """Actions that did not go as asked (a source that could not be deleted, a link, ...)."""
        return [a for a in self.actions if a.note]


def folder_name(label: str) -> str:
    """A label as a safe folder name (path separators and reserved characters become ``_``)."""
    name = _UNSAFE.sub("_", label).strip().strip(".")
    return name or "_"


def _orphans(dest: Path, logged: set[str]) -> dict[Path, Path]:
    """Files a killed sort placed but did not log: ``{placed file: its .part hard link}``.

    A placed file keeps a hidden hard link ``.NAME.part-PID-TID`` until its log line is written, so
    a part file of a dead process with the same inode as ``NAME`` proves sortsight put it there.
    Other part files of dead processes are half-written temporaries and are removed.
    """
    found: dict[Path, Path] = {}
    for part in dest.glob("*/.*.part-*"):
        name, _, owner = part.name[1:].rpartition(".part-")
        pid = owner.partition("-")[0]  # PID-THREAD (older runs: PID)
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # that process is still alive
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        target = _linked_file(part, part.with_name(name))
        if target is not None and str(target) not in logged:
            found[target] = part
        else:
            part.unlink(missing_ok=True)
    return found


def _linked_file(part: Path, named: Path) -> Path | None:
    """The file beside ``part`` that shares its inode (the one it names, else any: hashed names)."""
    try:
        if named.is_file() and os.path.samefile(part, named):
            return named
        inode = part.stat().st_ino
        for sibling in part.parent.iterdir():
            if sibling != part and not sibling.name.startswith(".") and sibling.stat().st_ino == inode:
                return sibling
    except OSError:
        pass
    return None


def _name_matches(candidate: Path, name: str) -> bool:
    stem, suffix = Path(name).stem, Path(name).suffix
    if candidate.name == name:
        return True
    head = f"{stem} ("
    middle = candidate.name[len(head) : len(candidate.name) - len(suffix) - 1]
    return candidate.name.startswith(head) and candidate.name.endswith(f"){suffix}") and middle.isdigit()


def _adopt(orphans: dict[Path, Path], folder: Path, src: Path, move: bool) -> Placed | None:
    """The orphan in ``folder`` that is ``src``'s own placed file, finished and ready to log."""
    for target in list(orphans):
        if target.parent != folder or not _name_matches(target, src.name):
            continue
        digest = sha256_file(target)
        if src.is_file():
            if sha256_file(src) != digest:
                continue
            if not move:
                return Placed(src, target, "copy", digest)
            try:
                src.unlink()
            except OSError as exc:
                return Placed(src, target, "copy", digest, note=f"source could not be removed ({exc})")
            return Placed(src, target, "move", digest)
        if move and not src.exists():  # killed after the source was removed
            return Placed(src, target, "move", digest)
    return None


def _unplanned(dest: Path, planned: set[Path]) -> Path:
    """In a dry run, give a later file with the same name the suffix a real run would give it."""
    stem, suffix, i, wanted = dest.stem, dest.suffix, 0, dest
    while dest in planned or dest.exists():
        i += 1
        dest = wanted.with_name(f"{stem} ({i}){suffix}")
    planned.add(dest)
    return dest


def sort_into(
    predictions: str | Path | Iterable[dict[str, Any]],
    dest: str | Path,
    *,
    threshold: float | None = None,
    move: bool = False,
    dry_run: bool = False,
    merge_identical: bool = False,
    progress: ProgressCallback | None = None,
) -> SortSummary:
    """Copy (or move) each predicted image into ``dest/<label>/``, unsure ones into ``dest/unsure/``.

    Args:
        predictions: a ``predictions.csv``/``.jsonl`` path, or rows with ``path``, ``label``,
            ``score`` and ``status`` (as :func:`sortsight.predictions.read_predictions` gives).
        dest: the destination folder (created).
        threshold: a best score below this goes to ``unsure/``; None keeps each row's status.
        move: move files instead of copying them. A source that cannot be deleted stays, and
            the log records a copy (with a note); a symbolic link is never moved.
        dry_run: only plan: return what would happen, touch nothing.
        merge_identical: do not add a suffixed copy of content already in the label folder (a
            move then removes the source; undo restores it). Off by default: every input path
            ends up as its own file.
        progress: receives ``ProgressEvent(phase="sort", ...)``.

    Returns:
        A :class:`SortSummary` (``.actions``, ``.counts``, ``.per_folder``).

    Raises:
        PredictError: the predictions file is missing, or ``dest`` is a file or cannot be written.

    Example:
        >>> s = sort_into("predictions.csv", "sorted", threshold=0.6)  # doctest: +SKIP
        >>> s.per_folder  # doctest: +SKIP
        {'letters': 120, 'maps': 31, 'unsure': 9}
    """
    dest = Path(dest).expanduser()
    if dest.exists() and not dest.is_dir():
        raise PredictError(f"'{dest}' is a file. Give a folder to sort into.")
    rows = list(read_predictions(predictions) if isinstance(predictions, (str, Path)) else predictions)
    log = ActionLog(dest / LOG_NAME)
    summary = SortSummary(dest, log.path, dry_run)
    entries = log.entries()
    done: dict[str, dict[str, Any]] = {}
    for entry in active_entries(entries):
        if entry.get("action") in ("copy", "move", "identical"):
            done[str(entry.get("source"))] = entry
    labels = {str(r.get("label") or "") for r in rows}
    unsure_folder = UNSURE if UNSURE not in {folder_name(x) for x in labels} else f"_{UNSURE}"
    orphans: dict[Path, Path] = {}
    if not dry_run:
        if dest.is_dir():
            orphans = _orphans(dest, {str(e.get("destination")) for e in entries})
        try:
            from sortsight.fileops import ensure_output_dir

            ensure_output_dir(dest, what="--sort-into folder")
        except SortsightError as exc:
            raise PredictError(str(exc)) from exc
    planned: set[Path] = set()  # destinations a dry run has already promised
    ticker = Ticker(progress, "sort", len(rows))
    for row in rows:
        action = _sort_one(
            row, dest, threshold, unsure_folder, move, dry_run, merge_identical, done, orphans, log
        )
        if dry_run and action.action in ("copy", "move"):
            action = replace(action, destination=str(_unplanned(Path(action.destination), planned)))
        summary.actions.append(action)
        ticker.advance()
    return summary


def _sort_one(
    row: dict[str, Any],
    dest: Path,
    threshold: float | None,
    unsure_folder: str,
    move: bool,
    dry_run: bool,
    merge_identical: bool,
    done: dict[str, dict[str, Any]],
    orphans: dict[Path, Path],
    log: ActionLog,
) -> SortAction:
    """Place one predicted image (or say why not) and log it."""
    source = str(row.get("path", ""))
    label = str(row.get("label") or "")
    score = row.get("score")
    score = float(score) if score not in (None, "") else None
    status = str(row.get("status") or "ok")
    if status == "unreadable" or not label:
        return SortAction(source, "", "unreadable", label, score)
    unsure = (score is not None and score < threshold) if threshold is not None else status == "unsure"
    folder = dest / (unsure_folder if unsure else folder_name(label))
    if source in done:
        return SortAction(source, str(done[source].get("destination")), "done", label, score)
    src = Path(source)
    extra: dict[str, Any] = {"label": label, "score": score, "folder": folder.name}
    if not dry_run:
        adopted = _adopt(orphans, folder, src, move)
        if adopted is not None:  # placed by a killed run, not logged yet
            log.record(
                adopted.action,
                src,
                adopted.destination,
                adopted.sha256,
                recovered=True,
                **extra,
                **({"note": adopted.note} if adopted.note else {}),
            )
            orphans.pop(adopted.destination).unlink(missing_ok=True)
            return SortAction(source, str(adopted.destination), "done", label, score, adopted.note)
    if move and src.is_symlink():
        return SortAction(source, "", "link", label, score, "a symbolic link: never moved (copy reads it)")
    if not src.is_file():
        return SortAction(source, "", "missing", label, score)

    def record(placed: Placed) -> None:
        more = dict(extra)
        if placed.source_removed:
            more["source_removed"] = True
        if placed.note:
            more["note"] = placed.note
        log.record(placed.action, placed.source, placed.destination, placed.sha256, **more)

    try:
        placed = place_file(
            src, folder, move=move, dry_run=dry_run, merge_identical=merge_identical, record=record
        )
    except SortsightError as exc:
        if not src.is_file():  # vanished between the check and the copy
            logger.warning("could not place %s: %s", src, exc)
            return SortAction(source, "", "missing", label, score)
        raise PredictError(str(exc)) from exc
    except OSError as exc:  # the source cannot be read
        return SortAction(source, "", "unreadable", label, score, exc.strerror or type(exc).__name__)
    return SortAction(source, str(placed.destination), placed.action, label, score, placed.note)
