"""``lr_find(config)``: fastai's learning-rate range test, on the cached activations.

The same tail that fine-tuning trains (initialised from the logistic-regression head, as fine-tuning
is) takes ``steps`` mini-batches of the frozen trunk's cached activations while the learning rate
rises geometrically from ``start_lr`` to ``end_lr`` (discriminative rates as in fine-tuning: the
rate named is the classifier's, earlier groups get less). The loss is smoothed (exponential moving
average with bias correction, as fastai does) and the test stops once it exceeds four times its
minimum. The tail's weights are thrown away afterwards: nothing is trained or saved but the plot.

Suggestions (both are written in the JSON and drawn on the plot; ``suggested`` is ``valley``):

- **valley**: the point a third of the way down the longest stretch over which the smoothed loss
  keeps falling (fastai's ``valley``, its default since 2.5): a rate well inside the region where
  training makes progress, rather than at its risky end;
- **steep**: where the smoothed loss falls fastest per decade of learning rate (fastai's ``steep``).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from sortsight.config import TrainConfig
from sortsight.errors import ConfigError, TrainError
from sortsight.progress import ProgressCallback, Ticker

__all__ = ["LRFind", "lr_find", "suggest"]


@dataclass
class LRFind:
    """The range test's curve and its suggestions."""

    lrs: list[float]
    losses: list[float]  # smoothed
    valley: float
    steep: float
    suggested: float
    plot: str = ""
    extra: dict[str, float] = field(default_factory=dict)


def suggest(lrs: list[float], losses: list[float]) -> tuple[float, float]:
    """``(valley, steep)`` learning rates for a smoothed loss curve (see the module docstring)."""
    if len(lrs) < 5:
        raise TrainError("The learning-rate test stopped after too few steps to suggest a rate.")
    loss = np.asarray(losses, dtype=np.float64)
    log_lr = np.log10(np.asarray(lrs, dtype=np.float64))
    grads = np.gradient(loss, log_lr)
    steep = float(lrs[int(np.argmin(grads))])
    # longest run of steps over which the loss keeps going down (fastai's valley, O(n²) on ≤ a few hundred)
    n = len(loss)
    best_len, best_start, best_end = 0, 0, 0
    for i in range(n):
        run_end = i
        for j in range(i + 1, n):
            if loss[j] < loss[run_end]:
                run_end = j
            else:
                break
        if run_end - i > best_len:
            best_len, best_start, best_end = run_end - i, i, run_end
    k = best_start + (best_end - best_start) // 3 if best_len > 0 else int(np.argmin(loss))
    return float(lrs[k]), steep


def lr_find(
    config: TrainConfig,
    *,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    steps: int = 100,
    out: str | Path | None = None,
    progress: ProgressCallback | None = None,
) -> LRFind:
    """Run the range test on ``config.data_path`` with ``config.model``; write ``lr_find.png`` and
    ``lr_find.json`` into ``out``.

    Args:
        config: the training options (model, batch size, optimizer, seed, split are used).
        start_lr, end_lr: the range of the classifier's learning rate.
        steps: mini-batches at the most (cycling through the training images).
        out: the folder for ``lr_find.png`` and ``lr_find.json`` (created; default: the current
            folder); existing files are kept and the new ones get a suffix (``lr_find-2.png``).
        progress: ``features`` events, then ``lr_find`` events per step.

    Returns:
        An :class:`LRFind` with the curve, the suggestions and the plot's path.

    Raises:
        ConfigError: the range is empty or not positive.
        DataError, ModelError: as in training.

    Example:
        >>> found = lr_find(TrainConfig(data_path="photos/"))  # doctest: +SKIP
        >>> found.suggested  # doctest: +SKIP
        0.0012
    """
    from sortsight.training.frozen import FrozenPass
    from sortsight.training.head import fit_head, fold
    from sortsight.training.loop import _train_mode
    from sortsight.training.plan import is_multilabel, load_data
    from sortsight.training.run import build
    from sortsight.training.schedule import layer_lrs, make_optimizer

    if not (0 < start_lr < end_lr) or not math.isfinite(end_lr):
        raise ConfigError(f"The learning-rate range must be 0 < start < end, got {start_lr} .. {end_lr}.")
    if steps < 5:
        raise ConfigError(f"The learning-rate test needs at least 5 steps, got {steps}.")
    torch.manual_seed(config.seed)
    loss_fn: Any = F.cross_entropy
    if is_multilabel(config):  # a tagger: its tag head, binary cross-entropy per tag
        split, acts, y_train = _tagger_start(config, progress)
        loss_fn = F.binary_cross_entropy_with_logits
    else:
        data = load_data(config, progress)
        _, data_config, split = build(config.model, config.image_size, config, list(data.classes))
        frozen = FrozenPass(split, data_config)
        tr = frozen.run(data.train_paths, progress=progress)
        va = frozen.run(data.valid_paths, progress=progress)
        acts = tr.acts
        y_train = torch.tensor([data.train_targets[i] for i in tr.kept])
        y_valid = torch.tensor([data.valid_targets[i] for i in va.kept])
        fit, _ = fit_head(
            tr.features, y_train, va.features, y_valid, n_classes=len(data.classes), seed=config.seed
        )
        fold(fit, split.classifier)  # start where fine-tuning starts

    tail = split.tail
    groups = tail.param_groups()
    scratch = split.kind == "scratch"
    rates = layer_lrs(config.lr, len(groups), discriminative=not scratch)
    ratios = [r / config.lr for r in rates]  # early groups get less (unless from random weights)
    optimizer = make_optimizer(config.optimizer, groups, [start_lr * r for r in ratios], weight_decay=0.0)
    _train_mode(tail, frozen_bn=not scratch)
    gen = torch.Generator().manual_seed(config.seed)
    n, bs = len(y_train), min(config.batch_size, len(y_train))
    order = torch.randperm(n, generator=gen)
    mult = (end_lr / start_lr) ** (1 / (steps - 1))
    lrs: list[float] = []
    smoothed: list[float] = []
    avg, best, beta = 0.0, math.inf, 0.98
    ticker = Ticker(progress, "lr_find", total=steps)
    for step in range(steps):
        lr = start_lr * mult**step
        for group, r in zip(optimizer.param_groups, ratios, strict=True):
            group["lr"] = lr * r
        start = (step * bs) % n
        idx = (
            order[start : start + bs]
            if start + bs <= n
            else torch.cat([order[start:], order[: start + bs - n]])
        )
        loss = loss_fn(tail(acts[idx].float()).float(), y_train[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        value = loss.item()
        avg = beta * avg + (1 - beta) * value
        current = avg / (1 - beta ** (step + 1))
        if not math.isfinite(current):
            break
        lrs.append(lr)
        smoothed.append(current)
        best = min(best, current)
        ticker.advance(loss=round(current, 4), lr=lr)
        if step > 5 and current > 4 * best:
            break
    valley, steep = suggest(lrs, smoothed)
    found = LRFind(lrs, smoothed, valley, steep, valley)
    folder = Path(out) if out is not None else Path.cwd()
    folder.mkdir(parents=True, exist_ok=True)
    stem, n = "lr_find", 2
    while (folder / f"{stem}.png").exists() or (folder / f"{stem}.json").exists():
        stem, n = f"lr_find-{n}", n + 1
    found = replace(found, plot=str(_plot(found, folder / f"{stem}.png")))
    (folder / f"{stem}.json").write_text(json.dumps(asdict(found), indent=1), encoding="utf-8")
    return found


def _tagger_start(config: TrainConfig, progress: ProgressCallback | None) -> tuple[Any, Any, Any]:
    """Where a tagger's fine-tuning starts: ``(split, training activations, 0/1 tag matrix)``, its
    classifier holding the one-vs-rest tag head fitted on the training images' features."""
    from sortsight.errors import DataError
    from sortsight.models import create_model
    from sortsight.taghead import fit_tag_head
    from sortsight.training import plan as _plan
    from sortsight.training.frozen import FrozenPass
    from sortsight.training.head import fold
    from sortsight.training.run import split_for

    ds = _plan.load_tag_data(config, progress)
    items = ds.by_split("train")
    model, data_config = create_model(config.model, list(ds.tags), input_size=config.image_size)
    split = split_for(model, config.model, data_config)
    tr = FrozenPass(split, data_config).run([it.path for it in items], progress=progress)
    y = ds.matrix([items[i] for i in tr.kept])
    if len(y) < 2 or not y.any():
        raise DataError("The learning-rate test needs training images with tags; add images or tags.")
    fold(fit_tag_head(np.asarray(tr.features.numpy()), y, seed=config.seed), split.classifier)
    return split, tr.acts, torch.from_numpy(np.asarray(y, dtype=np.float32))


def _plot(found: LRFind, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    ax.plot(found.lrs, found.losses, color="#33658a")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (classifier)")
    ax.set_ylabel("training loss (smoothed)")
    for lr, name, colour in ((found.valley, "valley", "#2f9e44"), (found.steep, "steep", "#f08c00")):
        ax.axvline(lr, color=colour, linestyle="--", linewidth=1)
        ax.annotate(
            f"{name} {lr:.1e}",
            (lr, max(found.losses)),
            color=colour,
            fontsize=8,
            rotation=90,
            va="top",
            ha="right",
        )
    ax.set_title(f"Learning-rate range test — suggested --lr {found.suggested:.1e}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
