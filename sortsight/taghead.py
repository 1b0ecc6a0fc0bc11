"""The multi-label head: one L2-regularised logistic regression per tag on frozen features.

The objective is scikit-learn's ``LogisticRegression`` (``C`` means the same; ``balanced``
weighting is its ``class_weight="balanced"``, per tag), fitted for all tags at once with
L-BFGS in torch — scikit-learn would fit the tags one by one, and cross-validation needs many
fits. ``C`` is chosen from :data:`C_GRID` by :data:`FOLDS`-fold cross-validated mean average
precision on the training images (each fold warm-starts the next ``C`` from the last);
balanced weighting is then tried at that ``C`` and kept only when it gains at least
:data:`WEIGHTING_GAIN` mAP there. Each tag's threshold maximises its F1 on the out-of-fold
scores of the chosen setting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sortsight.config import DEFAULT_SEED
from sortsight.tagmetrics import best_f1_thresholds, sigmoid

__all__ = ["C_GRID", "FOLDS", "WEIGHTING_GAIN", "TagHead", "fit_tag_head", "tag_issues"]

C_GRID = (0.003, 0.01, 0.03, 0.1, 0.3)  # ascending: a fold warm-starts each C from the last
FOLDS = 3
MAX_ITER = 100
#: Class-imbalance weighting is used only when it raises cross-validated mAP by this much.
WEIGHTING_GAIN = 0.005


@dataclass
class TagHead:
    """One logistic regression per tag, on raw (unscaled) features: ``scores = σ(x Wᵀ + b)``."""

    weight: np.ndarray  # (T, F)
    bias: np.ndarray  # (T,)
    thresholds: np.ndarray  # (T,)
    c: float
    balanced: bool
    cv_map: dict[str, float]  # cross-validated mAP of every setting tried
    oof: np.ndarray | None = None  # (N, T) out-of-fold scores of the chosen setting (for the doctor)

    def scores(self, x: np.ndarray) -> np.ndarray:
        return sigmoid(x @ self.weight.T + self.bias)  # (N, T)


def _fit(x: Any, y: Any, c: float, balanced: bool, init: tuple[Any, Any] | None = None) -> tuple[Any, Any]:
    """All tags' logistic regressions at once: min Σ_t [Σ_i w_it·BCE_it + ‖W_t‖²/(2C)], scikit-learn's.

    ``init`` warm-starts from another solution (the next ``C`` on a path starts from the last).
    """
    import torch

    n, f = x.shape
    pos = y.sum(0).clamp(min=1)
    if init is None:
        rate = (pos / n).clamp(1e-4, 1 - 1e-4)
        init = (torch.zeros((y.shape[1], f), dtype=x.dtype), (rate / (1 - rate)).log().to(x.dtype))
    w = init[0].clone().requires_grad_(True)
    b = init[1].clone().requires_grad_(True)
    if balanced:  # scikit-learn's class_weight="balanced", per tag
        neg = (n - y.sum(0)).clamp(min=1)
        sample_w = y * (n / (2 * pos)) + (1 - y) * (n / (2 * neg))
    else:
        sample_w = torch.ones_like(y)
    opt = torch.optim.LBFGS(
        [w, b],
        lr=1,
        max_iter=MAX_ITER,
        tolerance_grad=1e-5,
        tolerance_change=1e-8,
        line_search_fn="strong_wolfe",
    )

    def closure() -> Any:
        opt.zero_grad()
        logits = x @ w.T + b  # (N, T)
        bce = torch.nn.functional.binary_cross_entropy_with_logits(
            logits, y, weight=sample_w, reduction="sum"
        )
        loss = (bce + (w * w).sum() / (2 * c)) / n
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def _oof_scores(
    xs: Any, ys: Any, folds: np.ndarray, settings: list[tuple[float, bool]]
) -> dict[Any, np.ndarray]:
    """Out-of-fold scores of every setting; within a fold each ``C`` warm-starts from the previous one."""
    out = {key: np.zeros(tuple(ys.shape), dtype=np.float64) for key in settings}
    for k in range(int(folds.max()) + 1):
        fit_on, held = _torch_mask(folds != k), _torch_mask(folds == k)
        last = None
        for key in settings:
            last = _fit(
                xs[fit_on], ys[fit_on], key[0], key[1], last if last and key[1] == settings[0][1] else None
            )
            out[key][folds == k] = sigmoid((xs[held] @ last[0].T + last[1]).numpy())
    return out


def _torch_mask(mask: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(mask)


def fit_tag_head(x: np.ndarray, y: np.ndarray, *, seed: int = DEFAULT_SEED) -> TagHead:
    """Fit the one-vs-rest head on features ``x (N, F)`` and tags ``y (N, T)``.

    ``C`` is chosen by :data:`FOLDS`-fold cross-validated mAP over :data:`C_GRID`; balanced
    class weighting is then tried at that ``C`` and kept only if it gains :data:`WEIGHTING_GAIN`.
    Thresholds maximise each tag's F1 on the out-of-fold scores of the chosen setting.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # (N, F) x (F, T) products are small: thread hand-offs cost more than they give
    try:
        return _fit_tag_head(x, y, seed)
    finally:
        torch.set_num_threads(threads)


def _fit_tag_head(x: np.ndarray, y: np.ndarray, seed: int) -> TagHead:
    import torch
    from sklearn.metrics import average_precision_score

    mu = x.mean(0)
    sigma = x.std(0)
    sigma = np.where(sigma > 0, np.maximum(sigma, 1e-3 * float(x.std()) + 1e-6), 1.0)
    xs = torch.from_numpy(((x - mu) / sigma).astype(np.float32))
    ys = torch.from_numpy(np.asarray(y, dtype=np.float32))
    folds = np.random.default_rng(seed).permutation(len(x)) % min(FOLDS, len(x))
    has = [t for t in range(y.shape[1]) if y[:, t].any() and not y[:, t].all()]

    def cv_map(scores: np.ndarray) -> float:
        return float(np.mean([average_precision_score(y[:, t], scores[:, t]) for t in has])) if has else 0.0

    oof = _oof_scores(xs, ys, folds, [(c, False) for c in C_GRID])
    maps = {key: cv_map(s) for key, s in oof.items()}
    chosen = max(maps, key=lambda k: (maps[k], -k[0]))
    weighted = (chosen[0], True)
    oof.update(_oof_scores(xs, ys, folds, [weighted]))
    maps[weighted] = cv_map(oof[weighted])
    if maps[weighted] >= maps[chosen] + WEIGHTING_GAIN:
        chosen = weighted
    thresholds = best_f1_thresholds(y, oof[chosen])
    w, b = _fit(xs, ys, chosen[0], chosen[1])
    weight = w.numpy().astype(np.float64) / sigma  # fold the standardisation into the layer
    bias = b.numpy().astype(np.float64) - (weight * mu).sum(1)
    return TagHead(
        weight,
        bias,
        thresholds,
        chosen[0],
        chosen[1],
        {f"C={c:g}{' balanced' if bal else ''}": round(v, 4) for (c, bal), v in maps.items()},
        oof[chosen],
    )


def tag_issues(
    paths: list[str], y: np.ndarray, oof: np.ndarray, thresholds: np.ndarray, tags: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Training images whose tags look wrong, by cleanlab's multi-label ``find_label_issues`` on
    out-of-fold scores, worst first: per image the tags ``likely_missing`` (scored over the
    threshold, not given) and ``likely_wrong`` (given, scored under it). Images cleanlab flags
    with no tag on the wrong side of its threshold are left out (nothing to act on)."""
    from cleanlab.filter import find_label_issues

    if len(y) < 10 or not y.any():
        return []
    labels = [[int(t) for t in np.flatnonzero(row)] for row in y]
    ranked = find_label_issues(
        labels=labels, pred_probs=oof, multi_label=True, return_indices_ranked_by="self_confidence"
    )
    out = []
    for i in ranked:
        over = oof[i] >= thresholds
        if not (over != y[i]).any():  # flagged, but no tag is on the other side of its threshold
            continue
        out.append(
            {
                "path": paths[i],
                "tags": [tags[t] for t in labels[i]],
                "likely_missing": [tags[t] for t in np.flatnonzero(over & ~y[i])],
                "likely_wrong": [tags[t] for t in np.flatnonzero(~over & y[i])],
                "scores": {tags[t]: round(float(oof[i, t]), 4) for t in range(len(tags))},
            }
        )
    return out
