"""The fine-tuning schedule: discriminative learning rates, the optimizer, warm-up then decay."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["layer_lrs", "lr_factor", "make_optimizer"]


def layer_lrs(lr: float, n_groups: int, *, discriminative: bool = True) -> list[float]:
    """fastai-style discriminative rates, early → late: ``lr/10`` for the earliest trained layer
    group up to ``lr`` for the classifier, geometrically spaced. ``discriminative=False`` (random
    weights: no early layers worth keeping close to where they start): ``lr`` for every group."""
    if not discriminative:
        return [lr] * n_groups
    return [lr * 0.1 ** ((n_groups - 1 - i) / max(1, n_groups - 1)) for i in range(n_groups)]


def make_optimizer(
    name: str, groups: list[list[nn.Parameter]], lrs: list[float], *, weight_decay: float
) -> torch.optim.Optimizer:
    """AutoTrain's optimizer names: ``adamw_torch``/``adamw``, ``adam``, ``sgd`` (Nesterov, 0.9)."""
    params = [{"params": g, "lr": lr} for g, lr in zip(groups, lrs, strict=True)]
    if name in ("adamw_torch", "adamw"):
        return torch.optim.AdamW(params, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, weight_decay=weight_decay)
    return torch.optim.SGD(params, momentum=0.9, nesterov=True, weight_decay=weight_decay)


def lr_factor(step: int, total: int, warmup_ratio: float, scheduler: str) -> float:
    """Learning-rate multiplier at optimizer step ``step`` of ``total``: linear warm-up, then
    ``cosine`` / ``linear`` decay to 0, ``constant``, or ``onecycle`` (cosine, >= 25 % warm-up)."""
    if scheduler == "onecycle":
        warmup_ratio = max(warmup_ratio, 0.25)
    warm = int(total * warmup_ratio)
    if step < warm:
        return (step + 1) / warm
    if scheduler == "constant":
        return 1.0
    p = (step - warm) / max(1, total - warm)
    return 0.5 * (1 + math.cos(math.pi * p)) if scheduler in ("cosine", "onecycle") else max(0.0, 1 - p)
