"""Lite0 + Lite2 features concatenated: does a second bundled backbone pay for its cost?

For each benchmark set of :mod:`sets`, the frozen pooled features of the training and test images
are computed once per backbone through sortsight's own frozen pass (ONNX Runtime or eager, whichever
it measures faster): EfficientNet-Lite0 at 224 px (1,280 features) and Lite2 at its own 260 px
(1,280). Then the same two heads are fitted on Lite0, on Lite2 and on both side by side:

* ``probe`` — scikit-learn ``LogisticRegression(max_iter=2000)`` on the raw features of all
  training images (the baseline of ``shift.py``);
* ``head`` — sortsight's head: scaling and C chosen on a stratified 20 % validation split
  (seed 42), then refit on all training images (the default).

It prints test accuracy (only ``fashion`` is in-distribution) and each backbone's feature time, so
the lever's accuracy can be set against its cost: the concatenation costs both passes.

Usage::

    python benchmarks/concat_features.py --work bench-work --json concat.json
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from head_levers import features, over_sets, print_seconds

BACKBONES = ("efficientnet_lite0", "efficientnet_lite2")


def timed_features(
    row: dict[str, Any], key: str, root: Path, model: str, size: int | None = None
) -> dict[str, np.ndarray]:
    """:func:`head_levers.features` without mirrors, its wall time in seconds put in ``row[key]``."""
    start = time.perf_counter()
    f = features(root, model, mirror=False, size=size)
    row[key] = round(time.perf_counter() - start, 1)
    return f


def scores(f: dict[str, np.ndarray], label: str) -> dict[str, float]:
    """Test accuracy of the probe and of sortsight's head on one feature matrix, as
    ``{"probe LABEL": ..., "head LABEL": ...}``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    from sortsight.training.head import fit_head, refit_head

    probe = LogisticRegression(max_iter=2000).fit(f["train"].astype(np.float64), f["train_y"])
    out = {"probe": float((probe.predict(f["test"].astype(np.float64)) == f["test_y"]).mean())}
    x, y = torch.from_numpy(f["train"]), torch.from_numpy(f["train_y"])
    tr, va = train_test_split(np.arange(len(y)), test_size=0.2, stratify=f["train_y"], random_state=42)
    fit, _ = fit_head(x[tr], y[tr], x[va], y[va], n_classes=int(y.max()) + 1, seed=42)
    refit = refit_head(fit, x, y, n_classes=int(y.max()) + 1, seed=42)
    logits = refit.logits(torch.from_numpy(f["test"]))
    out["head"] = float((logits.argmax(1).numpy() == f["test_y"]).mean())
    return {f"{k} {label}": round(v, 4) for k, v in out.items()}


def main() -> None:
    def row_of(root: Path) -> dict[str, Any]:
        row: dict[str, Any] = {}
        feats = {model: timed_features(row, f"{model}_features_s", root, model) for model in BACKBONES}
        a, b = (feats[m] for m in BACKBONES)
        if not (np.array_equal(a["train_y"], b["train_y"]) and np.array_equal(a["test_y"], b["test_y"])):
            raise SystemExit(f"{root.name}: the two passes kept different images")
        both = {**a, "train": np.hstack([a["train"], b["train"]]), "test": np.hstack([a["test"], b["test"]])}
        for label, f in (("lite0", a), ("lite2", b), ("lite0+lite2", both)):
            row.update(scores(f, label))
        return row

    results = over_sets(__doc__ or "", row_of)
    print_seconds(results["sets"], [f"{model}_features_s" for model in BACKBONES])


if __name__ == "__main__":
    main()
