"""The doctor's label and out-of-place checks on frozen embeddings.

Private helpers of :mod:`sortsight.doctor`:

- :func:`assign_folds` — stratified K-fold assignment (fewer folds when a class is small);
- :func:`out_of_sample_probs` — for every image, class probabilities from models that never saw
  it nor its label: per fold, a logistic regression on the L2-normalised embeddings of the other
  folds, blended with a cosine k-nearest-neighbour vote among those same other folds;
- :func:`rank_label_issues` — cleanlab's ``find_label_issues`` decides which images are flagged,
  cleanlab's ``get_label_quality_scores`` orders them;
- :func:`outliers` — cleanlab's ``OutOfDistribution`` (mean cosine distance to the k nearest
  neighbours), flagged by Datalab's own rule (beyond Q3 + 1.7 × IQR of those distances);
- :func:`near_conflicts` — pairs of near-identical embeddings that carry different labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "LabelSettings",
    "assign_folds",
    "confident_subset",
    "label_issues",
    "near_conflicts",
    "out_of_place",
    "out_of_sample_probs",
    "outliers",
    "rank_label_issues",
]


@dataclass(frozen=True)
class LabelSettings:
    """How the out-of-sample probabilities are made and ranked (the defaults were measured by
    ``benchmarks/doctor.py --rankings``; see docs/doctor.md).

    Attributes:
        C: inverse regularisation of the logistic regression.
        knn: neighbours of the k-nearest-neighbour vote (0: logistic regression only).
        knn_weight: share of the kNN vote in the blended probabilities (0–1).
        rank_by: cleanlab ``get_label_quality_scores`` method.
        prune: fit each fold's model again without the likely errors of the other folds.
    """

    C: float = 8.0
    knn: int = 10
    knn_weight: float = 0.3
    rank_by: str = "self_confidence"
    prune: bool = True


def assign_folds(y: np.ndarray, folds: int, seed: int) -> tuple[np.ndarray, int]:
    """``(fold of each image, folds used)``: stratified, shuffled with ``seed``; ``folds`` is capped
    by the smallest class (0 folds when a class has a single image)."""
    from sklearn.model_selection import StratifiedKFold

    k = min(folds, int(np.bincount(y).min()))
    fold_of = np.full(len(y), -1, dtype=np.int64)
    if k < 2:
        return fold_of, 0
    for f, (_, test) in enumerate(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(y, y)):
        fold_of[test] = f
    return fold_of, k


def _normalise(features: np.ndarray) -> np.ndarray:
    x = np.asarray(features, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _knn_vote(sims: np.ndarray, labels: np.ndarray, n_classes: int, k: int) -> np.ndarray:
    """``(B, C)`` similarity-weighted vote of the ``k`` most similar rows (``sims`` is ``(B, M)``)."""
    k = min(k, sims.shape[1])
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]  # (B, k)
    weights = np.maximum(np.take_along_axis(sims, top, axis=1), 0.0) + 1e-6
    votes = np.zeros((len(sims), n_classes), dtype=np.float64)
    np.add.at(votes, (np.arange(len(sims))[:, None], labels[top]), weights)
    return votes / votes.sum(axis=1, keepdims=True)


def _fit_predict(
    x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, n_classes: int, settings: LabelSettings
) -> np.ndarray:
    """``(len(test), C)``: a logistic regression on ``train`` (indices) blended with a kNN vote among them."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=1000, C=settings.C)
    model.fit(x[train], y[train])
    p = np.zeros((len(test), n_classes))
    p[:, model.classes_] = model.predict_proba(x[test])
    if settings.knn > 0 and settings.knn_weight > 0:
        vote = _knn_vote(x[test] @ x[train].T, y[train], n_classes, settings.knn)
        p = (1 - settings.knn_weight) * p + settings.knn_weight * vote
    return p


def out_of_sample_probs(
    features: np.ndarray, y: np.ndarray, fold_of: np.ndarray, n_classes: int, settings: LabelSettings
) -> np.ndarray:
    """``(N, C)`` probabilities; row ``i`` comes only from images outside ``i``'s fold (and their labels).

    With ``settings.prune`` (confident learning's "prune, then fit again"), the model predicting fold
    ``f`` is fitted without the images cleanlab flags among the other folds — flagged from
    probabilities of models that saw neither fold ``f`` nor the judged image's own fold, so fold
    ``f``'s labels still take no part in predicting it.
    """
    from cleanlab.filter import find_label_issues
    from threadpoolctl import threadpool_limits

    x = _normalise(features)
    k = int(fold_of.max()) + 1
    folds = [np.flatnonzero(fold_of == f) for f in range(k)]
    probs = np.zeros((len(y), n_classes), dtype=np.float64)
    # One BLAS thread: these small fits ran ~30x slower with BLAS threads fighting for 2 busy cores.
    with threadpool_limits(limits=1, user_api="blas"):
        if not settings.prune or k < 3:
            for f in range(k):
                probs[folds[f]] = _fit_predict(
                    x, y, np.flatnonzero(fold_of != f), folds[f], n_classes, settings
                )
            return probs
        # inner[f][g]: fold g predicted by a model fitted on the folds other than f and g
        inner: dict[tuple[int, int], np.ndarray] = {}
        for f in range(k):
            for g in range(f + 1, k):
                train = np.flatnonzero((fold_of != f) & (fold_of != g))
                both = np.concatenate([folds[f], folds[g]])
                p = _fit_predict(x, y, train, both, n_classes, settings)
                inner[(g, f)], inner[(f, g)] = p[: len(folds[f])], p[len(folds[f]) :]
        for f in range(k):
            others = np.concatenate([folds[g] for g in range(k) if g != f])
            p_others = np.concatenate([inner[(f, g)] for g in range(k) if g != f])
            flagged = find_label_issues(y[others], p_others, filter_by="prune_by_noise_rate", n_jobs=1)
            keep = others[~np.asarray(flagged, dtype=bool)]
            probs[folds[f]] = _fit_predict(x, y, keep, folds[f], n_classes, settings)
    return probs


def rank_label_issues(
    y: np.ndarray, probs: np.ndarray, settings: LabelSettings, *, filter_by: str = "predicted_neq_given"
) -> tuple[np.ndarray, np.ndarray]:
    """``(flagged indices, most likely wrong first; label-quality score of every image)``.

    ``filter_by`` is cleanlab's ``find_label_issues`` filter deciding which images are flagged.
    """
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    quality = get_label_quality_scores(y, probs, method=settings.rank_by)  # (N,), low = likely wrong
    flagged = np.flatnonzero(find_label_issues(y, probs, filter_by=filter_by, n_jobs=1))
    order = flagged[np.lexsort((flagged, quality[flagged]))]  # ties broken by index: deterministic
    return order, quality


def confident_subset(y: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """``(N,)`` bool: cleanlab's stricter confident-learning filter (``prune_by_noise_rate``)."""
    from cleanlab.filter import find_label_issues

    return np.asarray(find_label_issues(y, probs, filter_by="prune_by_noise_rate", n_jobs=1), dtype=bool)


def outliers(features: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """``(flagged indices, most out of place first; outlier score of every image)`` (score 0–1, low = odd).

    ``k`` neighbours (cleanlab's default 10), fewer in a small set (a tenth of it, at least 2).
    """
    from cleanlab.outlier import OutOfDistribution

    x = _normalise(features)
    k = min(k, max(2, len(x) // 10))
    if len(x) <= k + 1:
        return np.zeros(0, dtype=np.int64), np.ones(len(x))
    ood = OutOfDistribution(params={"k": k})
    scores = ood.fit_score(features=x, verbose=False)  # exp(-mean cosine distance · t)
    distance = -np.log(np.maximum(scores, 1e-300))  # proportional to the mean distance again
    q1, q3 = np.percentile(distance, [25, 75])
    limit = q3 + (1 / 0.37037 - 1) * (q3 - q1)  # cleanlab Datalab's default outlier threshold
    flagged = np.flatnonzero(distance > limit)
    return flagged[np.argsort(scores[flagged], kind="stable")], scores


def out_of_place(
    features: np.ndarray, labels: Sequence[str], conflict_similarity: float | None
) -> list[tuple[str, int, float, int]]:
    """``(kind, index, score, other index or -1)``: outliers (most out of place first), then
    near-identical pairs with different labels (most alike first)."""
    order, scores = outliers(features)
    found = [("outlier", int(i), round(float(scores[i]), 4), -1) for i in order]
    if conflict_similarity is not None:
        for a, b, sim in near_conflicts(features, labels, conflict_similarity):
            found.append(("near_conflict", a, round(sim, 4), b))
    return found


def near_conflicts(
    features: np.ndarray, labels: Sequence[str], min_similarity: float
) -> list[tuple[int, int, float]]:
    """``(i, j, cosine similarity)`` of pairs at least ``min_similarity`` alike whose labels differ."""
    x = _normalise(features)
    lab = np.asarray(labels)
    block = max(1, 8_000_000 // max(len(x), 1))
    out: list[tuple[int, int, float]] = []
    for start in range(0, len(x), block):
        sim = x[start : start + block] @ x[start:].T  # (B, N - start)
        for i, j in zip(*np.nonzero(sim >= min_similarity), strict=True):
            a, b = start + int(i), start + int(j)
            if a < b and lab[a] != lab[b]:
                out.append((a, b, float(sim[i, j])))
    return sorted(out, key=lambda t: (-t[2], t[0], t[1]))


def label_issues(
    labels: Sequence[str],
    features: np.ndarray,
    *,
    folds: int,
    seed: int,
    filter_by: str,
    settings: LabelSettings,
) -> tuple[list[tuple[int, str, float, float, float, bool]], list[str]]:
    """Ranked ``(index, suggested, p(given), p(suggested), score, confident)`` and notes for the report.

    Skipped with a note when there is one class only or a class with a single image; fewer folds
    (and a note) when a class has fewer images than ``folds``.
    """
    names = sorted(set(labels))
    if len(names) < 2:
        only = f" ('{names[0]}')" if names else ""
        return [], [
            f"Label check skipped: every image carries the same label{only}, so there is nothing to "
            "compare a label with; the doctor can judge labels from two classes on."
        ]
    y = np.array([names.index(label) for label in labels])
    fold_of, k = assign_folds(y, folds, seed)
    counts = np.bincount(y, minlength=len(names))
    if k < 2:
        small = ", ".join(f"'{names[c]}'" for c in np.flatnonzero(counts < 2))
        return [], [f"Label check skipped: every class needs at least two images ({small} has one)."]
    notes = []
    if k < folds:
        small = ", ".join(f"'{names[c]}' ({counts[c]})" for c in np.flatnonzero(counts < folds))
        notes.append(
            f"Label check used {k} folds instead of {folds}: class {small} has fewer images than folds."
        )
    probs = out_of_sample_probs(features, y, fold_of, len(names), settings)  # (N, C)
    order, quality = rank_label_issues(y, probs, settings, filter_by=filter_by)
    strict = confident_subset(y, probs)
    out = []
    for i in order:
        best = int(probs[i].argmax())
        p_given, p_best = float(probs[i, y[i]]), float(probs[i, best])
        out.append((int(i), names[best], p_given, p_best, float(quality[i]), bool(strict[i])))
    return out, notes
