"""The run folder, read: one answer to "is this a run folder or a model folder?".

A training run writes ``runs/NAME/``::

    sortsight.json     the record: config, data splits, metrics, versions, status
    model/             the kept model (HF folder: config.json, model.safetensors, ...)
    metrics.jsonl      one JSON object per evaluation step
    events.jsonl       one JSON object per progress event (see docs/architecture.md)
    leaderboard.json   one row per candidate, best first (when several were tried)
    checkpoints/, candidates/, report.html, evaluation.json, ...

Every command that takes "a run folder or a model folder" (evaluate, predict, export, app,
the studio) resolves it here with :meth:`RunFolder.resolve`. The writers stay with training;
this module only reads, and its readers are forgiving: they run while a job is still writing
(a torn last line is skipped, a half-written JSON file reads as missing).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sortsight.errors import ModelError, SortsightError

__all__ = [
    "EVALUATION",
    "EVENTS",
    "LEADERBOARD",
    "METRICS",
    "MODEL",
    "RECORD",
    "RunFolder",
    "held_out_split",
    "read_json",
    "read_jsonl",
]

RECORD = "sortsight.json"
MODEL = "model"
METRICS = "metrics.jsonl"
EVENTS = "events.jsonl"
LEADERBOARD = "leaderboard.json"
EVALUATION = "evaluation.json"


def held_out_split(splits: dict[str, Any], validation_note: str) -> tuple[str, list[str], str]:
    """``(split name, relative paths, note)`` of the held-out images a run's record lists under
    ``data.splits``: its ``test`` split, or, when it held none out, its ``validation`` split with
    ``validation_note`` (single- and multi-label evaluation say differently how optimistic that is)."""
    wanted = splits.get("test") or []
    if wanted:
        return "test", wanted, ""
    return "validation", splits.get("validation") or [], validation_note


def read_json(path: Path) -> Any:
    """A JSON file's content, or None when it is missing or half-written."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every complete JSON object line of ``path`` (none when it does not exist yet)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    rows = []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _has_model(folder: Path) -> bool:
    return (folder / "config.json").is_file()


@dataclass(frozen=True)
class RunFolder:
    """Where a model is, and the run folder around it when there is one.

    ``model_dir`` is the HF model folder; ``run_dir`` the run folder holding ``sortsight.json``
    (None for a bare model folder, e.g. one saved by a transformers ``Trainer``).

    Example:
        >>> run = RunFolder.resolve("runs/covers")  # doctest: +SKIP
        >>> run.model_dir, run.is_complete()  # doctest: +SKIP
        (PosixPath('runs/covers/model'), True)
    """

    model_dir: Path
    run_dir: Path | None = None

    @classmethod
    def resolve(cls, path: str | Path, *, error: type[SortsightError] = ModelError) -> RunFolder:
        """Resolve a run folder (``runs/NAME``), its ``model/`` folder or any HF model folder.

        Raises:
            error (default :class:`ModelError`): ``path`` is missing or holds no model
            (no ``config.json`` in it or in its ``model/``).
        """
        p = Path(path).expanduser()
        if _has_model(p):
            return cls(p, p.parent if (p.parent / RECORD).is_file() else None)
        if _has_model(p / MODEL):
            return cls(p / MODEL, p)
        if not p.exists():
            raise error(f"'{path}' not found: no model found. Give a run folder (runs/NAME) or model folder.")
        if (p / RECORD).is_file():
            raise error(
                f"Run '{path}' has no model yet (its training has not finished). Wait for it, or "
                f"continue it: sortsight train --out {path} --resume"
            )
        raise error(
            f"'{path}' is not a model folder: no model found (no config.json). Give a run folder "
            f"(runs/NAME) or an HF image-classification model folder."
        )

    @classmethod
    def find(cls, path: str | Path) -> RunFolder | None:
        """The run ``path`` is or belongs to (``runs/NAME`` or ``runs/NAME/model``), else None.
        Never raises: the run may have no model yet."""
        p = Path(path).expanduser()
        for folder in (p, p.parent):
            if (folder / RECORD).is_file():
                return cls(folder / MODEL, folder)
        return None

    @classmethod
    def at(cls, run_dir: str | Path) -> RunFolder:
        """The run folder ``run_dir`` (written by training, or still being written); never raises."""
        run = Path(run_dir)
        return cls(run / MODEL, run)

    def has_model(self) -> bool:
        """True once a model is on disk (training saves the head's model before fine-tuning)."""
        return _has_model(self.model_dir)

    def evaluation(self) -> dict[str, Any] | None:
        """The run's ``evaluation.json`` (what ``sortsight evaluate`` wrote), else None."""
        data = read_json(self.run_dir / EVALUATION) if self.run_dir else None
        return data if isinstance(data, dict) else None

    def info(self) -> dict[str, Any]:
        """The run's record (``sortsight.json``): {} for a bare model folder or a torn file."""
        data = read_json(self.run_dir / RECORD) if self.run_dir else None
        return data if isinstance(data, dict) else {}

    def metrics(self) -> list[dict[str, Any]]:
        """The rows of ``metrics.jsonl`` (one per evaluation step), complete lines only."""
        return read_jsonl(self.run_dir / METRICS) if self.run_dir else []

    def events(self) -> list[dict[str, Any]]:
        """The rows of ``events.jsonl`` (one per progress event), complete lines only."""
        return read_jsonl(self.run_dir / EVENTS) if self.run_dir else []

    def leaderboard(self) -> list[dict[str, Any]]:
        """The rows of ``leaderboard.json``, best first ([] when there is none yet)."""
        rows = read_json(self.run_dir / LEADERBOARD) if self.run_dir else None
        return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []

    def is_complete(self) -> bool:
        """True when the model is on disk and, for a run, its record says it is done."""
        if not (_has_model(self.model_dir) and any(self.model_dir.glob("model.safetensors*"))):
            return False
        return self.run_dir is None or self.info().get("status") == "done"
