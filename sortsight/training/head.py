"""The head: a logistic regression on frozen features, folded into the network's last layer.

:func:`fit_head` chooses the feature scaling and the regularisation on the validation split;
:func:`refit_head` fits the chosen settings again on train + validation (every labelled image);
:func:`fold` writes a fit into an ``nn.Linear`` so the saved network computes exactly it.
:func:`wise` interpolates two sets of weights (WiSE-FT, Wortsman et al. 2022): mixing the
head-initialised network with its fine-tuned version at no inference cost.
:func:`head_seconds` times the fits on a sample and says how long they take on the whole data.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "HeadFit",
    "fit_head",
    "fold",
    "head_seconds",
    "logistic_regression",
    "metrics",
    "refit_head",
    "wise",
]

C_GRID = (0.01, 0.1, 1.0)
_ROW_ITERATIONS = 10  # lbfgs iterations timed at both sizes by _row_cost
_ROW_CAP = 10_000  # rows _row_cost times at most (its own memory and time stay small)


@dataclass
class HeadFit:
    """A fitted logistic regression in the original feature space: ``logits = x @ weight.T + bias``.

    Attributes:
        weight: ``(K, F)``; bias: ``(K,)``.
        scaling: ``"per_feature"`` (standardised, the usual probe) or ``"global"`` (one scale).
        C: inverse regularisation strength.
        n_items: images it was fitted on.
    """

    weight: np.ndarray
    bias: np.ndarray
    scaling: str
    C: float
    n_items: int

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return x.double() @ torch.from_numpy(self.weight).T + torch.from_numpy(self.bias)


def _scales(x: np.ndarray, scaling: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale per feature. Per-feature scales are floored: a feature almost constant on
    the training images would otherwise get a huge weight that fine-tuning could blow up."""
    mu = x.mean(0)
    global_sigma = float(x.std()) + 1e-6
    if scaling == "global":
        return mu, np.full(x.shape[1], global_sigma)
    sigma = x.std(0)
    return mu, np.where(sigma > 0, np.maximum(sigma, 1e-3 * global_sigma), 1.0)


def logistic_regression(x: np.ndarray, y: np.ndarray, *, c: float, seed: int, max_iter: int = 1000) -> Any:
    """scikit-learn's ``LogisticRegression`` (lbfgs) fitted with the BLAS on one thread. Its
    vectors are small (classes x features), and the BLAS's threads handing off on the cores
    torch's threads also hold cost each iteration milliseconds: measured on this project's
    benchmark features (2 cores), the grid of :func:`fit_head` took 4.15 s on one thread's
    0.92 (fonts, 1440 images) and 8.22 s on 1.49 (fashion, 1200), choosing the same ``C``."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return LogisticRegression(C=c, max_iter=max_iter, random_state=seed).fit(x, y)


def _fit(x: np.ndarray, y: np.ndarray, n_classes: int, scaling: str, c: float, seed: int) -> HeadFit:
    mu, sigma = _scales(x, scaling)
    lr = logistic_regression((x - mu) / sigma, y, c=c, seed=seed)
    coef, intercept = lr.coef_, lr.intercept_
    if coef.shape[0] == 1:  # binary: softmax([0, z]) == sigmoid(z)
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.concatenate([[0.0], intercept])
    weight = coef / sigma  # fold the standardisation into the linear layer
    bias = intercept - (coef * mu / sigma).sum(1)
    assert weight.shape[0] == n_classes, "every class has training images (check_trainable)"
    return HeadFit(weight, bias, scaling, float(c), len(y))


def metrics(logits: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Accuracy, macro F1 and cross-entropy loss."""
    from sklearn.metrics import f1_score

    logits = logits.float()
    pred = logits.argmax(1)
    return {
        "accuracy": float((pred == y).float().mean()),
        "f1_macro": float(f1_score(y.numpy(), pred.numpy(), average="macro", zero_division=0)),
        "loss": float(F.cross_entropy(logits, y)),
    }


def fit_head(
    f_train: torch.Tensor,
    y_train: torch.Tensor,
    f_valid: torch.Tensor,
    y_valid: torch.Tensor,
    *,
    n_classes: int,
    seed: int,
    grid: Sequence[float] = C_GRID,
) -> tuple[HeadFit, dict[str, float]]:
    """Fit two scalings x the strengths of ``grid``; keep the best on validation (accuracy, then loss).

    Per-feature standardisation is the usual linear probe, which the default must never score
    below; one global scale is gentler when folded into the layer before fine-tuning.

    Returns:
        The kept fit and its validation metrics.
    """
    x, y = f_train.numpy().astype(np.float64), y_train.numpy()
    best: tuple[tuple[float, float], HeadFit, dict[str, float]] | None = None
    for scaling in ("per_feature", "global"):
        for c in grid:
            fit = _fit(x, y, n_classes, scaling, c, seed)
            m = metrics(fit.logits(f_valid), y_valid)
            key = (m["accuracy"], -m["loss"])
            if best is None or key > best[0]:
                best = (key, fit, m)
    assert best is not None
    return best[1], {**best[2], "C": best[1].C}


def refit_head(
    fit: HeadFit, features: torch.Tensor, targets: torch.Tensor, *, n_classes: int, seed: int
) -> HeadFit:
    """The same scaling and strength as ``fit``, fitted on ``features`` (train + validation)."""
    return _fit(features.numpy().astype(np.float64), targets.numpy(), n_classes, fit.scaling, fit.C, seed)


def head_seconds(
    features: torch.Tensor, targets: torch.Tensor, n_rows: int, *, refit: bool, seed: int
) -> float:
    """Seconds :func:`fit_head` (and, with ``refit``, :func:`refit_head`) would take on ``n_rows``
    images, timed on ``features`` / ``targets`` (a sample of them; only the import when it holds
    one class, which cannot be fitted), with the import of scikit-learn (nothing once paid)."""
    t = time.perf_counter()
    import sklearn.linear_model  # noqa: F401  (the run's head pays the import once)

    imports = time.perf_counter() - t
    present = sorted(set(targets.tolist()))
    if len(present) < 2:
        return imports
    ys = torch.tensor([present.index(int(v)) for v in targets])  # the classes the sample holds
    t = time.perf_counter()
    fit_head(features, ys, features, ys, n_classes=len(present), seed=seed)
    per_fit = (time.perf_counter() - t) / (2 * len(C_GRID))
    fits = 2 * len(C_GRID) + (1 if refit else 0)  # the grid, then the refit
    return imports + per_fit * fits * _row_cost(features.numpy(), ys.numpy(), n_rows)


def _row_cost(x: np.ndarray, y: np.ndarray, n: int) -> float:
    """How many times longer a logistic-regression fit takes on ``n`` rows than on the sample's
    ``x``. A fit's time is its lbfgs iterations x the cost of one; the iterations depend little on
    the number of rows (measured on the fonts set: 177 over the six grid fits of a 48-image
    sample, 210 on its 1440 training images; fashion 212 and 393), while one iteration costs a
    fixed part (about 10 ms on 1280 features, whatever the rows) plus a part per row. So neither
    the sample's time nor its time per image scales: the cost of an iteration is timed here at
    both sizes, on the sample's rows repeated, and the ratio taken."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    if n <= len(x):
        return 1.0

    def timed(rows: int) -> float:
        xs, ys = np.resize(x, (rows, x.shape[1])), np.resize(y, rows)
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            logistic_regression(xs, ys, c=1.0, seed=0, max_iter=_ROW_ITERATIONS)
        return time.perf_counter() - t

    small = min(timed(len(x)) for _ in range(2))
    rows = min(n, _ROW_CAP)  # beyond it the per-row part dominates: extended in proportion
    return max(1.0, timed(rows) / max(small, 1e-6) * n / rows)


class LinearFit(Protocol):
    """A fitted linear model in feature space: ``logits = x @ weight.T + bias`` (a :class:`HeadFit`,
    or a tagger's :class:`sortsight.taghead.TagHead`)."""

    weight: np.ndarray
    bias: np.ndarray


def fold(fit: LinearFit, classifier: nn.Linear) -> None:
    """Copy ``fit`` into ``classifier`` (the network then computes the fit's logits)."""
    with torch.no_grad():
        classifier.weight.copy_(torch.from_numpy(fit.weight).float())
        classifier.bias.copy_(torch.from_numpy(fit.bias).float())


def wise(zero: dict[str, torch.Tensor], one: dict[str, torch.Tensor], alpha: float) -> dict[str, Any]:
    """``(1 - alpha) * zero + alpha * one`` for every floating-point tensor (others from ``one``
    when ``alpha > 0``): alpha 0 is ``zero`` exactly, alpha 1 is ``one`` exactly."""
    if alpha == 0:
        return {k: v.clone() for k, v in zero.items()}
    if alpha == 1:
        return {k: v.clone() for k, v in one.items()}
    return {
        k: (1 - alpha) * zero[k] + alpha * v if v.is_floating_point() else v.clone() for k, v in one.items()
    }
