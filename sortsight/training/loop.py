"""The fine-tuning loop: the one place where an epoch happens.

From the logistic-regression head, train only the tail (last stages + classifier) on cached trunk
activations: discriminative learning rates, warm-up then decay, validation every epoch, a
checkpoint every epoch (``--resume`` continues from it), and two stops — early stopping, and
:data:`~sortsight.training.plan.NO_GAIN_EPOCHS` epochs that do not beat the head (no more epochs
spent for nothing). The best fine-tuned weights are returned for the WiSE-FT mix.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sortsight.config import TrainConfig
from sortsight.errors import TrainError
from sortsight.progress import ProgressCallback, ProgressEvent, Ticker, emit
from sortsight.training.checkpoint import (
    load_latest_average,
    load_latest_checkpoint,
    restore_optimizer,
    save_checkpoint,
)
from sortsight.training.distributed import Environment
from sortsight.training.head import metrics, wise
from sortsight.training.plan import NO_GAIN_EPOCHS, WISE_ALPHAS
from sortsight.training.precision import Precision, autocast, choose_precision
from sortsight.training.run_dir import MetricsLog
from sortsight.training.schedule import layer_lrs, lr_factor, make_optimizer
from sortsight.training.split import Split

__all__ = [
    "SINGLE_LABEL",
    "WISE_ALPHAS",
    "Finetuned",
    "Objective",
    "choose_wise",
    "finetune",
    "logits",
    "state_copy",
    "warm_up",
]

log = logging.getLogger(__name__)
INFER_BATCH = 64


@dataclass(frozen=True)
class Objective:
    """What fine-tuning minimises and how validation judges it: ``loss(logits, y)`` is trained on;
    ``score(logits, y)`` gives the validation metrics (with ``loss``); the best epoch and the WiSE
    mix have the highest ``score[key]`` (ties: the lower loss)."""

    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    score: Callable[[torch.Tensor, torch.Tensor], dict[str, float]]
    key: str


#: one label per image: cross-entropy, kept by validation accuracy
SINGLE_LABEL = Objective(F.cross_entropy, metrics, "accuracy")


@dataclass
class Finetuned:
    """What the loop made: the best fine-tuned weights (None when no epoch ran) and how it went."""

    best_state: dict[str, torch.Tensor] | None
    best: dict[str, float]
    epochs: int
    steps: int
    stopped: str  # completed | early_stopping | no_gain | time_budget


def finetune(
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
    env: Environment,
    metrics_log: MetricsLog,
    name: str,
    progress: ProgressCallback | None,
    deadline: float | None,
    cap_at: float | None = None,
    objective: Objective = SINGLE_LABEL,
    features_engine: str = "auto",
) -> Finetuned:
    """The epoch loop over ``acts_train`` (one tensor per view, ``(N, C, h, w)``), training on
    ``objective.loss`` and keeping the epoch with the best ``objective.key`` on validation — or,
    with ``config.weight_averaging`` (not from random weights), the running mean of the weights
    over the steps after the first epoch, scored on validation (the epochs still drive the stops).

    ``deadline`` (the time budget) stops mid-epoch; ``cap_at`` (auto's share of the run, a
    ``time.perf_counter()`` value) stops between epochs, before one that would end past it at the
    last epoch's measured speed. ``features_engine`` (the frozen pass's) is kept in each
    checkpoint: a resumed run computes its features on the same engine, so it reaches the same
    result (ONNX Runtime's features and eager PyTorch's differ in the sixth decimal)."""
    tail = split.tail
    groups = tail.param_groups()  # early → late layers
    scratch = split.kind == "scratch"  # random weights: one rate, BatchNorm learns, no head to beat
    lrs = layer_lrs(config.lr, len(groups), discriminative=not scratch)
    optimizer = make_optimizer(config.optimizer, groups, lrs, weight_decay=config.weight_decay)
    model = env.wrap(tail)  # DDP when several processes, else the tail itself

    n, bs, accum = len(y_train), config.batch_size, config.gradient_accumulation
    per_rank = math.ceil(n / env.world)
    micro_per_epoch = math.ceil(per_rank / bs)
    total_steps = config.epochs * math.ceil(micro_per_epoch / accum)

    key = objective.key
    best_state: dict[str, torch.Tensor] | None = None
    best, bad, first_epoch, step, beat_head = {key: -1.0, "loss": math.inf}, 0, 0, 0, False
    averaged: dict[str, torch.Tensor] | None = None  # weight_averaging: the running mean (SWA)
    averaged_steps = 0
    ckpt = load_latest_checkpoint(out / "checkpoints") if config.resume else None
    if ckpt is not None:
        model_state, best_state, opt_tensors, state = ckpt
        tail.load_state_dict(model_state)
        restore_optimizer(optimizer, opt_tensors, state["optimizer_groups"])
        best, bad, beat_head = state["best"], state["bad_epochs"], state["beat_head"]
        first_epoch, step = state["epoch"], state["step"]
        averaged, averaged_steps = load_latest_average(out / "checkpoints"), state.get("averaged_steps", 0)
        emit(
            progress, ProgressEvent("train", step, total_steps, message=f"Resumed after epoch {first_epoch}")
        )

    ticker = Ticker(progress, "train", total=total_steps)
    ticker.step = step
    stopped = _stop_reason(config, bad, first_epoch, beat_head or scratch) or "completed"
    epochs_done = first_epoch
    last_epoch = config.epochs if stopped == "completed" else first_epoch
    for epoch in range(first_epoch, last_epoch):
        epoch_start = time.perf_counter()
        # the same shuffle and views on every process and after a resume: seeded by epoch
        gen = torch.Generator().manual_seed(config.seed * 1000 + epoch)
        order = torch.randperm(n, generator=gen)
        view_of = torch.randint(0, len(acts_train), (n,), generator=gen)
        order = torch.cat([order, order[: per_rank * env.world - n]])[env.rank :: env.world]  # (per_rank,)
        _train_mode(model, frozen_bn=not scratch)
        losses = []
        for micro in range(micro_per_epoch):
            idx = order[micro * bs : (micro + 1) * bs]
            x = _gather(acts_train, idx, view_of[idx])  # (B, C, h, w)
            with autocast(precision.dtype):
                loss = objective.loss(model(x).float(), y_train[idx])
            (loss / accum).backward()
            losses.append(loss.item())
            if (micro + 1) % accum == 0 or micro + 1 == micro_per_epoch:
                factor = lr_factor(step, total_steps, config.warmup_ratio, config.scheduler)
                for group, base in zip(optimizer.param_groups, lrs, strict=True):
                    group["lr"] = base * factor
                if config.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(tail.parameters(), config.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                if config.weight_averaging and not scratch and epoch >= min(1, last_epoch - 1):
                    averaged = _average_into(averaged, tail, averaged_steps := averaged_steps + 1)
                ticker.advance(loss=float(np.mean(losses[-10:])), epoch=epoch + 1)
            if deadline is not None and env.agree(time.perf_counter() > deadline):
                stopped = "time_budget"
                break
        env.sync_buffers(tail)  # BatchNorm statistics as rank 0 has them, so all ranks agree
        epochs_done = epoch + 1

        # validate every epoch; keep the best fine-tuned weights (ties: lower loss wins)
        m = objective.score(logits(split, acts_valid, precision), y_valid)
        if m[key] > best[key] + config.early_stopping_threshold or (
            m[key] >= best[key] and m["loss"] < best["loss"]
        ):
            best, best_state, bad = dict(m), state_copy(tail), 0
        else:
            bad += 1
        beat_head = (
            beat_head
            or m[key] > head_metrics[key]
            or (m[key] == head_metrics[key] and m["loss"] < head_metrics["loss"])
        )
        record = {
            "candidate": name,
            "phase": "epoch",
            "epoch": epoch + 1,
            "step": step,
            "train_loss": float(np.mean(losses)) if losses else None,
            "lr": optimizer.param_groups[-1]["lr"],
            **{f"val_{k}": v for k, v in m.items()},
        }
        metrics_log.append(record)
        emit(progress, ProgressEvent("validate", epoch + 1, config.epochs, record))
        if stopped == "time_budget":
            break
        if env.is_main:
            save_checkpoint(
                out / "checkpoints",
                epoch + 1,
                model_state=tail.state_dict(),
                best_state=best_state if best_state is not None else tail.state_dict(),
                optimizer=optimizer,
                keep=config.save_total_limit,
                averaged=averaged,
                state={
                    "step": step,
                    "best": best,
                    "bad_epochs": bad,
                    "beat_head": beat_head,
                    "epochs": config.epochs,  # auto may cap them: a resumed run keeps the same schedule
                    "features_engine": features_engine,
                    "averaged_steps": averaged_steps,
                },
            )
        env.wait()
        reason = _stop_reason(config, bad, epoch + 1, beat_head or scratch)
        if reason:
            stopped = reason
            break
        now = time.perf_counter()
        if cap_at is not None and epoch + 1 < last_epoch and env.agree(now + (now - epoch_start) > cap_at):
            stopped = "time_cap"
            break
    if averaged is not None:  # the tail is left holding the weights it returns (callers load theirs)
        tail.load_state_dict(averaged)
        best, best_state = objective.score(logits(split, acts_valid, precision), y_valid), averaged
    return Finetuned(best_state, best, epochs_done, step, stopped)


def _average_into(
    mean: dict[str, torch.Tensor] | None, module: nn.Module, count: int
) -> dict[str, torch.Tensor]:
    """The running mean of ``module``'s floating-point weights after ``count`` steps."""
    if mean is None:
        return state_copy(module)
    with torch.no_grad():
        for k, v in module.state_dict().items():
            if v.is_floating_point():
                mean[k] += (v - mean[k]) / count
            else:
                mean[k] = v.clone()
    return mean


def choose_wise(
    split: Split,
    head_state: dict[str, torch.Tensor],
    ft_state: dict[str, torch.Tensor],
    acts_valid: torch.Tensor,
    y_valid: torch.Tensor,
    head_metrics: dict[str, float],
    objective: Objective = SINGLE_LABEL,
) -> tuple[float, dict[str, float]]:
    """The WiSE-FT mixing weight with the best validation ``objective.key`` (then loss); ties
    keep the smaller."""
    key = objective.key
    best: tuple[tuple[float, float], float, dict[str, float]] = (
        (head_metrics[key], -head_metrics["loss"]),
        0.0,
        dict(head_metrics),
    )
    for alpha in WISE_ALPHAS[1:]:
        split.tail.load_state_dict(wise(head_state, ft_state, alpha))
        m = objective.score(logits(split, acts_valid), y_valid)
        if (m[key], -m["loss"]) > best[0]:
            best = ((m[key], -m["loss"]), alpha, m)
    return best[1], best[2]


def _stop_reason(config: TrainConfig, bad: int, epochs: int, beat_head: bool) -> str | None:
    """Early stopping, or no epoch beat the head after NO_GAIN_EPOCHS (both off with patience 0)."""
    if not config.early_stopping_patience:
        return None
    if bad >= config.early_stopping_patience:
        return "early_stopping"
    if epochs >= NO_GAIN_EPOCHS and not beat_head:
        return "no_gain"
    return None


def _train_mode(model: nn.Module, *, frozen_bn: bool = True) -> None:
    """Train mode, but BatchNorm keeps its pretrained running statistics (and learns only its
    affine weights): with small CPU batches, batch statistics are noisy, and they would not match
    the eval-mode features the logistic-regression head was fitted on (measured: the first
    epoch's loss jumped from ~0 to ~12 with train-mode BatchNorm). From random weights
    (``frozen_bn=False``) there are no statistics worth keeping: BatchNorm trains as usual."""
    model.train()
    if not frozen_bn:
        return
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
def logits(split: Split, acts: torch.Tensor, precision: Precision | None = None) -> torch.Tensor:
    """Tail (eval mode) over activations → logits ``(N, K)`` float32."""
    split.tail.eval()
    parts = [torch.zeros((0, split.classifier.out_features))]
    for i in range(0, len(acts), INFER_BATCH):
        with autocast(precision.dtype if precision else "fp32"):
            parts.append(split.tail(acts[i : i + INFER_BATCH].float()).float())
    return torch.cat(parts)


def state_copy(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def warm_up(
    split: Split,
    acts: torch.Tensor,
    y: torch.Tensor,
    config: TrainConfig,
    objective: Objective = SINGLE_LABEL,
    *,
    speed_key: str | None = None,
) -> tuple[int, Precision, dict[str, float]]:
    """Time a training step of the tail on real activations; choose precision and a batch size that
    fits in memory (halving it with ``auto_find_batch_size``). The tail's weights are unchanged.
    With ``speed_key`` (:func:`speeds.speed_key`), the precision an earlier run or estimate of the
    same model measured on this machine is reused (:func:`choose_precision`)."""
    from sortsight.training import speeds

    remembered = speeds.recall(speed_key) if speed_key else None
    batch_size = min(config.batch_size, len(y))
    saved = state_copy(split.tail)

    def step(dtype: str) -> None:
        _train_mode(split.tail, frozen_bn=split.kind != "scratch")
        i = torch.arange(batch_size) % len(acts)
        with autocast(dtype):
            loss = objective.loss(split.tail(acts[i].float()).float(), y[i])
        loss.backward()
        split.tail.zero_grad(set_to_none=True)

    while True:
        try:
            precision = choose_precision(str(config.mixed_precision), step, remembered)
            step(precision.dtype)  # warm-up: allocation and kernel selection
            start = time.perf_counter()
            step(precision.dtype)
            step_s = time.perf_counter() - start
            if not precision.still_holds(step_s):
                remembered = None  # time both precisions again
                continue
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
    timing: dict[str, Any] = {
        "step_seconds": step_s,
        "fp32_step_seconds": precision.fp32_seconds or 0.0,
        "bf16_step_seconds": precision.bf16_seconds or 0.0,
    }
    return batch_size, precision, timing
