"""What a run will do, decided once from the config and the data: shared by ``train`` and the estimate.

:func:`make_plan` resolves the candidates (model aliases included), whether fine-tuning may run,
how many augmented views it uses and how many epochs; :func:`load_data` splits the data
(:func:`load_tag_data` a tagger's); :func:`estimate_seconds` turns measured per-image and
per-step times into a wall-time estimate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sortsight.config import TrainConfig
from sortsight.errors import ConfigError, DataError
from sortsight.progress import ProgressCallback

if TYPE_CHECKING:
    import torch

    from sortsight.tagdata import TagDataset

__all__ = [
    "DEFAULT_CANDIDATES",
    "Plan",
    "RunData",
    "candidate_specs",
    "dataset_args",
    "estimate_seconds",
    "is_multilabel",
    "load_data",
    "load_tag_data",
    "make_plan",
]

# what --candidates K tries, in order: cheap first
DEFAULT_CANDIDATES: tuple[tuple[str, int | None], ...] = (
    ("efficientnet_lite0", None),
    ("efficientnet_lite1", None),
    ("efficientnet_lite2", None),
    ("efficientnet_lite0", 160),
    ("efficientnet_lite0+efficientnet_lite2", None),  # side by side: both feature passes
)
MIN_TRAIN_PER_CLASS = 2
AUG_VIEWS = 1  # augmented views per training image for fine-tuning (plus the eval view)
MIN_FINETUNE_EPOCHS = 2  # auto fine-tunes only when at least this many epochs fit
# fine-tuning stops after this many epochs that do not beat the head on validation. 2 until
# 8 December: on the shift benchmark (3 seeds) that stopped every digits run after 2 epochs and
# lost 1.7-2.3 points there (epochs 3-4 beat the head); it changed no accuracy on fashion or scanner
NO_GAIN_EPOCHS = 4
ROOM_ERRORS = 3  # auto fine-tunes only when the head makes at least this many validation errors
WISE_ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)  # mixing weights tried: 0 is the head, 1 the fine-tuned model
# without a time budget, auto's fine-tuning may take this many times the first model's time
# (its epochs are capped to fit). Measured on the four benchmark sets (docs/training.md, 6 December):
# 4 keeps the whole run within 0.34-1.29x the probe's time; 2 held it to 0.48-0.80x but, once
# the head fit got 4-5x faster, left too little time to fine-tune on scanner (-0.2 points
# against the probe, +2.3 with 4) and digits (+1.5, +2.1 with 4)
FINETUNE_SHARE = 4.0


@dataclass(frozen=True)
class Plan:
    """The decisions a run starts from.

    Attributes:
        candidates: ``(model, input size or None)``, aliases resolved, duplicates dropped.
        finetune: ``"no"`` (head only), ``"auto"`` (after the head, where the rule says it pays:
            see :func:`worth_finetuning`) or ``"yes"``.
        views: augmented views per training image, made only when fine-tuning runs.
        epochs: at most this many fine-tuning epochs.
        refit: fit the final head again on train + validation.
    """

    candidates: tuple[tuple[str, int | None], ...]
    finetune: str
    views: int
    epochs: int
    refit: bool


def candidate_specs(config: TrainConfig) -> list[tuple[str, int | None]]:
    """``(model, input size or None)`` for each candidate: ``models`` (``name`` or ``name@size``),
    else the first ``candidates`` of :data:`DEFAULT_CANDIDATES` (starting with ``config.model``).
    Aliases (``lite0``) are resolved first, so a model is never trained twice under two names."""
    from sortsight.models import resolve_model_name

    if config.models:
        specs = []
        for text in config.models:
            name, _, size = text.partition("@")
            if size and not size.isdigit():
                raise ConfigError(
                    f"Candidate '{text}' is not 'model' or 'model@size' (e.g. efficientnet_lite0@160)."
                )
            specs.append((resolve_model_name(name), int(size) if size else config.image_size))
        return list(dict.fromkeys(specs))
    first = (resolve_model_name(config.model), config.image_size)
    if config.candidates == 1:
        return [first]
    pool = [first] + [c for c in DEFAULT_CANDIDATES if c != (first[0], None) and c != first]
    return pool[: config.candidates]


def make_plan(config: TrainConfig) -> Plan:
    """The run's decisions from ``config`` alone (no data read, no model built)."""
    finetune = {"head": "no", "finetune": "yes"}.get(config.strategy, "auto")
    if not config.pretrained:
        if finetune == "no":
            raise ConfigError(
                "strategy 'head' with pretrained: false would fit a head on untrained features only. "
                "Use strategy auto or finetune to train the network from random weights."
            )
        finetune = "yes"  # random weights: the network itself must learn
    from sortsight.models import is_side_by_side

    specs = candidate_specs(config)
    pairs = [name for name, _ in specs if is_side_by_side(name)]
    if pairs and (finetune == "yes"):
        raise ConfigError(
            f"'{pairs[0]}' puts backbones side by side; sortsight fits only their head (no "
            f"fine-tuning{', no random weights' if not config.pretrained else ''}). "
            f"Use strategy auto or head with it, or one backbone."
        )
    views = 0 if config.augmentation == "none" or finetune == "no" else AUG_VIEWS
    return Plan(
        tuple(specs),
        finetune,
        views,
        0 if finetune == "no" else config.epochs,
        bool(getattr(config, "refit", True)),
    )


def worth_finetuning(
    plan: Plan,
    head_metrics: dict[str, float],
    n_valid: int,
    *,
    epoch_seconds: float = 0.0,
    fixed_seconds: float = 0.0,
    spent: float = 0.0,
    time_left: float | None = None,
) -> tuple[bool, str, int]:
    """After the head: fine-tune or not, and for how many epochs, decided in seconds from
    validation and measured speed.

    ``auto`` fine-tunes only when both hold:

    - the head leaves room: at least :data:`ROOM_ERRORS` validation errors (with fewer, no epoch
      can show a gain beyond one image's luck);
    - it is affordable here: at least :data:`MIN_FINETUNE_EPOCHS` epochs (``epoch_seconds`` each, from
      a timed training step, after ``fixed_seconds`` for the augmented views) fit in the time
      budget left, or without one, in :data:`FINETUNE_SHARE` times the time the first model took
      (``spent``). The epochs are capped to what fits, so the whole run stays within a small
      multiple of the head's time and the learning-rate schedule still runs its whole course.

    ``finetune`` (``plan.finetune == "yes"``) runs ``plan.epochs`` whatever they cost (the time
    budget still stops it).

    Returns:
        ``(go, reason, epochs)``; the reason is what ``stopped`` records when it does not go.
    """
    if plan.finetune == "no" or not plan.epochs:
        return False, "head_only", 0
    if plan.finetune == "yes":
        return True, "", plan.epochs
    errors = round((1.0 - head_metrics["accuracy"]) * n_valid)
    if errors < ROOM_ERRORS:
        return False, "head_good_enough", 0
    if epoch_seconds <= 0:  # not measured yet: the room alone says go
        return True, "", plan.epochs
    allowed = time_left if time_left is not None else FINETUNE_SHARE * spent
    epochs = min(plan.epochs, int(max(0.0, allowed - fixed_seconds) // epoch_seconds))
    if epochs < MIN_FINETUNE_EPOCHS:
        return False, "time_budget" if time_left is not None else "finetune_too_slow", 0
    return True, "", epochs


@dataclass
class RunData:
    """The split dataset as training needs it."""

    dataset: Any  # sortsight.data.ImageDataset
    classes: tuple[str, ...]
    train_paths: list[Path]
    train_targets: list[int]
    valid_paths: list[Path]
    valid_targets: list[int]
    test_paths: list[Path]
    test_targets: list[int]


def dataset_args(config: TrainConfig) -> dict[str, Any]:
    """What ``load_dataset`` / ``load_tag_dataset`` take from the config (split, sampling, columns;
    the column defaults mean "detect")."""
    return {
        "valid_split": config.valid_fraction,
        "test_split": config.test_split,
        "seed": config.seed,
        "max_samples": config.max_samples,
        "image_column": None if config.image_column == "image" else config.image_column,
        "target_column": None if config.target_column == "target" else config.target_column,
    }


def is_multilabel(config: TrainConfig) -> bool:
    """Whether ``config`` trains a multi-label model: ``task`` says so, or ``auto`` and the data
    evidently has several tags per image (:func:`sortsight.tagdata.detect_task`)."""
    if config.task != "auto":
        return config.task == "multi_label"
    if config.resume:
        import json

        stored = config.run_dir / "sortsight.json"
        if stored.is_file():
            return json.loads(stored.read_text(encoding="utf-8")).get("task") == "multi_label"
    if not config.data_path:
        return False
    from sortsight.tagdata import detect_task

    target = None if config.target_column == "target" else config.target_column
    return (
        detect_task(config.data_path, target_column=target, separator=config.tag_separator) == "multi_label"
    )


def load_tag_data(config: TrainConfig, progress: ProgressCallback | None) -> TagDataset:
    """A multi-label run's images and tags, split as ``config`` says (train, estimate, lr-find)."""
    from sortsight.tagdata import load_tag_dataset

    return load_tag_dataset(
        str(config.data_path), **dataset_args(config), separator=config.tag_separator, progress=progress
    )


def load_data(config: TrainConfig, progress: ProgressCallback | None) -> RunData:
    from sortsight.data import load_dataset

    ds = load_dataset(str(config.data_path), **dataset_args(config), progress=progress)
    if len(ds.classes) < 2:
        raise DataError(
            f"Found only one class ('{ds.classes[0] if ds.classes else ''}') in '{config.data_path}'. "
            f"A classifier needs at least two: add a folder of images per class."
        )
    index = {c: i for i, c in enumerate(ds.classes)}
    train, valid = ds.by_split("train"), ds.by_split("validation")
    test = [i for i in ds.by_split("test") if i.label in index]
    if not valid:
        raise DataError(
            f"'{config.data_path}' has no validation images. Set valid_split (e.g. 0.2) or add a "
            f"validation/ folder."
        )
    return RunData(
        ds,
        tuple(ds.classes),
        [i.path for i in train],
        [index[i.label] for i in train],
        [i.path for i in valid],
        [index[i.label] for i in valid],
        [i.path for i in test],
        [index[i.label] for i in test],
    )


def check_trainable(classes: Sequence[str], y_train: torch.Tensor, y_valid: torch.Tensor) -> None:
    import torch

    counts = torch.bincount(y_train, minlength=len(classes))
    small = [f"'{classes[i]}' ({int(n)})" for i, n in enumerate(counts) if n < MIN_TRAIN_PER_CLASS]
    if small:
        raise DataError(
            f"Too few training images for class {', '.join(small[:5])}: each class needs at least "
            f"{MIN_TRAIN_PER_CLASS} after the validation split. Add images or lower valid_split."
        )
    if len(y_valid) == 0:
        raise DataError("No readable validation images. Add images or raise valid_split.")


def estimate_seconds(
    timing: dict[str, float],
    *,
    n_train: int,
    n_valid: int,
    n_test: int,
    views: int,
    epochs: int,
    batch_size: int,
    world: int,
) -> dict[str, float]:
    """Seconds per stage from measured times: ``features`` (decode + frozen pass of every image,
    ``seconds_per_image`` measured end to end on a sample), ``head`` (the logistic-regression fits,
    ``head_seconds_per_item`` measured), ``finetune`` (augmented views' pass, ``epochs`` of
    ``step_seconds`` steps, validation) and ``total``. Fine-tuning epochs are the maximum; the
    no-gain rule usually stops earlier."""
    per_image = timing["seconds_per_image"]
    features = per_image * (n_train + n_valid + n_test)
    head = timing.get("head_seconds_per_item", 0.0) * (n_train + n_valid)
    finetune = 0.0
    if epochs:
        steps = epochs * math.ceil(math.ceil(n_train / world) / batch_size)
        finetune = (
            per_image * n_train * views
            + steps * timing["step_seconds"]
            + epochs * n_valid * timing.get("eval_seconds_per_item", 0.0)
        )
    return {
        "features": features,
        "head": head,
        "finetune": finetune,
        "total": features + head + finetune + timing.get("setup_seconds", 0.0),
    }


def human(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 3600:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"
