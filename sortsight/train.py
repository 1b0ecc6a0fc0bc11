"""``sortsight.train(config)``: the public front door of the training engine (:mod:`sortsight.training`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sortsight._callable import make_module_callable
from sortsight.training.run import CandidateResult, TrainResult, train

__all__ = ["CandidateResult", "TrainResult", "load_run_json", "train"]


def load_run_json(run_dir: str | Path) -> dict[str, Any]:
    """The ``sortsight.json`` of a run folder."""
    return dict(json.loads((Path(run_dir) / "sortsight.json").read_text(encoding="utf-8")))


make_module_callable(__name__, train)  # sortsight.train(...) works in every import order
