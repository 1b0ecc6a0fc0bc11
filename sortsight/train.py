"""``sortsight.train(config)``: the public front door of the training engine (:mod:`sortsight.training`)."""

from __future__ import annotations

from sortsight._callable import make_module_callable
from sortsight.config import TrainConfig
from sortsight.progress import ProgressCallback
from sortsight.training.run import CandidateResult, TrainResult, train_classifier

__all__ = ["CandidateResult", "TrainResult", "train"]


def train(config: TrainConfig, *, progress: ProgressCallback | None = None) -> TrainResult:
    """Train a classifier (or, for data with several tags per image, a tagger) as ``config`` says
    and write the run folder.

    Args:
        config: the training options (AutoTrain names); ``config.data_path`` is required.
        progress: called with :class:`ProgressEvent` (phase, step, total, metrics, eta, message);
            the same events are appended to ``RUN/events.jsonl``.

    Returns:
        A :class:`TrainResult`; ``result.model_dir`` loads with ``transformers.pipeline``.

    Raises:
        ConfigError, DataError, ModelError, TrainError: one-line messages saying what to do.

    Example:
        >>> result = train(TrainConfig(data_path="photos/", out="runs/photos"))  # doctest: +SKIP
        >>> result.metrics["accuracy"]  # doctest: +SKIP
        0.94
    """
    from sortsight.multilabel import is_multilabel, train_multilabel

    if is_multilabel(config):  # several tags per image: sigmoid outputs, per-tag thresholds
        return train_multilabel(config, progress=progress)
    return train_classifier(config, progress=progress)


make_module_callable(__name__, train)  # sortsight.train(...) works in every import order
