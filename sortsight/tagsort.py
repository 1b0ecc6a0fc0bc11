"""Sort a multi-label model's predictions: a copy of each image in every one of its tags' folders.

``DEST/<tag>/`` gets a copy of every image predicted with that tag; images with no tag over its
threshold go to ``DEST/unsure/``. Images are always copied (one image, several folders), never
moved, so nothing of the originals changes. Every copy is logged in ``DEST/sortsight-moves.jsonl``
like :func:`sortsight.sort.sort_into` does (``sortsight undo`` removes the copies), and a rerun
after an interruption — even ``kill -9`` — skips what the log or the folders already hold: no
copy is made twice.

With ``tags_only=True`` no image is copied: ``DEST/tags.csv`` lists every image with its tags
(``path,labels``; tags ``|``-joined) — a labels file sortsight can train on.

Example:
    >>> s = sort_into_tags("predictions.csv", "tagged")  # doctest: +SKIP
    >>> s.per_folder  # doctest: +SKIP
    {'people': 120, 'text': 88, 'unsure': 9}
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from sortsight.errors import PredictError, SortsightError
from sortsight.fileops import ActionLog, Placed, atomic_write_text, place_file
from sortsight.predictions import read_predictions
from sortsight.progress import ProgressCallback, Ticker
from sortsight.sort import (
    LOG_NAME,
    UNSURE,
    SortAction,
    SortSummary,
    _adopt,
    _orphans,
    _unplanned,
    folder_name,
)

__all__ = ["TAGS_FILE", "sort_into_tags"]

logger = logging.getLogger(__name__)

TAGS_FILE = "tags.csv"


def _tags_of(row: dict[str, Any]) -> list[str]:
    value = row.get("tags")
    if isinstance(value, list):
        return [str(t) for t in value if str(t)]
    return [t for t in str(value or "").split("|") if t]


def sort_into_tags(
    predictions: str | Path | Iterable[dict[str, Any]],
    dest: str | Path,
    *,
    tags_only: bool = False,
    dry_run: bool = False,
    progress: ProgressCallback | None = None,
) -> SortSummary:
    """Copy each predicted image into ``dest/<tag>/`` for each of its tags (``dest/unsure/`` when none).

    Args:
        predictions: a multi-label ``predictions.csv``/``.jsonl`` path, or its rows (with ``path``,
            ``tags``, ``status``).
        dest: the destination folder (created).
        tags_only: copy nothing; write ``dest/tags.csv`` (``path,labels``) instead.
        dry_run: only plan; touch nothing.
        progress: receives ``ProgressEvent(phase="sort", ...)``.

    Returns:
        A :class:`sortsight.sort.SortSummary`; one action per (image, tag folder).

    Raises:
        PredictError: the predictions have no ``tags`` column, or ``dest`` is a file.
    """
    dest = Path(dest).expanduser()
    if dest.exists() and not dest.is_dir():
        raise PredictError(f"'{dest}' is a file. Give a folder to sort into.")
    rows = list(read_predictions(predictions) if isinstance(predictions, (str, Path)) else predictions)
    if rows and "tags" not in rows[0]:
        raise PredictError(
            "These predictions have no 'tags' column (a single-label model made them); sort them "
            "with sortsight.sort.sort_into, or predict again with a multi-label model."
        )
    log = ActionLog(dest / LOG_NAME)
    summary = SortSummary(dest, log.path, dry_run)
    if tags_only:
        return _write_tags_file(rows, dest, summary)
    done: dict[tuple[str, str], str] = {}
    for entry in log.entries():
        key = (str(entry.get("source")), str(entry.get("folder", "")))
        if entry.get("action") in ("copy", "identical"):
            done[key] = str(entry.get("destination"))
        elif entry.get("action") == "undo":
            done.pop(key, None)
    tags = {t for r in rows for t in _tags_of(r)}
    unsure_folder = UNSURE if UNSURE not in {folder_name(t) for t in tags} else f"_{UNSURE}"
    orphans: dict[Path, Path] = {}
    if not dry_run and dest.is_dir():  # files a killed run placed but did not log
        orphans = _orphans(dest, {str(e.get("destination")) for e in log.entries()})
    planned: set[Path] = set()
    ticker = Ticker(progress, "sort", len(rows))
    for row in rows:
        source = str(row.get("path", ""))
        score = row.get("score")
        score = float(score) if score not in (None, "") else None
        if str(row.get("status") or "ok") == "unreadable":
            summary.actions.append(SortAction(source, "", "unreadable", "", score))
            ticker.advance()
            continue
        for tag in _tags_of(row) or [""]:
            folder = dest / (folder_name(tag) if tag else unsure_folder)
            if (source, folder.name) in done:
                summary.actions.append(SortAction(source, done[(source, folder.name)], "done", tag, score))
                continue
            adopted = None if dry_run else _adopt(orphans, folder, Path(source), False)
            if adopted is not None:
                log.record(
                    "copy",
                    Path(source),
                    adopted.destination,
                    adopted.sha256,
                    label=tag,
                    score=score,
                    folder=folder.name,
                    recovered=True,
                )
                orphans.pop(adopted.destination).unlink(missing_ok=True)
                summary.actions.append(SortAction(source, str(adopted.destination), "done", tag, score))
                continue
            logged: list[Placed] = []

            def record(
                placed: Placed,
                tag: str = tag,
                folder: Path = folder,
                source: str = source,
                score: float | None = score,
                logged: list[Placed] = logged,
            ) -> None:
                # logged while the file's hidden link still exists: a kill before this line
                # leaves a provable orphan that the next run adopts instead of copying again
                logged.append(placed)
                log.record(
                    placed.action,
                    source,
                    placed.destination,
                    placed.sha256,
                    label=tag,
                    score=score,
                    folder=folder.name,
                )

            try:
                placed = place_file(source, folder, dry_run=dry_run, record=None if dry_run else record)
            except SortsightError as exc:  # the source is gone
                logger.warning("could not place %s: %s", source, exc)
                summary.actions.append(SortAction(source, "", "missing", tag, score))
                continue
            if dry_run and placed.action == "copy":
                placed = replace(placed, destination=_unplanned(placed.destination, planned))
            if not dry_run and not logged:  # already in place: nothing was written, still logged
                record(placed)
            summary.actions.append(SortAction(source, str(placed.destination), placed.action, tag, score))
        ticker.advance()
    return summary


def _write_tags_file(rows: list[dict[str, Any]], dest: Path, summary: SortSummary) -> SortSummary:
    """``dest/tags.csv``: every readable image with its tags, written atomically (rerun: rewritten)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["path", "labels"])
    for row in rows:
        if str(row.get("status") or "ok") == "unreadable":
            summary.actions.append(SortAction(str(row.get("path")), "", "unreadable", "", None))
            continue
        writer.writerow([row.get("path"), "|".join(_tags_of(row))])
        summary.actions.append(SortAction(str(row.get("path")), str(dest / TAGS_FILE), "tagged", "", None))
    if not summary.dry_run:
        atomic_write_text(dest / TAGS_FILE, buffer.getvalue())
    return summary
