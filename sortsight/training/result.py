"""What a training run gives back: one :class:`CandidateResult` per trained model and the
:class:`TrainResult` of the run (its folder, the kept model, the leaderboard)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["CandidateResult", "TrainResult"]


@dataclass
class CandidateResult:
    """One trained model of a run (a run with ``--candidates`` has several)."""

    model: str
    image_size: int
    chosen: str  # "head" | "finetune" | "wise" (a WiSE-FT mix of the two)
    metrics: dict[str, float]  # validation metrics of the kept model (before any refit)
    head_metrics: dict[str, float]
    model_dir: Path
    epochs: int = 0
    steps: int = 0
    # completed | early_stopping | no_gain | time_budget | time_cap | head_only | head_good_enough
    stopped: str = "completed"
    seconds: float = 0.0
    engine: dict[str, Any] = field(default_factory=dict)
    wise_alpha: float = 0.0
    refit: dict[str, Any] = field(default_factory=dict)
    test_metrics: dict[str, float] = field(default_factory=dict)
    first_model_seconds: float = 0.0

    def row(self) -> dict[str, Any]:
        """A flat leaderboard row."""
        return {
            "model": self.model,
            "image_size": self.image_size,
            "chosen": self.chosen,
            "val_accuracy": self.metrics.get("accuracy"),
            "val_f1_macro": self.metrics.get("f1_macro"),
            "val_loss": self.metrics.get("loss"),
            "head_accuracy": self.head_metrics.get("accuracy"),
            "test_accuracy": self.test_metrics.get("accuracy"),
            "wise_alpha": self.wise_alpha,
            "epochs": self.epochs,
            "steps": self.steps,
            "stopped": self.stopped,
            "seconds": round(self.seconds, 1),
            "model_dir": str(self.model_dir),
        }


@dataclass
class TrainResult:
    """What :func:`train` made: the run folder, the kept model and every candidate's scores."""

    run_dir: Path
    model_dir: Path
    best: CandidateResult
    candidates: list[CandidateResult]
    seconds: float

    @property
    def metrics(self) -> dict[str, float]:
        """Validation metrics of the kept model (measured before the refit on train + validation)."""
        return self.best.metrics

    @property
    def test_metrics(self) -> dict[str, float]:
        """Test metrics of the kept model when the data has a test split (the headline), else {}."""
        return self.best.test_metrics

    @property
    def leaderboard(self) -> list[dict[str, Any]]:
        rows = sorted((c.row() for c in self.candidates), key=_rank_key, reverse=True)
        return [{"rank": i + 1, **r} for i, r in enumerate(rows)]


def _rank_key(row: dict[str, Any]) -> tuple[float, float]:
    return (row.get("val_accuracy") or 0.0, -(row.get("val_loss") or 0.0))
