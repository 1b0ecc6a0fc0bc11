"""Reading what jobs write: a run folder's metrics, leaderboard and evaluation; predictions CSVs.

These readers are forgiving on purpose: they run while a job is still writing (a torn last
line is ignored) and show whatever is there so far.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from sortsight.runs import read_json, read_jsonl

__all__ = [
    "metric_series",
    "read_json",
    "read_jsonl",
    "read_leaderboard",
    "read_predictions",
    "run_folder",
    "train_metrics",
]


def run_folder(job_folder: str | Path) -> Path:
    """The run folder of a train job."""
    return Path(job_folder) / "run"


def _candidate_of(row: dict[str, Any]) -> str:
    for key in ("candidate", "name", "model"):
        if row.get(key) not in (None, ""):
            return str(row[key])
    return "run"


def metric_series(rows: list[dict[str, Any]]) -> dict[str, dict[str, list[list[float]]]]:
    """``{candidate: {metric: [[x, y], ...]}}`` from metrics.jsonl rows, x being epoch (or step)."""
    series: dict[str, dict[str, list[list[float]]]] = {}
    for index, row in enumerate(rows):
        x = row.get("epoch", row.get("step", index + 1))
        if not isinstance(x, (int, float)):
            continue
        per = series.setdefault(_candidate_of(row), {})
        for key, value in row.items():
            if key in ("epoch", "step", "time", "elapsed", "lr") or isinstance(value, bool):
                continue
            if isinstance(value, (int, float)):
                per.setdefault(key, []).append([float(x), float(value)])
    return series


def train_metrics(run: Path) -> list[dict[str, Any]]:
    """Every metrics row of a run: ``metrics.jsonl`` of a one-model run, or of each candidate
    (``candidates/<name>/metrics.jsonl``, where the folder name tells candidates apart)."""
    rows = read_jsonl(run / "metrics.jsonl")
    for path in sorted((run / "candidates").glob("*/metrics.jsonl")):
        rows += [{**row, "candidate": path.parent.name} for row in read_jsonl(path)]
    return rows


def read_leaderboard(run: Path) -> list[dict[str, Any]]:
    """The candidates' scores: ``leaderboard.json`` when written, else what is known so far
    (``sortsight.json`` of a finished one-model run, each finished candidate's result)."""
    data = read_json(run / "leaderboard.json")
    if isinstance(data, dict):
        data = next((v for v in data.values() if isinstance(v, list)), None)
    if not isinstance(data, list):
        info = read_json(run / "sortsight.json")
        data = info.get("candidates") if isinstance(info, dict) else None
    if not isinstance(data, list):
        data = []
        for path in sorted((run / "candidates").glob("*/checkpoints/result.json")):
            result = read_json(path)
            if isinstance(result, dict):
                metrics = result.get("metrics") or {}
                data.append(
                    {
                        "candidate": path.parent.parent.name,
                        "model": result.get("model"),
                        "image_size": result.get("image_size"),
                        "chosen": result.get("chosen"),
                        **{f"val_{k}": v for k, v in metrics.items()},
                    }
                )
    rows = [{k: v for k, v in row.items() if k != "model_dir"} for row in data if isinstance(row, dict)]
    return rows


def read_predictions(path: Path, *, limit: int = 500) -> tuple[list[dict[str, Any]], int]:
    """The first ``limit`` rows of a predictions CSV, and how many rows it has."""
    rows: list[dict[str, Any]] = []
    total = 0
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                total += 1
                if len(rows) < limit:
                    try:
                        row["top_k_list"] = json.loads(row.get("top_k") or "[]")
                    except ValueError:
                        row["top_k_list"] = []
                    rows.append(row)
    except OSError:
        return [], 0
    return rows, total
