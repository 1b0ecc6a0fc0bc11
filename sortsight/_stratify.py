"""Iterative stratification of multi-label data (Sechidis, Tsoumakas & Vlahavas, ECML 2011).

The algorithm scikit-multilearn implements: the rarest tag first, each of its images goes to the
split that still wants the most images of that tag (ties: the split that wants the most images
overall, then a seeded coin). Images with no tag fill the splits last. A final pass makes sure
every tag with at least two images has one in each held-out split, moving one image from train
(never the last training image of any tag).

Example:
    >>> import numpy as np
    >>> y = np.array([[1, 0], [1, 0], [0, 1], [0, 1], [1, 1]], dtype=bool)
    >>> iterative_split(y, {"validation": 0.4}, seed=0).count("validation")
    2
"""

from __future__ import annotations

import random

import numpy as np

from sortsight.config import DEFAULT_SEED

__all__ = ["iterative_split"]


def iterative_split(y: np.ndarray, fractions: dict[str, float], *, seed: int = DEFAULT_SEED) -> list[str]:
    """The split name of every row of the ``(N, T)`` boolean tag matrix ``y``.

    Args:
        y: one row per image, one column per tag.
        fractions: ``{split name: fraction}`` for the held-out splits (e.g. ``{"validation": 0.2}``);
            the rest is ``"train"``.
        seed: the random seed (the same input and seed give the same split on every OS).

    Returns:
        A list of split names aligned with the rows of ``y``.
    """
    y = np.asarray(y, dtype=bool)
    n, _t = y.shape
    names = ["train", *fractions]
    ratios = np.array([1.0 - sum(fractions.values()), *fractions.values()])
    rng = random.Random(seed)
    want = ratios * n  # images each split still wants
    want_tag = np.outer(ratios, y.sum(0)).astype(float)  # (S, T) images of each tag it still wants
    assigned = np.full(n, -1)
    left = y.copy()
    order = list(range(n))
    rng.shuffle(order)

    def choose(scores: np.ndarray) -> int:
        best = np.flatnonzero(scores == scores.max())
        if len(best) > 1:
            best = best[want[best] == want[best].max()]
        return int(best[rng.randrange(len(best))] if len(best) > 1 else best[0])

    while left.any():
        counts = left.sum(0)
        rarest = int(np.flatnonzero(counts == counts[counts > 0].min())[0])
        for i in [i for i in order if left[i, rarest]]:
            s = choose(want_tag[:, rarest])
            assigned[i] = s
            want[s] -= 1
            want_tag[s, y[i]] -= 1
            left[i] = False
    for i in order:  # images with no tag
        if assigned[i] < 0:
            s = choose(want)
            assigned[i] = s
            want[s] -= 1
    _cover_held_out(y, assigned, len(names))
    return [names[s] for s in assigned]


def _cover_held_out(y: np.ndarray, assigned: np.ndarray, n_splits: int) -> None:
    """Move an image from train into each held-out split that lacks a tag, where train can spare one."""
    for s in range(1, n_splits):
        for tag in np.argsort(y.sum(0), kind="stable"):
            if y[assigned == s, tag].any():
                continue
            train = np.flatnonzero((assigned == 0) & y[:, tag])
            if len(train) < 2:
                continue
            in_train = y[assigned == 0].sum(0)
            spare = [i for i in train if (in_train[y[i]] >= 2).all()]
            if spare:  # the image that takes the fewest other tags away from train
                assigned[min(spare, key=lambda i: (int(y[i].sum()), int(i)))] = s
