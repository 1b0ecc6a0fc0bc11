"""``predictions.csv`` (or ``.jsonl``): the one owner of the file ``sortsight predict`` writes.

Columns ``path,label,score,top_k,status,model,error``; a multi-label model's file adds ``tags``
(``|``-joined) after ``path`` and one ``score:<tag>`` column per tag. ``model`` is the model's
absolute path, ``status`` one of ``ok``, ``unsure`` or ``unreadable``. Every writer (the local
engine, the Ray engine) goes through :class:`PredictionWriter`, every reader through
:func:`read_predictions` or :func:`read_page`.

The file is appended batch by batch, each batch flushed and fsynced, so an interrupted job keeps
its rows and a rerun skips them (:attr:`PredictionWriter.done`). A file that is not ours (a user's
own CSV) or that holds another model's rows is refused before anything is written.

Example:
    >>> with PredictionWriter("predictions.csv", model="runs/covers") as out:  # doctest: +SKIP
    ...     out.write({"path": "/scans/a.jpg", "label": "useful", "score": 0.93, "top_k": [],
    ...                "status": "ok", "error": ""})
    ...     out.commit()
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sortsight.errors import PredictError
from sortsight.fileops import json_line, repair_tail

__all__ = [
    "CSV_COLUMNS",
    "PredictSummary",
    "PredictionWriter",
    "output_path",
    "read_page",
    "read_predictions",
    "tag_columns",
]

CSV_COLUMNS = ("path", "label", "score", "top_k", "status", "model", "error")


def tag_columns(tags: Sequence[str]) -> tuple[str, ...]:
    """The columns of a multi-label ``predictions.csv``: the single-label ones plus ``tags``
    (``|``-joined) and one ``score:<tag>`` column per tag."""
    return ("path", "tags", *CSV_COLUMNS[1:], *(f"score:{t}" for t in tags))


def output_path(output: str | Path, *, jsonl: bool = False) -> Path:
    """The file a predict job writes: ``output``, or with ``jsonl`` its ``.jsonl`` twin (the
    default ``predictions.csv`` becomes ``predictions.jsonl``; another name must end in ``.jsonl``)."""
    out = Path(output)
    if jsonl and out.suffix.lower() != ".jsonl":
        if str(output) != "predictions.csv":
            raise PredictError(f"--jsonl writes JSON Lines; name the output '*.jsonl', not '{out}'.")
        out = out.with_suffix(".jsonl")
    return out


def _is_ours(path: Path) -> bool:
    with open(path, "rb") as fh:
        first = fh.readline(1 << 16).decode("utf-8", "surrogateescape").strip().lstrip("\ufeff")
    if path.suffix.lower() == ".jsonl":
        try:
            return set(CSV_COLUMNS) <= set(json.loads(first))
        except (ValueError, TypeError):
            return False
    header = next(csv.reader([first]), [])
    extra = set(header) - set(CSV_COLUMNS) - {"tags"}  # a tagger's file: tags, score:<tag> columns
    return header == list(CSV_COLUMNS) or (
        header[:2] == ["path", "tags"]
        and set(CSV_COLUMNS) <= set(header)
        and all(c.startswith("score:") for c in extra)
    )


def _format(record: dict[str, Any], columns: Sequence[str]) -> list[str]:
    """One CSV row of ``record`` in ``columns`` order (a score with six decimals, top_k as JSON)."""
    score = record.get("score")
    values = {
        **{k: str(v) for k, v in record.items() if k not in ("score", "top_k", "scores")},
        "score": "" if score is None else f"{score:.6f}",
        "top_k": json.dumps(record.get("top_k") or [], ensure_ascii=False),
        **{f"score:{t}": f"{v:.6f}" for t, v in (record.get("scores") or {}).items()},
    }
    return [values.get(c, "") for c in columns]


@dataclass
class PredictSummary:
    """What a predict job wrote (:func:`sortsight.predict.predict_paths`, the Ray engine)."""

    output: Path
    total: int  # paths asked for
    already_done: int  # found in the output from an earlier run
    ok: int = 0
    unsure: int = 0
    unreadable: int = 0
    seconds: float = 0.0
    engine: str = ""
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def predicted(self) -> int:
        return self.ok + self.unsure + self.unreadable

    def count(self, status: str, error: str = "") -> None:
        """Count one written row by its status (an unreadable file's reason too)."""
        if status == "ok":
            self.ok += 1
        elif status == "unsure":
            self.unsure += 1
        else:
            self.unreadable += 1
            self.reasons[error] = self.reasons.get(error, 0) + 1

    @property
    def images_per_second(self) -> float:
        return self.predicted / self.seconds if self.seconds > 0 else 0.0


class PredictionWriter:
    """Append prediction records to a predictions file, refusing a file that is not ours.

    Args:
        path: ``*.csv`` or ``*.jsonl``.
        model: the model's path; the ``model`` column records it as an absolute path.
        tags: a multi-label model's tags (adds the ``tags`` and ``score:<tag>`` columns).

    Raises:
        PredictError: the file exists but is not a sortsight predictions file, or holds rows
            of another model (nothing is written to it then).
    """

    def __init__(self, path: str | Path, *, model: str | Path, tags: Sequence[str] | None = None) -> None:
        self.path = Path(path)
        self.model = os.path.abspath(model)
        self.columns = tag_columns(tags) if tags else CSV_COLUMNS
        self.jsonl = self.path.suffix.lower() == ".jsonl"
        self.done = self._done_paths()
        self._fh: IO[str] | None = None
        self._writer: Any = None

    def _done_paths(self) -> set[str]:
        """Paths already in the file (its torn last line cut); rows of another model are an error."""
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return set()
        if not _is_ours(self.path):
            raise PredictError(
                f"'{self.path}' exists and is not a sortsight predictions file (its first line is not "
                f"{','.join(CSV_COLUMNS)}); nothing was written to it. Give another --out."
            )
        repair_tail(self.path)
        done: set[str] = set()
        for row in read_predictions(self.path):
            if row.get("model") and os.path.abspath(str(row["model"])) != self.model:
                raise PredictError(
                    f"'{self.path}' holds predictions of another model ('{row.get('model')}'). Write to "
                    f"another file (--out) or remove it."
                )
            done.add(str(row["path"]))
        return done

    def __enter__(self) -> PredictionWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new_file = not self.path.is_file() or self.path.stat().st_size == 0
        # surrogateescape: a file name that is not UTF-8 on disk is written as its own bytes and
        # read back (read_predictions) as the same path
        self._fh = open(self.path, "a", encoding="utf-8", errors="surrogateescape", newline="")
        self._writer = csv.writer(self._fh)
        if new_file and not self.jsonl:
            self._writer.writerow(self.columns)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            self.commit()
            self._fh.close()
            self._fh = None

    def write(self, record: dict[str, Any]) -> None:
        """One image's row: ``path``, ``label``, ``score`` (None when unreadable), ``top_k``,
        ``status``, ``error``, and for a multi-label model ``tags`` and ``scores`` (tag → score)."""
        assert self._fh is not None, "use PredictionWriter as a context manager"
        record = {**record, "model": self.model}
        if self.jsonl:
            keys = (*CSV_COLUMNS, "tags", "scores") if self.columns is not CSV_COLUMNS else CSV_COLUMNS
            self._fh.write(json_line({c: record.get(c, "") for c in keys}) + "\n")
        else:
            self._writer.writerow(_format(record, self.columns))

    def commit(self) -> None:
        """Flush and fsync what was written: those rows survive a crash from here on."""
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())


def read_predictions(path: str | Path) -> Iterator[dict[str, Any]]:
    """Rows of a ``predictions.csv`` or ``.jsonl`` (``top_k`` parsed, ``score`` a float or None)."""
    p = Path(path)
    if not p.is_file():
        raise PredictError(f"Predictions file '{p}' not found. Run 'sortsight predict' first.")
    with open(p, encoding="utf-8", errors="surrogateescape", newline="") as fh:
        if p.suffix.lower() == ".jsonl":
            for line in fh:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a torn last line
                yield record
            return
        for raw in csv.DictReader(fh):
            if raw.get("status") is None:  # a torn last line
                continue
            row: dict[str, Any] = dict(raw)
            try:
                row["score"] = float(raw["score"]) if raw.get("score") else None
            except ValueError:
                row["score"] = None
            try:
                row["top_k"] = json.loads(raw.get("top_k") or "[]")
            except json.JSONDecodeError:
                row["top_k"] = []
            yield row


def read_page(path: str | Path, *, limit: int = 500) -> tuple[list[dict[str, Any]], int]:
    """The first ``limit`` rows of a predictions file and how many rows it has ([], 0 when it
    cannot be read): what a page that shows a job's results needs."""
    rows: list[dict[str, Any]] = []
    total = 0
    try:
        for row in read_predictions(path):
            total += 1
            if len(rows) < limit:
                rows.append(row)
    except (OSError, PredictError):
        return [], 0
    return rows, total
