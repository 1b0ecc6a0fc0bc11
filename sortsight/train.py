"""Training: the one place where an epoch happens.

``train(TrainConfig(data_path="photos/"))`` turns a folder of labelled images into a run folder
(``model/`` loads in ``transformers.pipeline``). The default engine, chosen by measurement on a
2-core CPU (see docs/training.md):

1. **cache**: decode every image once into uint8 tensors at the model's input size — the eval
   view plus a few augmented views (``_imagecache``).
2. **features**: run the frozen *trunk* (early blocks) once per view, keep its activations, and
   pool them through the (still pretrained) *tail* into features (``_tail``).
3. **head**: fit a logistic regression on the 224-px features (seconds) and copy it into the
   classifier. This is the floor: the result never scores below it on validation.
4. **fine-tune**: fastai-style — from that head, train only the tail (last stages + head) from the
   cached activations, with lower learning rates for earlier layers, warm-up then cosine,
   validation every epoch, early stopping, best weights kept, checkpoint every epoch.
5. **keep the better** of head-only and fine-tuned on validation; save ``model/`` + model card.

Several processes (``torchrun --nproc_per_node N``) run the same loop: ``accelerate`` sets up the
process group, each process takes its shard of every epoch, and DDP averages the gradients.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from sortsight import _runs
from sortsight._callable import make_module_callable
from sortsight._checkpoint import load_latest_checkpoint, restore_optimizer, save_checkpoint
from sortsight._imagecache import ImageCache, build_cache, geometry
from sortsight._precision import Precision, autocast, choose_precision
from sortsight._tail import Split, split_model
from sortsight.config import TrainConfig
from sortsight.errors import ModelError, TrainError
from sortsight.progress import ProgressCallback, ProgressEvent, Ticker, emit

__all__ = ["CandidateResult", "TrainResult", "train"]

log = logging.getLogger(__name__)

AUG_VIEWS = 2  # augmented views per training image (plus the eval view); 0 with augmentation "none"
INFER_BATCH = 32


@dataclass
class CandidateResult:
    """One trained model of a run (a run with ``--candidates`` has several)."""

    model: str
    image_size: int
    chosen: str  # "head" (logistic regression on frozen features) or "finetune"
    metrics: dict[str, float]  # validation metrics of the kept model
    head_metrics: dict[str, float]
    model_dir: Path
    epochs: int = 0
    steps: int = 0
    stopped: str = "completed"  # completed | early_stopping | time_budget | head_only
    seconds: float = 0.0
    engine: dict[str, Any] = field(default_factory=dict)

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
        return self.best.metrics

    @property
    def leaderboard(self) -> list[dict[str, Any]]:
        rows = sorted((c.row() for c in self.candidates), key=lambda r: _rank_key(r), reverse=True)
        return [{"rank": i + 1, **r} for i, r in enumerate(rows)]


def _rank_key(row: dict[str, Any]) -> tuple[float, float]:
    return (row.get("val_accuracy") or 0.0, -(row.get("val_loss") or 0.0))


def train(config: TrainConfig, *, progress: ProgressCallback | None = None) -> TrainResult:
    """Train a classifier as ``config`` says and write the run folder.

    Args:
        config: the training options (AutoTrain names); ``config.data_path`` is required.
        progress: called with :class:`ProgressEvent` (phase, step, total, metrics, eta, message).

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
    start = time.perf_counter()
    env = _runs.setup_environment()
    config = _runs.prepare_run_dir(config, env)
    data = _runs.load_data(config, progress)
    specs = _runs.candidate_specs(config)
    deadline = start + config.time_budget if config.time_budget else None
    run_dir = config.run_dir
    info = _runs.run_info(config, data, env)
    if env.is_main:
        _runs.write_run_json(run_dir, {**info, "status": "running"})
    caches: dict[int, tuple[ImageCache, ImageCache]] = {}
    results: list[CandidateResult] = []
    for i, (name, size) in enumerate(specs):
        out = run_dir if len(specs) == 1 else run_dir / "candidates" / _runs.slug(name, size)
        finished = _runs.finished_candidate(out) if config.resume else None
        if finished is not None:
            results.append(CandidateResult(**finished))
            continue
        # each candidate gets an equal share of what is left of the time budget
        share = (
            None
            if deadline is None
            else time.perf_counter() + (deadline - time.perf_counter()) / (len(specs) - i)
        )
        results.append(_train_candidate(name, size, config, data, caches, out, env, progress, share))
    best = max(results, key=lambda c: _rank_key(c.row()))
    model_dir = run_dir / "model"
    if env.is_main:
        if len(specs) > 1:
            _runs.copy_model(best.model_dir, model_dir)
            _runs.write_leaderboard(run_dir, [c.row() for c in results])
        seconds = time.perf_counter() - start
        _runs.write_run_json(
            run_dir,
            {
                **info,
                "status": "done",
                "seconds": round(seconds, 1),
                "best": best.row(),
                "metrics": best.metrics,
                "candidates": [c.row() for c in results],
                "engine": best.engine,
            },
        )
    env.wait()
    result = TrainResult(run_dir, model_dir, best, results, time.perf_counter() - start)
    emit(
        progress,
        ProgressEvent(
            "done", 1, 1, dict(best.metrics), 0.0, f"Kept {best.model} ({best.chosen}) in {model_dir}"
        ),
    )
    return result


def _train_candidate(
    name: str,
    size: int | None,
    config: TrainConfig,
    data: _runs.RunData,
    caches: dict[int, tuple[ImageCache, ImageCache]],
    out: Path,
    env: _runs.Environment,
    progress: ProgressCallback | None,
    deadline: float | None,
) -> CandidateResult:
    """Cache → features → logistic-regression head → fine-tune the tail → keep the better → save."""
    from sortsight.models import create_model

    t0 = time.perf_counter()
    model, data_config = create_model(name, list(data.classes), input_size=size or config.image_size)
    side = data_config.input_size
    try:
        split = split_model(model, tuple(data_config.mean), tuple(data_config.std))
    except TypeError as exc:
        raise ModelError(
            f"Model '{name}' cannot be fine-tuned by sortsight ({exc}); use a bundled model "
            f"(efficientnet_lite0/1/2), a timm model name or an HF image-classification model."
        ) from exc

    # 1. cache: decode once (shared by candidates of the same input size)
    if side not in caches:
        views = 0 if config.augmentation == "none" or config.strategy == "head" else AUG_VIEWS
        caches[side] = (
            build_cache(
                data.train_paths,
                side,
                **geometry(data_config),
                views=views,
                preset=config.augmentation,
                seed=config.seed,
                progress=progress,
            ),
            build_cache(data.valid_paths, side, **geometry(data_config), progress=progress),
        )
    train_cache, valid_cache = caches[side]
    y_train = torch.tensor([data.train_targets[i] for i in train_cache.kept])
    y_valid = torch.tensor([data.valid_targets[i] for i in valid_cache.kept])
    _runs.check_trainable(data.classes, y_train, y_valid)

    # 2. warm-up: pick precision and batch size by measurement, estimate the time
    batch_size, precision, timing = _warm_up(split, train_cache, y_train, config)
    n_views = 1 + train_cache.views.shape[0]
    epochs = config.epochs if config.strategy != "head" else 0
    estimate = _runs.estimate_seconds(
        timing,
        n_train=len(y_train),
        n_valid=len(y_valid),
        views=n_views,
        epochs=epochs,
        batch_size=batch_size,
        world=env.world,
    )
    emit(
        progress,
        ProgressEvent(
            "estimate",
            0,
            0,
            {"seconds": estimate},
            estimate,
            f"{name} at {side}px: estimated about {_runs.human(estimate)} "
            f"({precision.dtype}, {torch.get_num_threads()} threads)",
        ),
    )

    if deadline is not None and time.perf_counter() + estimate > deadline:
        left = max(0.0, deadline - time.perf_counter())
        emit(
            progress,
            ProgressEvent(
                "estimate",
                0,
                0,
                message=(
                    f"That is more than the {_runs.human(left)} left of the time budget: "
                    "fine-tuning will stop early with the best model so far."
                ),
            ),
        )

    # 3. features: frozen trunk once per view; pooled features through the pretrained tail
    store = torch.bfloat16 if precision.dtype == "bf16" else torch.float16
    ticker = Ticker(progress, "features", total=len(y_train) * n_views + len(y_valid))
    acts_train = [_trunk(split, train_cache.eval, precision, store, ticker)]
    acts_valid = _trunk(split, valid_cache.eval, precision, store, ticker)
    f_train = _pooled(split, acts_train[0], precision)
    f_valid = _pooled(split, acts_valid, precision)

    # 4. head: logistic regression on frozen features, copied into the classifier
    head_metrics = _runs.fit_head(split.classifier, f_train, y_train, f_valid, y_valid, seed=config.seed)
    logits = _logits(split, acts_valid, precision)
    head_metrics = _metrics(logits, y_valid)  # as the network computes it (what predict will see)
    _runs.append_metrics(
        out,
        env,
        {
            "candidate": name,
            "phase": "head",
            "epoch": 0,
            "step": 0,
            **{f"val_{k}": v for k, v in head_metrics.items()},
        },
    )
    emit(
        progress,
        ProgressEvent(
            "head",
            1,
            1,
            dict(head_metrics),
            0.0,
            f"Logistic-regression head: validation accuracy {head_metrics['accuracy']:.3f}",
        ),
    )

    # 5. fine-tune the tail (or stop at the head). The augmented views' trunk activations are
    # computed only now, so the head — often already the kept model — is ready as early as possible.
    chosen, metrics, epochs_run, steps, stopped = "head", head_metrics, 0, 0, "head_only"
    if epochs:
        for view in train_cache.views:  # skipped when the time budget is spent
            if deadline is not None and time.perf_counter() > deadline:
                break
            acts_train.append(_trunk(split, view, precision, store, ticker))
        chosen, metrics, epochs_run, steps, stopped = _finetune(
            split,
            acts_train,
            y_train,
            acts_valid,
            y_valid,
            head_metrics,
            config=replace(config, batch_size=batch_size),
            precision=precision,
            out=out,
            env=env,
            name=name,
            progress=progress,
            deadline=deadline,
        )

    # 6. save the kept model (the tail now holds the best weights) and its card
    model_dir = out / "model"
    engine = {
        "precision": precision.dtype,
        "precision_reason": precision.reason,
        "split": split.kind,
        "threads": torch.get_num_threads(),
        "cpu": env.cpu,
        "batch_size": batch_size,
        "processes": env.world,
        "estimate_seconds": round(estimate, 1),
        **timing,
    }
    result = CandidateResult(
        name,
        side,
        chosen,
        metrics,
        head_metrics,
        model_dir,
        epochs_run,
        steps,
        stopped,
        time.perf_counter() - t0,
        engine,
    )
    if env.is_main:
        emit(progress, ProgressEvent("save", 0, 1, message=f"Saving {model_dir}"))
        _runs.save_model(model, data_config, data, config, result)
        _runs.mark_finished(out, result)
    env.wait()
    return result


def _finetune(
    split: Split,
    acts_train: list[torch.Tensor],
    y_train: torch.Tensor,
    acts_valid: torch.Tensor,
    y_valid: torch.Tensor,
    head_metrics: dict[str, float],
    *,
    config: TrainConfig,
    precision: Precision,
    out: Path,
    env: _runs.Environment,
    name: str,
    progress: ProgressCallback | None,
    deadline: float | None,
) -> tuple[str, dict[str, float], int, int, str]:
    """The epoch loop. Returns (chosen, metrics, epochs, optimizer steps, why it stopped)."""
    tail = split.tail
    groups = tail.param_groups()  # early → late layers
    # discriminative learning rates: lr/10 for the earliest trained layer up to lr for the head
    lrs = [config.lr * 0.1 ** ((len(groups) - 1 - i) / max(1, len(groups) - 1)) for i in range(len(groups))]
    optimizer = _runs.make_optimizer(config, groups, lrs)
    model = env.wrap(tail)  # DDP when several processes, else the tail itself

    n = len(y_train)
    per_rank = math.ceil(n / env.world)
    micro_per_epoch = math.ceil(per_rank / config.batch_size)
    steps_per_epoch = math.ceil(micro_per_epoch / config.gradient_accumulation)
    total_steps = config.epochs * steps_per_epoch

    best_state = _runs.state_copy(tail)  # starts as the logistic-regression head: the floor
    best, bad_epochs, first_epoch, step, chosen = dict(head_metrics), 0, 0, 0, "head"
    ckpt = load_latest_checkpoint(out / "checkpoints") if config.resume else None
    if ckpt is not None:
        model_state, best_state, opt_tensors, state = ckpt
        tail.load_state_dict(model_state)
        restore_optimizer(optimizer, opt_tensors, state["optimizer_groups"])
        best, bad_epochs, chosen = state["best"], state["bad_epochs"], state["chosen"]
        first_epoch, step = state["epoch"], state["step"]
        emit(
            progress, ProgressEvent("train", step, total_steps, message=f"Resumed after epoch {first_epoch}")
        )

    ticker = Ticker(progress, "train", total=total_steps)
    ticker.step = step
    stopped, epochs_done = "completed", first_epoch
    if config.early_stopping_patience and bad_epochs >= config.early_stopping_patience:
        stopped = "early_stopping"  # killed after that decision, before the model was saved
    last_epoch = config.epochs if stopped == "completed" else first_epoch
    for epoch in range(first_epoch, last_epoch):
        # the same shuffle and views on every process and after a resume: seeded by epoch
        gen = torch.Generator().manual_seed(config.seed * 1000 + epoch)
        order = torch.randperm(n, generator=gen)
        view_of = torch.randint(0, len(acts_train), (n,), generator=gen)
        order = torch.cat([order, order[: per_rank * env.world - n]])[env.rank :: env.world]  # (per_rank,)
        _train_mode(model)
        losses = []
        for micro in range(micro_per_epoch):
            idx = order[micro * config.batch_size : (micro + 1) * config.batch_size]
            x = _gather(acts_train, idx, view_of[idx])  # (B, C, h, w)
            with autocast(precision.dtype):
                loss = F.cross_entropy(model(x).float(), y_train[idx])
            (loss / config.gradient_accumulation).backward()
            losses.append(loss.item())
            if (micro + 1) % config.gradient_accumulation == 0 or micro + 1 == micro_per_epoch:
                factor = _runs.lr_factor(step, total_steps, config.warmup_ratio, config.scheduler)
                for group, base in zip(optimizer.param_groups, lrs, strict=True):
                    group["lr"] = base * factor
                if config.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(tail.parameters(), config.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                ticker.advance(loss=float(np.mean(losses[-10:])), epoch=epoch + 1)
            if deadline is not None and env.agree(time.perf_counter() > deadline):
                stopped = "time_budget"
                break
        env.sync_buffers(tail)  # BatchNorm statistics as rank 0 has them, so all ranks agree
        epochs_done = epoch + 1

        # validate every epoch; keep the best weights (ties: lower loss wins)
        metrics = _metrics(_logits(split, acts_valid, precision), y_valid)
        improved = metrics["accuracy"] > best["accuracy"] + config.early_stopping_threshold or (
            metrics["accuracy"] >= best["accuracy"] and metrics["loss"] < best["loss"]
        )
        if improved:
            best, best_state, bad_epochs, chosen = dict(metrics), _runs.state_copy(tail), 0, "finetune"
        else:
            bad_epochs += 1
        record = {
            "candidate": name,
            "phase": "epoch",
            "epoch": epoch + 1,
            "step": step,
            "train_loss": float(np.mean(losses)) if losses else None,
            "lr": optimizer.param_groups[-1]["lr"],
            **{f"val_{k}": v for k, v in metrics.items()},
        }
        _runs.append_metrics(out, env, record)
        emit(progress, ProgressEvent("validate", epoch + 1, config.epochs, record))
        if stopped == "time_budget":
            break
        if env.is_main:
            save_checkpoint(
                out / "checkpoints",
                epoch + 1,
                model_state=tail.state_dict(),
                best_state=best_state,
                optimizer=optimizer,
                keep=config.save_total_limit,
                state={"step": step, "best": best, "bad_epochs": bad_epochs, "chosen": chosen},
            )
        env.wait()
        if config.early_stopping_patience and bad_epochs >= config.early_stopping_patience:
            stopped = "early_stopping"
            break
    tail.load_state_dict(best_state)
    return chosen, best, epochs_done, step, stopped


def _train_mode(model: torch.nn.Module) -> None:
    """Train mode, but BatchNorm keeps its pretrained running statistics (and learns only its
    affine weights): with small CPU batches, batch statistics are noisy, and they would not match
    the eval-mode features the logistic-regression head was fitted on (measured: the first
    epoch's loss jumped from ~0 to ~12 with train-mode BatchNorm)."""
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()


def _gather(acts: list[torch.Tensor], idx: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
    """Activations of images ``idx``, each from its chosen view, as float32 ``(B, C, h, w)``."""
    x = torch.empty((len(idx), *acts[0].shape[1:]), dtype=torch.float32)
    for v in range(len(acts)):
        mask = views == v
        if mask.any():
            x[mask] = acts[v][idx[mask]].float()
    return x


@torch.no_grad()
def _trunk(
    split: Split, pixels: torch.Tensor, precision: Precision, store: torch.dtype, ticker: Ticker
) -> torch.Tensor:
    """Frozen trunk over uint8 ``(N, 3, S, S)`` pixels → stored activations ``(N, C, h, w)``."""
    out: torch.Tensor | None = None
    for i in range(0, len(pixels), INFER_BATCH):
        with autocast(precision.dtype):
            a = split.trunk(pixels[i : i + INFER_BATCH])
        if out is None:
            out = torch.empty((len(pixels), *a.shape[1:]), dtype=store)
        out[i : i + len(a)] = a.to(store)
        ticker.advance(len(a))
    return out if out is not None else torch.empty(0, dtype=store)


@torch.no_grad()
def _pooled(split: Split, acts: torch.Tensor, precision: Precision) -> torch.Tensor:
    """Pretrained tail (eval mode) over activations → pooled features ``(N, F)`` float32."""
    split.tail.eval()
    parts = []
    for i in range(0, len(acts), INFER_BATCH):
        with autocast(precision.dtype):
            parts.append(split.tail.features(acts[i : i + INFER_BATCH].float()).float())
    return torch.cat(parts)


@torch.no_grad()
def _logits(split: Split, acts: torch.Tensor, precision: Precision) -> torch.Tensor:
    """Tail (eval mode) over activations → logits ``(N, K)`` float32."""
    split.tail.eval()
    parts = []
    for i in range(0, len(acts), INFER_BATCH):
        with autocast(precision.dtype):
            parts.append(split.tail(acts[i : i + INFER_BATCH].float()).float())
    return torch.cat(parts)


def _metrics(logits: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Validation accuracy, macro F1 and cross-entropy loss."""
    from sklearn.metrics import f1_score

    pred = logits.argmax(1)
    return {
        "accuracy": float((pred == y).float().mean()),
        "f1_macro": float(f1_score(y.numpy(), pred.numpy(), average="macro", zero_division=0)),
        "loss": float(F.cross_entropy(logits, y)),
    }


def _warm_up(
    split: Split, cache: ImageCache, y: torch.Tensor, config: TrainConfig
) -> tuple[int, Precision, dict[str, float]]:
    """Time the trunk and a training step on real images; choose precision and a batch size that fits."""
    batch_size = min(config.batch_size, len(y))
    sample = cache.eval[:batch_size]
    with torch.no_grad():
        start = time.perf_counter()
        acts = split.trunk(sample).float()
        trunk_img = (time.perf_counter() - start) / len(sample)
    saved = _runs.state_copy(split.tail)

    def step(dtype: str) -> None:
        _train_mode(split.tail)
        x = acts[torch.arange(batch_size) % len(acts)]
        with autocast(dtype):
            loss = F.cross_entropy(split.tail(x).float(), y[torch.arange(batch_size) % len(y)])
        loss.backward()
        split.tail.zero_grad(set_to_none=True)

    while True:
        try:
            precision = (
                choose_precision(str(config.mixed_precision), step)
                if config.strategy != "head"
                else choose_precision("no", step)
            )
            start = time.perf_counter()
            if config.strategy != "head":
                step(precision.dtype)
            step_s = time.perf_counter() - start
            break
        except RuntimeError as exc:
            if "memory" not in str(exc).lower() and "alloc" not in str(exc).lower():
                raise
            if not config.auto_find_batch_size or batch_size <= 1:
                raise TrainError(
                    f"Batch size {batch_size} does not fit in memory. Set a smaller batch_size "
                    f"or auto_find_batch_size: true (--auto-find-batch-size)."
                ) from exc
            batch_size //= 2
            log.warning("out of memory: trying batch size %d", batch_size)
    split.tail.load_state_dict(saved)
    timing = {
        "trunk_seconds_per_image": trunk_img,
        "step_seconds": step_s,
        "fp32_step_seconds": precision.fp32_seconds or 0.0,
        "bf16_step_seconds": precision.bf16_seconds or 0.0,
    }
    return batch_size, precision, timing


def load_run_json(run_dir: str | Path) -> dict[str, Any]:
    """The ``sortsight.json`` of a run folder."""
    return dict(json.loads((Path(run_dir) / "sortsight.json").read_text(encoding="utf-8")))


make_module_callable(__name__, train)  # sortsight.train(...) works in every import order
