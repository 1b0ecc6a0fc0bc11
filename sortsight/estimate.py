"""How long will training take? A measured estimate before anything is trained.

The studio's Train page and ``sortsight train --estimate-only`` ask this before starting. It
follows the run's own plan (:func:`sortsight.training.plan.make_plan`): per candidate, the model
is built, a sample of images is decoded and passed through the frozen-feature engine the run
will use (its ONNX graph is then cached for the run), the head fit and — when the plan may
fine-tune — one training step are timed, and the times are scaled to the whole dataset.

Those times are remembered for this machine (:mod:`sortsight.training.speeds`), and every run
records its own. When every candidate has been measured here before, the estimate answers from
those figures, timing again only the decoding of a few of the new images: no model is built and
torch is not imported, so it costs about a second instead of about ten (each candidate row says
``"speeds": "remembered"`` or ``"measured"``).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sortsight.config import TrainConfig
from sortsight.progress import ProgressCallback

if TYPE_CHECKING:
    from sortsight.training.plan import Plan, RunData

__all__ = ["TrainEstimate", "estimate_training"]

_WARM = 8  # images that choose the engine and warm it up (not timed)
_SAMPLE = 48  # images timed end to end (decode + frozen pass)
_TAG_REPEAT = 4  # _tag_head_line times the tag head on the sample and on it repeated this often


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
    from sortsight.training.plan import is_multilabel, load_data, make_plan

    if is_multilabel(config):
        return _estimate_tagger(config, progress, startup_seconds)
    started = time.perf_counter()
    data = load_data(config, progress)
    # the run pays for reading the data too, and auto's fine-tuning cap counts it: the engine caps
    # fine-tuning at FINETUNE_SHARE x the time since the run started, not since the features began
    elapsed = startup_seconds + time.perf_counter() - started
    plan = make_plan(config)
    timings = _remembered(config, plan, data)
    elapsed += _import_engine(timings is None)
    if timings is None:  # measure here (the figures are remembered for the next estimate)
        timings = [_measure(name, size, config, plan, data) for name, size in plan.candidates]
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    rows = []
    for timing in timings:
        rows.append(_row(timing, config, plan, data, elapsed, world))
        elapsed = 0.0  # counted once, in the first candidate's figures
    return TrainEstimate(
        sum(r["seconds"] for r in rows),
        len(data.train_paths),
        len(data.valid_paths),
        rows,
        finetune_seconds=sum(r["finetune_seconds"] for r in rows),
        first_model_seconds=rows[0]["first_model_seconds"] if rows else 0.0,
    )


def _remembered(config: TrainConfig, plan: Plan, data: RunData) -> list[dict[str, Any]] | None:
    """Each candidate's timing from the speeds remembered on this machine, the decoding timed again
    on the new images; None when a candidate (or the engine's import time) was never measured here."""
    from sortsight.training import speeds

    needed = ["seconds_per_image", "decode_seconds_per_image", "head_seconds_per_item", "setup_seconds"]
    tuning = ["step_seconds", "eval_seconds_per_item", "warm_up_seconds"] if plan.epochs else []
    timings = []
    for name, size in plan.candidates:
        timing = _recalled(speeds.speed_key(name, size, config), needed, tuning, data.train_paths)
        if timing is None:
            return None
        timings.append({**timing, "model": name})
    return timings


def _recalled(key: str, needed: list[str], tuning: list[str], paths: list[Any]) -> dict[str, Any] | None:
    """The timing remembered under ``key`` with the frozen pass's time per image for the new
    images' decoding (timed on a few of ``paths``); None when the engine's import time or a field
    of ``needed`` (and of ``tuning``, for a model that fine-tunes) was never measured here."""
    from sortsight.training import speeds

    record = speeds.recall(key)
    if "import_seconds" not in (speeds.recall() or {}) or record is None:
        return None
    if any(k not in record for k in needed + (tuning if record.get("fine_tunes") else [])):
        return None
    decode = speeds.decode_seconds(paths, record)
    if decode is None:
        return None
    return {**record, "seconds_per_image": _per_image(record, decode), "speeds": "remembered"}


def _import_engine(measure: bool) -> float:
    """Seconds the run pays to import the engine: timed now when ``measure`` (and remembered
    when this process had not imported it yet), else as remembered on this machine."""
    from sortsight.training import speeds

    if not measure:
        return float((speeds.recall() or {}).get("import_seconds", 0.0))
    t = time.perf_counter()
    fresh = "torch" not in sys.modules
    import torch  # noqa: F401  (the run imports the engine too: its cost counts)

    from sortsight.training import run as _run  # noqa: F401

    imports = time.perf_counter() - t
    if fresh:
        speeds.remember({"import_seconds": imports}, source="estimate")
    return imports


def _per_image(record: dict[str, Any], decode: float) -> float:
    """A remembered frozen pass's time per image with the new images' decoding (``decode``
    seconds each). The pass overlaps decoding (threads) with compute on the same cores: the
    images' share of its time is their decoding spread over the cores."""
    cores = max(1, int(record.get("cores", 1)))
    compute = record["seconds_per_image"] - record["decode_seconds_per_image"] / cores
    return float(max(0.2 * record["seconds_per_image"], compute + decode / cores))


def _measure(name: str, size: int | None, config: TrainConfig, plan: Plan, data: RunData) -> dict[str, Any]:
    """One candidate's timing measured now: the model built, a sample through the frozen pass, the
    head fitted on it and, when it may fine-tune, a training step timed; remembered for next time."""
    import torch

    from sortsight.training import speeds
    from sortsight.training.head import head_seconds
    from sortsight.training.loop import logits, warm_up
    from sortsight.training.precision import set_threads
    from sortsight.training.run import build

    set_threads()  # as the run sizes them
    t0 = time.perf_counter()
    _model, data_config, split = build(name, size, config, list(data.classes))
    measured, kept, timing = _timed_sample(split, data_config, data.train_paths, t0)
    y = torch.tensor([data.train_targets[i] for i in kept])
    n_labelled = len(data.train_paths) + len(data.valid_paths)
    head = head_seconds(measured.features, y, len(data.train_paths), refit=plan.refit, seed=config.seed)
    key = speeds.speed_key(name, size, config)
    known = (speeds.recall(key) or {}).get("head_seconds_per_item")
    timing.update(
        head_seconds_per_item=head / max(1, n_labelled), precision="fp32", batch_size=config.batch_size
    )
    if plan.epochs and split.fine_tunes:  # (backbones side by side do not fine-tune)
        t = time.perf_counter()
        batch_size, prec, step_timing = warm_up(split, measured.acts, y, config, speed_key=key)
        # the run times its steps the same way, but reuses a clear precision decision made here
        # (remembered below) and times only its own two steps
        spent = time.perf_counter() - t
        timing["warm_up_seconds"] = 2 * step_timing["step_seconds"] if prec.reusable else spent
        timing.update(step_timing, precision=prec.dtype, batch_size=batch_size)
        t = time.perf_counter()
        logits(split, measured.acts)
        timing["eval_seconds_per_item"] = (time.perf_counter() - t) / max(1, len(measured.kept))
    remembered = dict(timing)
    if known is not None:  # a head time on the whole data (a run's, usually) beats this one
        timing["head_seconds_per_item"] = known
        del remembered["head_seconds_per_item"]
    speeds.remember(remembered, key, source="estimate")
    return {**timing, "model": name, "speeds": "measured"}


def _samples(n: int) -> tuple[list[int], list[int]]:
    """Which of ``n`` images warm the engine up and which are timed, both spread over the whole
    list: a dataset's paths come grouped by class, and a run of consecutive ones would hold a
    single class, so the head fit (which needs two) would go untimed and the estimate fall short.
    With fewer images than the warm-up, the same ones are timed."""
    from sortsight._sampling import spread_first

    k = min(n, _WARM + _SAMPLE)
    picked = spread_first(n, k)[:k]
    warm = picked[:: max(1, k // _WARM)][:_WARM]
    sample = [i for i in picked if i not in warm]
    return warm, sample or warm


def _timed_sample(
    split: Any, data_config: Any, paths: list[Any], t0: float
) -> tuple[Any, list[int], dict[str, Any]]:
    """The run's frozen-feature engine warmed up on images spread over ``paths`` and timed on the
    sample: its output, the indices in ``paths`` of the images it kept, and the figures every
    estimate remembers (``setup_seconds`` counted from ``t0``, before the model was built)."""
    import torch

    from sortsight.training import speeds
    from sortsight.training.frozen import FrozenPass

    frozen = FrozenPass(split, data_config, images=len(paths))  # the engine the run's job would get
    warm, sample = _samples(len(paths))
    frozen.run([paths[i] for i in warm])  # chooses the engine (exports and caches ONNX once)
    setup = time.perf_counter() - t0
    sample_paths = [paths[i] for i in sample]
    measured = frozen.run(sample_paths)
    timing: dict[str, Any] = {
        "seconds_per_image": measured.seconds / max(1, len(measured.kept)),
        "setup_seconds": setup,
        **speeds.geometry(data_config),
        "engine": frozen.engine,
        "fine_tunes": split.fine_tunes,
        "cores": torch.get_num_threads(),
    }
    timing["decode_seconds_per_image"] = speeds.decode_seconds(sample_paths, timing) or 0.0
    return measured, [sample[k] for k in measured.kept], timing


def _tag_head_line(x: Any, y: Any, n: int, seed: int) -> tuple[float, float]:
    """The tag head's fit on ``n`` images as ``(seconds on the sample, seconds per further row)``:
    timed on the sample and on its rows repeated to :data:`_TAG_REPEAT` times its size, the line
    through the two extended to ``n`` by the caller.
    Per image it would be far off: most of a fit's time does not grow with the images (measured
    on the multi-label benchmark set, 804 training images: 0.61 s on the 48-image sample, 0.91 s
    on it repeated to 192 rows, 1.82 s on all 804; per image the sample said 10.3 s, the line 2.2)."""
    import numpy as np

    from sortsight.taghead import fit_tag_head

    def timed(rows: int) -> float:
        t = time.perf_counter()
        fit_tag_head(np.resize(x, (rows, x.shape[1])), np.resize(y, (rows, y.shape[1])), seed=seed)
        return time.perf_counter() - t

    first = timed(len(x))  # as the run's one fit, it pays the first call's set-up
    if n <= len(x):
        return first, 0.0
    small, big_rows = timed(len(x)), min(n, _TAG_REPEAT * len(x))
    return first, max(0.0, (timed(big_rows) - small) / (big_rows - len(x)))


def _row(
    timing: dict[str, Any], config: TrainConfig, plan: Plan, data: RunData, elapsed: float, world: int
) -> dict[str, Any]:
    """One candidate's figures from its timing: the plan's seconds, the first model's and what
    fine-tuning may add (``elapsed``: what the run pays before this candidate's features)."""
    from sortsight.training.plan import FINETUNE_SHARE, WISE_ALPHAS, estimate_seconds

    n_train, n_valid, n_test = len(data.train_paths), len(data.valid_paths), len(data.test_paths)
    tunes = bool(plan.epochs) and bool(timing["fine_tunes"])
    stages = estimate_seconds(
        timing,
        n_train=n_train,
        n_valid=n_valid,
        n_test=n_test,
        views=plan.views if tunes else 0,
        epochs=plan.epochs if tunes else 0,
        batch_size=int(timing["batch_size"]),
        world=world,
    )
    labelled = (n_train + n_valid) / max(1, n_train + n_valid + n_test)
    first_model = elapsed + timing["setup_seconds"] + stages["features"] * labelled + stages["head"]
    finetune = stages["finetune"]
    if plan.finetune == "auto":  # the run stops between epochs at this cap
        finetune = min(finetune, FINETUNE_SHARE * first_model)
    if tunes:  # beyond the epochs: timing the step, then the WiSE-FT mixes scored on validation
        # and the test split through the tail
        finetune += timing["warm_up_seconds"]
        finetune += timing["eval_seconds_per_item"] * ((len(WISE_ALPHAS) - 1) * n_valid + n_test)
    # auto decides after the head: its fine-tuning is the figure beside, not in, the plan
    planned = elapsed + stages["total"] - stages["finetune"]
    planned += 0.0 if plan.finetune == "auto" else finetune
    return {
        "model": timing["model"],
        "image_size": timing["image_size"],
        "seconds": round(planned, 1),
        "first_model_seconds": round(first_model, 1),
        "finetune_seconds": round(finetune, 1),
        "engine": timing["engine"],
        "precision": timing["precision"],
        "batch_size": timing["batch_size"],
        "speeds": timing["speeds"],
    }


def _estimate_tagger(
    config: TrainConfig, progress: ProgressCallback | None, startup_seconds: float
) -> TrainEstimate:
    """A multi-label run's estimate: its frozen pass timed on a sample, the tag head's time along
    two timed sizes, both scaled to the training and validation images; fine-tuning from a training
    step of the tail timed on the sample (counted in ``seconds`` for ``strategy: finetune``; for
    ``auto``, which fine-tunes a tagger only within a time budget, only in ``finetune_seconds``,
    capped by what the budget leaves). Those times are remembered for this machine, and a later
    estimate answers from them as the single-label one does (the new images' decoding timed)."""
    from sortsight.training import plan as _plan
    from sortsight.training import speeds

    started = time.perf_counter()
    ds = _plan.load_tag_data(config, progress)
    train_items, valid_items = ds.by_split("train"), ds.by_split("validation")
    elapsed = startup_seconds + time.perf_counter() - started
    plan = _plan.make_plan(config)
    key = speeds.speed_key(config.model, None, config) + "|tags"
    needed = ["seconds_per_image", "decode_seconds_per_image", "setup_seconds", "head_first_seconds"]
    timing = _recalled(key, needed, ["step_seconds"] if plan.epochs else [], [it.path for it in train_items])
    elapsed += _import_engine(timing is None)
    if timing is None:
        timing = _tag_measure(config, plan, ds, train_items)
        speeds.remember({k: v for k, v in timing.items() if k != "speeds"}, key, source="estimate")
    n_train, n_valid = len(train_items), len(valid_items)
    head = timing.get("head_first_seconds", 0.0) + timing.get("head_seconds_per_row", 0.0) * max(
        0, n_train - int(timing.get("head_rows", 0))
    )
    per_image = timing["seconds_per_image"]
    first = elapsed + timing["setup_seconds"] + per_image * (n_train + n_valid) + head
    finetune = 0.0
    if "step_seconds" in timing:
        finetune = _plan.estimate_seconds(
            timing,
            n_train=n_train,
            n_valid=n_valid,
            n_test=0,
            views=0,
            epochs=plan.epochs,
            batch_size=int(timing["batch_size"]),
            world=1,
        )["finetune"]
        if plan.finetune == "auto":  # a tagger's auto fine-tunes only within a time budget
            finetune = min(finetune, max(0.0, (config.time_budget or 0.0) - first))
    seconds = first + (finetune if plan.finetune == "yes" else 0.0)
    row = {
        "model": config.model,
        "image_size": timing["image_size"],
        "seconds": round(seconds, 1),
        "first_model_seconds": round(first, 1),
        "finetune_seconds": round(finetune, 1),
        "engine": timing["engine"],
        "precision": timing.get("precision", "fp32"),
        "batch_size": timing.get("batch_size", config.batch_size),
        "speeds": timing["speeds"],
    }
    return TrainEstimate(
        seconds, n_train, n_valid, [row], finetune_seconds=finetune, first_model_seconds=first
    )


def _tag_measure(config: TrainConfig, plan: Plan, ds: Any, train_items: list[Any]) -> dict[str, Any]:
    """The tagger's timing measured now: the model built, a sample through the frozen pass, the
    tag head timed at two sizes and, when the plan may fine-tune, a training step timed."""
    import numpy as np
    import torch

    from sortsight.models import create_model
    from sortsight.training.run import split_for

    t0 = time.perf_counter()
    model, data_config = create_model(config.model, list(ds.tags), input_size=config.image_size)
    split = split_for(model, config.model, data_config)
    measured, kept, timing = _timed_sample(split, data_config, [it.path for it in train_items], t0)
    y = ds.matrix([train_items[i] for i in kept])
    timing["speeds"] = "measured"
    if len(y) >= 6 and (y.any(0) & ~y.all(0)).all():  # every tag present and absent: a head fits
        first, per_row = _tag_head_line(
            np.asarray(measured.features.numpy()), y, len(train_items), config.seed
        )
        timing.update(head_first_seconds=first, head_seconds_per_row=per_row, head_rows=len(y))
    if plan.epochs and len(y) >= 2 and split.fine_tunes:
        from sortsight.training.loop import warm_up
        from sortsight.training.tags import tag_objective

        yt = torch.from_numpy(np.asarray(y, dtype=np.float32))
        batch_size, chosen, step_timing = warm_up(split, measured.acts, yt, config, tag_objective())
        timing.update(step_timing, precision=chosen.dtype, batch_size=batch_size)
    return timing
