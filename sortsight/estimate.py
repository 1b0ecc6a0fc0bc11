"""How long will training take? A measured estimate before anything is trained.

The studio's Train page and ``sortsight train --estimate-only`` ask this before starting: the data
is checked, a few images are decoded, and the trunk and one training step of each candidate are
timed on them (the same warm-up training itself does), then scaled to the whole dataset.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sortsight.config import TrainConfig
from sortsight.progress import ProgressCallback

__all__ = ["TrainEstimate", "estimate_training"]

_SAMPLE = 16  # images decoded and timed per input size


@dataclass(frozen=True)
class TrainEstimate:
    """The estimated wall time of a training run, in total and per candidate."""

    seconds: float
    n_train: int
    n_valid: int
    candidates: list[dict[str, Any]] = field(default_factory=list)

    @property
    def human(self) -> str:
        """``"about 6 min"``."""
        from sortsight._runs import human

        return f"about {human(self.seconds)}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 1),
            "human": self.human,
            "n_train": self.n_train,
            "n_valid": self.n_valid,
            "candidates": self.candidates,
        }


def estimate_training(config: TrainConfig, *, progress: ProgressCallback | None = None) -> TrainEstimate:
    """Estimate how long :func:`sortsight.train` would take with ``config``, without training.

    Args:
        config: the training options; ``data_path`` is required.
        progress: receives the data check's progress events.

    Returns:
        A :class:`TrainEstimate` (decode + features + fine-tuning, summed over candidates).

    Raises:
        DataError, ModelError, ConfigError: as :func:`sortsight.train` would.

    Example:
        >>> estimate_training(TrainConfig(data_path="photos/")).human  # doctest: +SKIP
        'about 3 min'
    """
    import torch

    from sortsight import _runs
    from sortsight._imagecache import build_cache, geometry
    from sortsight._tail import split_model
    from sortsight.models import create_model
    from sortsight.train import AUG_VIEWS, _warm_up

    env = _runs.setup_environment()
    data = _runs.load_data(config, progress)
    n_train, n_valid = len(data.train_paths), len(data.valid_paths)
    views = 0 if config.augmentation == "none" or config.strategy == "head" else AUG_VIEWS
    epochs = config.epochs if config.strategy != "head" else 0
    rows: list[dict[str, Any]] = []
    for name, size in _runs.candidate_specs(config):
        model, data_config = create_model(name, list(data.classes), input_size=size or config.image_size)
        side = data_config.input_size
        split = split_model(model, tuple(data_config.mean), tuple(data_config.std))
        sample = data.train_paths[: max(_SAMPLE, config.batch_size)]
        start = time.perf_counter()
        cache = build_cache(
            sample, side, **geometry(data_config), views=views, preset=config.augmentation, seed=config.seed
        )
        decode_per_image = (time.perf_counter() - start) / max(1, len(sample))
        y = torch.tensor([data.train_targets[i] for i in cache.kept])
        batch_size, precision, timing = _warm_up(split, cache, y, config)
        seconds = decode_per_image * (n_train + n_valid) + _runs.estimate_seconds(
            timing,
            n_train=n_train,
            n_valid=n_valid,
            views=1 + views,
            epochs=epochs,
            batch_size=batch_size,
            world=env.world,
        )
        rows.append(
            {
                "model": name,
                "image_size": side,
                "seconds": round(seconds, 1),
                "precision": precision.dtype,
                "batch_size": batch_size,
            }
        )
    return TrainEstimate(sum(r["seconds"] for r in rows), n_train, n_valid, rows)
