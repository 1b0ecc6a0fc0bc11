"""Sort predicted images into ``DEST/<label>/`` folders — safely, resumably, with a log for undo.

Images are copied by default (``move=True`` to move them); those whose best score is below the
threshold go to ``DEST/unsure/``. Nothing is ever overwritten: a name clash gets a suffix
(``photo (1).jpg``) and identical content already in place is recognised and not copied again.
Every action is appended to ``DEST/sortsight-moves.jsonl`` (source, destination, SHA-256), which
``sortsight undo`` replays backwards. Running the same sort again after an interruption (even
``kill -9``) skips what the log says is done and finishes the rest: no file lost, none duplicated.
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
from sortsight.fileops import ActionLog, Placed, place_file
from sortsight.predict import read_predictions
from sortsight.progress import ProgressCallback, Ticker

logger = logging.getLogger(__name__)

__all__ = ["LOG_NAME", "UNSURE", "SortAction", "SortSummary", "folder_name", "sort_into"]

LOG_NAME = "sortsight-moves.jsonl"
UNSURE = "unsure"
_UNSAFE = re.compile(r'[\\/:*?"<>|\x00-\x1f]')


@dataclass(frozen=True)
class SortAction:
    """One file's fate: ``action`` is copy, move, identical (already there), done (by an earlier
    run), missing (source gone) or unreadable (left in place)."""

    source: str
    destination: str
    action: str
    label: str
    score: float | None


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
            if a.action in ("copy", "move", "identical", "done"):
                folder = Path(a.destination).parent.name
                out[folder] = out.get(folder, 0) + 1
        return dict(sorted(out.items()))


def folder_name(label: str) -> str:
    """A label as a safe folder name (path separators and reserved characters become ``_``)."""
    name = _UNSAFE.sub("_", label).strip().strip(".")
    return name or "_"


def _stale_part_files(dest: Path) -> None:
    """Remove temporary ``.name.part-PID`` files left in DEST by a killed sort (never user files)."""
    for part in dest.glob("*/.*.part-*"):
        pid = part.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # that process is still alive
        except ProcessLookupError:
            part.unlink(missing_ok=True)
        except PermissionError:
            continue


def _unplanned(placed: Placed, planned: set[Path]) -> Placed:
    """In a dry run, give a later file with the same name the suffix a real run would give it."""
    dest = placed.destination
    stem, suffix, i = dest.stem, dest.suffix, 0
    while dest in planned or dest.exists():
        i += 1
        dest = placed.destination.with_name(f"{stem} ({i}){suffix}")
    planned.add(dest)
    return replace(placed, destination=dest)


def sort_into(
    predictions: str | Path | Iterable[dict[str, Any]],
    dest: str | Path,
    *,
    threshold: float | None = None,
    move: bool = False,
    dry_run: bool = False,
    progress: ProgressCallback | None = None,
) -> SortSummary:
    """Copy (or move) each predicted image into ``dest/<label>/``, unsure ones into ``dest/unsure/``.

    Args:
        predictions: a ``predictions.csv``/``.jsonl`` path, or rows with ``path``, ``label``,
            ``score`` and ``status`` (as :func:`sortsight.predict.read_predictions` gives).
        dest: the destination folder (created).
        threshold: a best score below this goes to ``unsure/``; None keeps each row's status.
        move: move files instead of copying them.
        dry_run: only plan: return what would happen, touch nothing.
        progress: receives ``ProgressEvent(phase="sort", ...)``.

    Returns:
        A :class:`SortSummary` (``.actions``, ``.counts``, ``.per_folder``).

    Raises:
        PredictError: the predictions file is missing, or ``dest`` is a file.

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
    done: dict[str, dict[str, Any]] = {}
    for entry in log.entries():
        if entry.get("action") in ("copy", "move", "identical"):
            done[str(entry.get("source"))] = entry
        elif entry.get("action") == "undo":
            done.pop(str(entry.get("source")), None)
    labels = {str(r.get("label") or "") for r in rows}
    unsure_folder = UNSURE if UNSURE not in {folder_name(x) for x in labels} else f"_{UNSURE}"
    if not dry_run and dest.is_dir():
        _stale_part_files(dest)
    planned: set[Path] = set()  # destinations a dry run has already promised
    ticker = Ticker(progress, "sort", len(rows))
    for row in rows:
        source = str(row.get("path", ""))
        label = str(row.get("label") or "")
        score = row.get("score")
        score = float(score) if score not in (None, "") else None
        status = str(row.get("status") or "ok")
        if status == "unreadable" or not label:
            summary.actions.append(SortAction(source, "", "unreadable", label, score))
            ticker.advance()
            continue
        unsure = (score is not None and score < threshold) if threshold is not None else status == "unsure"
        folder = dest / (unsure_folder if unsure else folder_name(label))
        if source in done:
            summary.actions.append(
                SortAction(source, str(done[source].get("destination")), "done", label, score)
            )
            ticker.advance()
            continue
        src = Path(source)
        if not src.is_file():
            found = folder / src.name
            action = "done" if (move and found.is_file()) else "missing"
            if action == "done" and not dry_run:  # killed between the move and its log line
                from sortsight.fileops import sha256_file

                log.record(
                    "move", source, found, sha256_file(found), label=label, score=score, recovered=True
                )
            summary.actions.append(
                SortAction(source, str(found) if action == "done" else "", action, label, score)
            )
            ticker.advance()
            continue
        try:
            placed = place_file(src, folder, move=move, dry_run=dry_run)
        except SortsightError as exc:  # vanished between the check and the copy
            logger.warning("could not place %s: %s", src, exc)
            summary.actions.append(SortAction(source, "", "missing", label, score))
            ticker.advance()
            continue
        if dry_run and placed.action in ("copy", "move"):
            placed = _unplanned(placed, planned)
        if not dry_run:
            extra: dict[str, Any] = {"label": label, "score": score, "folder": folder.name}
            if placed.action == "identical" and move:
                extra["source_removed"] = True
            log.record(placed.action, placed.source, placed.destination, placed.sha256, **extra)
        summary.actions.append(SortAction(source, str(placed.destination), placed.action, label, score))
        ticker.advance()
    return summary
