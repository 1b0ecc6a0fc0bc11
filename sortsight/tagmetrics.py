"""Multi-label metrics: what training, evaluation and the benchmark report about tag scores.

Pure functions over a ``(N, T)`` boolean truth matrix and ``(N, T)`` sigmoid scores, built on
scikit-learn: micro / macro / samples F1, mAP (mean average precision over tags), Hamming
loss, exact-match ("subset") accuracy, per-tag precision / recall / F1 / support / TP / FP / FN
/ AP, per-tag thresholds that maximise F1, and per-tag calibration.

Example:
    >>> import numpy as np
    >>> y = np.array([[1, 0], [0, 1], [1, 1]], dtype=bool)
    >>> s = np.array([[0.9, 0.2], [0.1, 0.8], [0.7, 0.6]])
    >>> tag_metrics(y, s, np.array([0.5, 0.5]), ["a", "b"])["metrics"]["f1_micro"]
    1.0
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "best_f1_thresholds",
    "cuts_of",
    "sigmoid",
    "tag_calibration",
    "tag_fields",
    "tag_metrics",
]


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Element-wise logistic function, computed stably in float64."""
    z = np.asarray(logits, dtype=np.float64)
    return np.where(z >= 0, 1 / (1 + np.exp(-np.abs(z))), np.exp(-np.abs(z)) / (1 + np.exp(-np.abs(z))))


def best_f1_thresholds(y: np.ndarray, scores: np.ndarray, *, default: float = 0.5) -> np.ndarray:
    """For each tag, the score threshold with the highest F1 on ``(y, scores)``.

    The threshold sits halfway between the lowest score taken and the next one below it, so it
    does not sit on a seen score. A tag with no positive image keeps ``default``.
    """
    y = np.asarray(y, dtype=bool)
    out = np.full(y.shape[1], default, dtype=np.float64)
    for t in range(y.shape[1]):
        positives = int(y[:, t].sum())
        if positives == 0:
            continue
        order = np.argsort(-scores[:, t], kind="stable")
        s, hit = scores[order, t], y[order, t]
        tp = np.cumsum(hit)
        k = np.arange(1, len(s) + 1)
        f1 = 2 * tp / (k + positives)  # predicting the top k as positive
        last = np.r_[s[1:] != s[:-1], True]  # only cut between different scores
        best = int(np.argmax(np.where(last, f1, -1)))
        below = s[best + 1] if best + 1 < len(s) else max(0.0, s[best] - 1e-3)
        out[t] = float((s[best] + below) / 2)
    return out


def tag_metrics(
    y: np.ndarray, scores: np.ndarray, thresholds: np.ndarray, tags: Sequence[str]
) -> dict[str, Any]:
    """``{"metrics": {...}, "per_tag": [...]}`` for scores cut at per-tag ``thresholds``.

    ``metrics``: ``f1_micro``, ``f1_macro``, ``f1_samples``, ``precision_micro``, ``recall_micro``,
    ``map`` (mean of per-tag average precision, over tags with a positive image), ``hamming_loss``,
    ``subset_accuracy`` (all tags right), ``accuracy`` (the same, for leaderboards), ``loss``
    (mean binary cross-entropy), ``n_images``. ``per_tag``: ``tag``, ``threshold``,
    ``precision``, ``recall``, ``f1``, ``support``, ``tp``, ``fp``, ``fn``, ``ap``.
    """
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        f1_score,
        hamming_loss,
        precision_recall_fscore_support,
    )

    y = np.asarray(y, dtype=bool)
    pred = scores >= np.asarray(thresholds)[None, :]
    ap = [
        float(average_precision_score(y[:, t], scores[:, t])) if y[:, t].any() else None
        for t in range(y.shape[1])
    ]
    known = [a for a in ap if a is not None]
    p, r, f, s = precision_recall_fscore_support(y, pred, average=None, zero_division=0)
    pm, rm, fm, _ = precision_recall_fscore_support(y, pred, average="micro", zero_division=0)
    clipped = np.clip(scores, 1e-7, 1 - 1e-7)
    bce = -(y * np.log(clipped) + (~y) * np.log(1 - clipped))
    subset = float(accuracy_score(y, pred))
    metrics = {
        "f1_micro": float(fm),
        "f1_macro": float(f1_score(y, pred, average="macro", zero_division=0)),
        "f1_samples": float(f1_score(y, pred, average="samples", zero_division=0)),
        "precision_micro": float(pm),
        "recall_micro": float(rm),
        "map": float(np.mean(known)) if known else 0.0,
        "hamming_loss": float(hamming_loss(y, pred)),
        "subset_accuracy": subset,
        "accuracy": subset,
        "loss": float(bce.mean()) if bce.size else 0.0,
        "n_images": len(y),
    }
    per_tag = [
        {
            "tag": tags[t],
            "threshold": round(float(thresholds[t]), 6),
            "precision": float(p[t]),
            "recall": float(r[t]),
            "f1": float(f[t]),
            "support": int(s[t]),
            "tp": int((pred[:, t] & y[:, t]).sum()),
            "fp": int((pred[:, t] & ~y[:, t]).sum()),
            "fn": int((~pred[:, t] & y[:, t]).sum()),
            "ap": ap[t],
        }
        for t in range(len(tags))
    ]
    return {"metrics": metrics, "per_tag": per_tag}


def reliability(
    outcome: np.ndarray, confidence: np.ndarray, n_bins: int, keys: tuple[str, str]
) -> tuple[list[dict[str, Any]], float]:
    """Equal-width confidence bins: per bin the mean ``outcome`` (1 right / tag present, 0 not) and
    the mean ``confidence``, named by ``keys``; and ECE = Σ_b (n_b / N) · |outcome_b − confidence_b|.
    Bin i holds (edges[i], edges[i+1]]; a confidence of exactly 0 goes to the first bin."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    bins, ece = [], 0.0
    for b in range(n_bins):
        mask = index == b
        n = int(mask.sum())
        rate = float(outcome[mask].mean()) if n else None
        conf = float(confidence[mask].mean()) if n else None
        if n:
            ece += n / len(outcome) * abs(rate - conf)  # type: ignore[operator]
        bins.append(
            {"low": float(edges[b]), "high": float(edges[b + 1]), "count": n, keys[0]: rate, keys[1]: conf}
        )
    return bins, float(ece)


def tag_calibration(
    y: np.ndarray, scores: np.ndarray, tags: Sequence[str], n_bins: int = 10
) -> dict[str, Any]:
    """Per-tag reliability: in each score bin, the mean score against the share of images that
    really have the tag, and each tag's expected calibration error (ECE); ``ece`` is their mean."""
    per_tag = []
    for t, tag in enumerate(tags):
        bins, ece = reliability(y[:, t].astype(float), scores[:, t], n_bins, ("positive_rate", "mean_score"))
        per_tag.append({"tag": tag, "ece": float(ece), "bins": bins})
    return {
        "ece": float(np.mean([p["ece"] for p in per_tag])) if per_tag else 0.0,
        "per_tag": per_tag,
        "n_bins": n_bins,
    }


# --------------------------------------------------------------------------- tags of a prediction


def cuts_of(classifier: Any, threshold: float) -> np.ndarray:
    """Per-tag thresholds: the model's own, or ``threshold`` for every tag when it is above 0."""
    if threshold > 0 or not classifier.thresholds:
        return np.full(len(classifier.labels), threshold if threshold > 0 else 0.5)
    return np.asarray(classifier.thresholds, dtype=np.float64)


def tag_fields(scores: np.ndarray, tags: Sequence[str], cuts: np.ndarray) -> dict[str, Any]:
    """``tags`` (over their thresholds, best first, ``|``-joined), ``scores`` and the status."""
    order = np.argsort(-scores, kind="stable")
    chosen = [tags[i] for i in order if scores[i] >= cuts[i]]
    return {
        "tags": "|".join(chosen),
        "scores": {t: round(float(v), 6) for t, v in zip(tags, scores, strict=True)},
        "status": "ok" if chosen else "unsure",
    }
