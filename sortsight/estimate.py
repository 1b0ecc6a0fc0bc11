"""How long will training take? A measured estimate before anything is trained.

The studio's Train page and ``sortsight train --estimate-only`` ask this before starting. It
follows the run's own plan (:func:`sortsight.training.plan.make_plan`): per candidate, the model
is built, a sample of images is decoded and passed through the frozen-feature engine the run
will use (its ONNX graph is then cached for the run), the head fit and — when the plan may
fine-tune — one training step are timed, and the times are scaled to the whole dataset.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sortsight.config import TrainConfig
from sortsight.progress import ProgressCallback

__all__ = ["TrainEstimate", "estimate_training"]

_WARM = 8  # images that choose the engine and warm it up (not timed)
_SAMPLE = 48  # images timed end to end (decode + frozen pass)


@dataclass(frozen=True)
class TrainEstimate:
    """The estimated wall time of a training run, in total and per candidate.

    ``seconds`` is the run as planned; with ``strategy: auto`` the engine decides after the head
    whether fine-tuning pays, and ``finetune_seconds`` is what it would add at most.
    """

    seconds: float
    n_train: int
    n_valid: int
    candidates: list[dict[str, Any]] = field(default_factory=list)
    finetune_seconds: float = 0.0
    first_model_seconds: float = 0.0

    @property
    def human(self) -> str:
        """``"about 6 min"``."""
        from sortsight.training.plan import human

        return f"about {human(self.seconds)}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 1),
            "human": self.human,
            "first_model_seconds": round(self.first_model_seconds, 1),
            "finetune_seconds": round(self.finetune_seconds, 1),
            "n_train": self.n_train,
            "n_valid": self.n_valid,
            "candidates": self.candidates,
        }


def estimate_training(
    config: TrainConfig, *, progress: ProgressCallback | None = None, startup_seconds: float = 0.0
) -> TrainEstimate:
    """Estimate how long :func:`sortsight.train` would take with ``config``, without training.

    Args:
        config: the training options; ``data_path`` is required.
        progress: receives the data check's progress events.
        startup_seconds: what the run pays before :func:`sortsight.train` begins (the CLI passes
            its own start-up: a training command starts the same way); counted in the first model's
            time, and so in auto's fine-tuning cap.

    Returns:
        A :class:`TrainEstimate` (features + head [+ fine-tuning], summed over candidates).

    Raises:
        DataError, ModelError, ConfigError: as :func:`sortsight.train` would.

    Example:
        >>> estimate_training(TrainConfig(data_path="photos/")).human  # doctest: +SKIP
        'about 3 min'
    """
    import torch

    from sortsight.training.distributed import setup_environment
    from sortsight.training.frozen import FrozenPass
    from sortsight.training.head import fit_head
    from sortsight.training.loop import WISE_ALPHAS, logits, warm_up
    from sortsight.training.plan import FINETUNE_SHARE, estimate_seconds, load_data, make_plan
    from sortsight.training.run import build

    env = setup_environment()
    started = time.perf_counter()
    data = load_data(config, progress)
    # the run pays for reading the data too, and auto's fine-tuning cap counts it: the engine caps
    # fine-tuning at FINETUNE_SHARE x the time since the run started, not since the features began
    elapsed = startup_seconds + time.perf_counter() - started
    plan = make_plan(config)
    n_train, n_valid, n_test = len(data.train_paths), len(data.valid_paths), len(data.test_paths)
    rows: list[dict[str, Any]] = []
    for name, size in plan.candidates:
        t0 = time.perf_counter()
        _model, data_config, split = build(name, size, config, list(data.classes))
        frozen = FrozenPass(split, data_config)
        frozen.run(data.train_paths[:_WARM])  # chooses the engine (exports and caches ONNX once)
        setup = time.perf_counter() - t0
        sample = data.train_paths[_WARM : _WARM + _SAMPLE] or data.train_paths[:_WARM]
        measured = frozen.run(sample)
        per_image = measured.seconds / max(1, len(measured.kept))
        y = torch.tensor([data.train_targets[data.train_paths.index(p)] for p in sample])[measured.kept]
        t = time.perf_counter()
        if len(set(y.tolist())) > 1:
            fit_head(
                measured.features, y, measured.features, y, n_classes=len(data.classes), seed=config.seed
            )
        head_per_item = (time.perf_counter() - t) / max(1, len(y))
        timing: dict[str, float] = {
            "seconds_per_image": per_image,
            "head_seconds_per_item": head_per_item,
            "setup_seconds": setup,
        }
        batch_size, precision = config.batch_size, "fp32"
        tunes = bool(plan.epochs) and split.fine_tunes  # backbones side by side: head only
        overhead = 0.0  # what fine-tuning costs beyond its epochs
        if tunes:
            t = time.perf_counter()
            batch_size, prec, step_timing = warm_up(split, measured.acts, y, config)
            overhead += time.perf_counter() - t  # the run times its steps the same way
            timing.update(step_timing)
            precision = prec.dtype
            t = time.perf_counter()
            logits(split, measured.acts)
            timing["eval_seconds_per_item"] = (time.perf_counter() - t) / max(1, len(measured.kept))
            # after the epochs: the WiSE-FT mixes scored on validation, the test split through the tail
            overhead += timing["eval_seconds_per_item"] * ((len(WISE_ALPHAS) - 1) * n_valid + n_test)
        stages = estimate_seconds(
            timing,
            n_train=n_train,
            n_valid=n_valid,
            n_test=n_test,
            views=plan.views if tunes else 0,
            epochs=plan.epochs if tunes else 0,
            batch_size=batch_size,
            world=env.world,
        )
        labelled = (n_train + n_valid) / max(1, n_train + n_valid + n_test)
        first_model = elapsed + setup + stages["features"] * labelled + stages["head"]
        # auto caps its fine-tuning at FINETUNE_SHARE x the first model's time
        finetune = stages["finetune"]
        if plan.finetune == "auto":  # the run stops between epochs at this cap
            finetune = min(finetune, FINETUNE_SHARE * first_model)
        finetune += overhead if tunes else 0.0
        # auto decides after the head: its fine-tuning is the figure beside, not in, the plan
        planned = elapsed + stages["total"] - stages["finetune"]
        planned += 0.0 if plan.finetune == "auto" else finetune
        rows.append(
            {
                "model": name,
                "image_size": data_config.input_size,
                "seconds": round(planned, 1),
                "first_model_seconds": round(first_model, 1),
                "finetune_seconds": round(finetune, 1),
                "engine": frozen.engine,
                "precision": precision,
                "batch_size": batch_size,
            }
        )
        elapsed = 0.0  # counted once, in the first candidate's figures
    return TrainEstimate(
        sum(r["seconds"] for r in rows),
        n_train,
        n_valid,
        rows,
        finetune_seconds=sum(r["finetune_seconds"] for r in rows),
        first_model_seconds=rows[0]["first_model_seconds"] if rows else 0.0,
    )
