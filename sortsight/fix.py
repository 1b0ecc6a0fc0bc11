"""Apply the fixes a user decided on (relabel or delete images), with a log and an undo.

The decisions come from the doctor, the report or the studio as a CSV ``path,action,new_label``
(``action`` is ``relabel`` or ``delete``; ``keep`` and an empty action are accepted and do
nothing). Nothing is ever deleted outright:

- **relabel** moves the file into the sibling class folder ``<class folder>/../<new_label>/``
  (so ``data/cats/x.jpg`` → ``data/dogs/x.jpg`` and ``data/train/cats/x.jpg`` →
  ``data/train/dogs/x.jpg``); a name clash gets a suffix, never an overwrite.
- **delete** moves the file into a trash folder (``<root>/.sortsight-trash/`` by default, which
  dataset scans ignore), keeping its relative path.

Every action is written to an :class:`~sortsight.fileops.ActionLog` (``<root>/sortsight-moves.jsonl``
by default) with the file's SHA-256, and :func:`undo` replays the log backwards.

Example:
    >>> summary = apply_decisions("decisions.csv", root="photos/")  # doctest: +SKIP
    >>> undo(summary.log_path)  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sortsight.errors import DataError
from sortsight.fileops import ActionLog, place_file, sha256_file
from sortsight.sources import SPLIT_ALIASES
from sortsight.undo import undo_log

__all__ = [
    "ACTIONS",
    "Decision",
    "FixResult",
    "FixSummary",
    "apply_decisions",
    "label_problem",
    "read_decisions",
    "relabel",
    "retag",
    "trash",
    "undo",
]

#: Actions a decisions CSV may hold. ``keep`` (or an empty cell) is accepted and does nothing.
ACTIONS = ("relabel", "delete", "keep")
LOG_NAME = "sortsight-moves.jsonl"
TRASH_NAME = ".sortsight-trash"

DecisionsSource = str | os.PathLike | Iterable[Mapping[str, Any] | Sequence[Any]]
LogArg = ActionLog | str | os.PathLike | None


@dataclass(frozen=True)
class Decision:
    """One row of a decisions CSV, checked: ``path`` exists inside the root."""

    path: Path
    action: str
    new_label: str | None = None
    row: int = 0


@dataclass(frozen=True)
class FixResult:
    """What was done (or, in a dry run, would be done) to one file.

    ``status`` is ``"done"``, ``"planned"`` (dry run), ``"unchanged"`` (already in that class, or
    ``keep``) or ``"duplicate"`` (a relabel whose target folder already holds the same content:
    the file went to the trash instead, so no copy is lost and undo restores it). ``before``:
    a retag's tags before it (None: the image had no row), so a caller need not read them again.
    """

    path: str
    action: str
    destination: str | None
    new_label: str | None
    status: str
    before: tuple[str, ...] | None = None


@dataclass
class FixSummary:
    """The outcome of :func:`apply_decisions`."""

    results: list[FixResult] = field(default_factory=list)
    log_path: str = ""
    trash_dir: str = ""
    dry_run: bool = False

    @property
    def relabelled(self) -> int:
        return sum(r.action == "relabel" and r.status in ("done", "planned") for r in self.results)

    @property
    def deleted(self) -> int:
        return sum(r.action == "delete" and r.status in ("done", "planned") for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "log_path": self.log_path,
            "trash_dir": self.trash_dir,
            "dry_run": self.dry_run,
            "relabelled": self.relabelled,
            "deleted": self.deleted,
            "results": [asdict(r) for r in self.results],
        }


# --------------------------------------------------------------------------- reading decisions


def label_problem(label: str) -> str | None:
    """The problem with ``label`` as a class (folder) name, or None when it is fine.

    Split folder names (``train``, ``validation``, ``test`` and their aliases, any case) are
    refused: a class folder with such a name would turn the data into split folders.

    Example:
        >>> label_problem("maps"), label_problem("Test")
        (None, "'Test' is the name of a split folder (train, validation, test, …); choose another class name")
    """
    if not label:
        return "relabel needs a new_label"
    if label in (".", "..") or label.startswith(".") or any(c in label for c in "/\\\0"):
        return f"new_label '{label}' is not a usable folder name"
    if label.strip().lower() in SPLIT_ALIASES:
        return (
            f"'{label}' is the name of a split folder (train, validation, test, …); choose another class name"
        )
    return None


def _rows_of(source: DecisionsSource) -> tuple[list[dict[str, str]], str]:
    """Rows as dicts with lower-case keys, and a name for messages."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise DataError(
                f"Decisions file '{path}' not found. Give a CSV with columns path,action,new_label."
            )
        text = path.read_text(encoding="utf-8-sig")
        dialect = "excel-tab" if path.suffix.lower() == ".tsv" else "excel"
        reader = csv.DictReader(io.StringIO(text), dialect=dialect)
        fields = [f.strip().lower() for f in reader.fieldnames or []]
        missing = [c for c in ("path", "action") if c not in fields]
        if missing:
            raise DataError(
                f"Decisions file '{path}' has columns {fields or 'none'}; it needs path,action,new_label."
            )
        rows = [{(k or "").strip().lower(): (v or "").strip() for k, v in r.items()} for r in reader]
        return rows, path.name
    rows = []
    for raw in source:
        if isinstance(raw, Mapping):
            rows.append({str(k).lower(): "" if v is None else str(v).strip() for k, v in raw.items()})
        else:
            values = ["" if v is None else str(v).strip() for v in raw]
            rows.append(dict(zip(("path", "action", "new_label"), values, strict=False)))
    return rows, "decisions"


def read_decisions(source: DecisionsSource, *, root: str | os.PathLike) -> list[Decision]:
    """Read and check decisions from a CSV file or from rows (dicts or ``(path, action, new_label)``).

    Paths may be absolute or relative to ``root``; each must be an existing file inside ``root``.

    Raises:
        DataError: naming the first problems (missing file, unknown action, bad label, ...).
    """
    root_path = Path(root).resolve()
    rows, name = _rows_of(source)
    problems: list[str] = []
    decisions: dict[Path, Decision] = {}
    for number, row in enumerate(rows, start=2 if name != "decisions" else 1):
        raw_path = row.get("path", "")
        action = row.get("action", "").lower() or "keep"
        new_label = row.get("new_label") or row.get("label") or None
        where = f"row {number}"
        if not raw_path:
            problems.append(f"{where}: empty path")
            continue
        if action not in ACTIONS:
            problems.append(f"{where}: unknown action '{action}' (use relabel or delete)")
            continue
        path = Path(raw_path)
        path = (path if path.is_absolute() else root_path / path).resolve()
        if not path.is_relative_to(root_path):
            problems.append(f"{where}: '{raw_path}' is outside the data folder '{root_path}'")
            continue
        if not path.is_file():
            problems.append(f"{where}: file '{raw_path}' not found (moved already?)")
            continue
        if action == "relabel":
            issue = label_problem(new_label or "")
            if issue:
                problems.append(f"{where}: {issue}")
                continue
            if path.parent == root_path:
                problems.append(
                    f"{where}: '{raw_path}' is not inside a class folder, so it cannot be relabelled"
                )
                continue
        decision = Decision(path, action, new_label if action == "relabel" else None, number)
        earlier = decisions.get(path)
        if earlier is not None and (earlier.action, earlier.new_label) != (
            decision.action,
            decision.new_label,
        ):
            problems.append(f"{where}: '{raw_path}' already has a different decision on row {earlier.row}")
            continue
        decisions[path] = decision
    if problems:
        shown = "; ".join(problems[:3])
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise DataError(f"{name}: {shown}{more}. Fix these rows and run again; nothing was changed.")
    return list(decisions.values())


# --------------------------------------------------------------------------- single actions


def _log(log: LogArg, root: Path) -> ActionLog:
    if isinstance(log, ActionLog):
        return log
    return ActionLog(Path(log) if log is not None else root / LOG_NAME)


def _trash_dir(trash_dir: str | os.PathLike | None, root: Path) -> Path:
    return Path(trash_dir) if trash_dir is not None else root / TRASH_NAME


def trash(
    path: str | os.PathLike,
    *,
    root: str | os.PathLike,
    trash_dir: str | os.PathLike | None = None,
    log: LogArg = None,
    dry_run: bool = False,
    reason: str = "",
) -> FixResult:
    """Move one image into the trash folder (keeping its path relative to ``root``) and log it.

    Raises:
        DataError: the file is missing or outside ``root``.
    """
    root_path = Path(root).resolve()
    src = Path(path).resolve()
    if not src.is_relative_to(root_path):
        raise DataError(f"'{path}' is outside the data folder '{root_path}'; give the right root.")
    if not src.is_file():
        raise DataError(f"File '{path}' not found; it may have been moved already.")
    target = _trash_dir(trash_dir, root_path) / src.relative_to(root_path).parent
    placed = place_file(src, target, move=True, dry_run=dry_run)
    if not dry_run:
        extra = {"reason": reason} if reason else {}
        _log(log, root_path).record("delete", src, placed.destination, placed.sha256, **extra)
    return FixResult(str(src), "delete", str(placed.destination), None, "planned" if dry_run else "done")


def relabel(
    path: str | os.PathLike,
    new_label: str,
    *,
    root: str | os.PathLike,
    log: LogArg = None,
    trash_dir: str | os.PathLike | None = None,
    dry_run: bool = False,
) -> FixResult:
    """Move one image from its class folder into the sibling folder ``new_label`` and log it.

    Raises:
        DataError: the file is missing, outside ``root``, not in a class folder, or the label is
            not a usable folder name.
    """
    root_path = Path(root).resolve()
    src = Path(path).resolve()
    problem = label_problem(new_label)
    if problem:
        raise DataError(f"Cannot relabel '{path}': {problem}.")
    if not src.is_relative_to(root_path) or src.parent == root_path:
        raise DataError(f"'{path}' is not in a class folder under '{root_path}'; give the right root.")
    if not src.is_file():
        raise DataError(f"File '{path}' not found; it may have been moved already.")
    old_label = src.parent.name
    if old_label == new_label:
        return FixResult(str(src), "relabel", str(src), new_label, "unchanged")
    target = src.parent.parent / new_label
    plan = place_file(src, target, move=True, dry_run=True, merge_identical=True)
    if plan.action == "identical":
        # The class folder already holds this exact content: trash this copy (undo restores it)
        # rather than let the move drop it silently.
        result = trash(
            src,
            root=root_path,
            trash_dir=trash_dir,
            log=log,
            dry_run=dry_run,
            reason=f"identical copy already in {new_label}: {plan.destination.name}",
        )
        return FixResult(str(src), "relabel", result.destination, new_label, "duplicate")
    if dry_run:
        return FixResult(str(src), "relabel", str(plan.destination), new_label, "planned")
    placed = place_file(src, target, move=True, sha256=plan.sha256)
    _log(log, root_path).record(
        "relabel", src, placed.destination, placed.sha256, old_label=old_label, new_label=new_label
    )
    return FixResult(str(src), "relabel", str(placed.destination), new_label, "done")


def retag(
    path: str | os.PathLike,
    tags: Sequence[str] | None,
    *,
    labels_file: str | os.PathLike,
    log: LogArg = None,
) -> FixResult:
    """Give one image exactly ``tags`` in a multi-label labels file (``None``: remove its row), logged.

    The log line (action ``retag``) keeps the tags before and after, so :func:`undo` gives the
    image its old tags back (and refuses when they were edited again meanwhile).

    Raises:
        DataError: the labels file cannot be edited (see :func:`sortsight.tagedit.set_tags`),
            or the image is not in it and no tags are given.
    """
    from sortsight.labelfile import split_cell
    from sortsight.tagedit import row_of, set_tags, tags_of

    labels = Path(labels_file).resolve()
    src = Path(path).resolve()
    if not labels.is_file():
        raise DataError(f"Labels file '{labels_file}' not found; give the file that holds the tags.")
    before = tags_of(labels, src)
    after = None if tags is None else sorted(split_cell(list(tags), "|"))  # as set_tags writes them
    if before is None and after is None:
        raise DataError(f"'{src.name}' has no row in '{labels.name}'; there is nothing to remove.")
    if before is not None and after is not None and sorted(before) == after:
        return FixResult(str(src), "retag", str(labels), "|".join(after), "unchanged", tuple(before))
    row = row_of(labels, src) if after is None else None  # a removed row keeps its other cells for undo
    before = set_tags(labels, src, after)
    sha = sha256_file(src) if src.is_file() else ""
    extra = {"row": row} if row is not None else {}
    _log(log, labels.parent).record("retag", src, labels, sha, before=before, after=after, **extra)
    new = None if after is None else "|".join(after)
    return FixResult(str(src), "retag", str(labels), new, "done", None if before is None else tuple(before))


# --------------------------------------------------------------------------- batches and undo


def apply_decisions(
    decisions: DecisionsSource,
    *,
    root: str | os.PathLike,
    trash_dir: str | os.PathLike | None = None,
    log: LogArg = None,
    dry_run: bool = False,
) -> FixSummary:
    """Relabel or trash the images named in a decisions CSV (or rows), logging every action.

    All rows are checked before anything is moved, so a bad row changes nothing.

    Args:
        decisions: a ``path,action,new_label`` CSV file, or rows (dicts or tuples).
        root: the data folder; relative paths are read from it and no file outside it is touched.
        trash_dir: where deleted images go (default ``<root>/.sortsight-trash``).
        log: the action log (default ``<root>/sortsight-moves.jsonl``).
        dry_run: plan only; touch nothing and write no log.

    Returns:
        A :class:`FixSummary` with one :class:`FixResult` per decision.

    Raises:
        DataError: a row is wrong (see :func:`read_decisions`).

    Example:
        >>> apply_decisions([("cats/x.jpg", "relabel", "dogs")], root="photos")  # doctest: +SKIP
    """
    root_path = Path(root).resolve()
    checked = read_decisions(decisions, root=root_path)
    action_log = _log(log, root_path)
    summary = FixSummary(
        log_path=str(action_log.path), trash_dir=str(_trash_dir(trash_dir, root_path)), dry_run=dry_run
    )
    for decision in checked:
        if decision.action == "relabel":
            assert decision.new_label is not None
            result = relabel(
                decision.path,
                decision.new_label,
                root=root_path,
                log=action_log,
                trash_dir=trash_dir,
                dry_run=dry_run,
            )
        elif decision.action == "delete":
            result = trash(
                decision.path, root=root_path, trash_dir=trash_dir, log=action_log, dry_run=dry_run
            )
        else:
            result = FixResult(str(decision.path), "keep", None, None, "unchanged")
        summary.results.append(result)
    return summary


def undo(log_path: str | os.PathLike, *, dry_run: bool = False) -> list[dict[str, Any]]:
    """Undo every logged action (newest first); return the entries undone.

    See :func:`sortsight.undo.undo_log`: moves (relabel, delete-to-trash) are moved back.

    Raises:
        SortsightError: the log does not exist.
    """
    return undo_log(Path(log_path), dry_run=dry_run)
