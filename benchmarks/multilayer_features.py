"""Features from every stage of Lite0, not only the last: does a wider probe transfer better?

Head2Toe (Evci et al., ICML 2022) reports that a linear head on pooled features of the
intermediate layers transfers better than one on the last layer, most of all to data unlike the
pretraining data. This measures that lever on the benchmark sets of :mod:`sets`, for the cost of
the same single forward pass: EfficientNet-Lite0 at 224 px (eager PyTorch; timm's
``forward_intermediates``), the average-pooled output of each of its seven stages (16 + 24 + 40 +
80 + 112 + 192 + 320 channels) beside the usual 1,280 pooled features of the last layer.

Feature sets, each scored with the plain probe (``LogisticRegression(max_iter=2000)`` on all
training images, the baseline of ``shift.py``) and with sortsight's head (scaling and C chosen on a
stratified 20 % validation split, seed 42, then refit on all training images):

* ``last`` — the 1,280 pooled features (what sortsight uses today);
* ``last+late`` — plus stages 5-7 (624 more);
* ``all`` — plus all seven stages (784 more).

Stage features are standardised per block to the last layer's overall scale before they are
joined, so no block dominates by magnitude alone. Prints test accuracy per set.

Usage::

    python benchmarks/multilayer_features.py --work bench-work --json multilayer.json
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from concat_features import scores
from head_levers import over_sets


def stage_features(root: Path) -> dict[str, Any]:
    """Pooled features of every stage and of the last layer, for train and test images."""
    from sortsight.config import TrainConfig
    from sortsight.geometry import normalize
    from sortsight.training.run import build as build_model
    from sortsight.training.views import stream_eval

    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    model, data_config, _ = build_model("efficientnet_lite0", None, TrainConfig(), classes)
    net = model.timm_model if hasattr(model, "timm_model") else model
    net.eval()
    out: dict[str, Any] = {}
    with torch.inference_mode():
        for part in ("train", "test"):
            items = [(str(f), k) for k, c in enumerate(classes) for f in sorted((root / part / c).iterdir())]
            paths, labels = [p for p, _ in items], np.array([k for _, k in items])
            stages: list[list[torch.Tensor]] = []
            last, kept = [], []
            for idx, pixels in stream_eval(paths, data_config, failed=[]):
                final, inter = net.forward_intermediates(normalize(pixels, data_config))
                last.append(net.forward_head(final, pre_logits=True))
                pooled = [t.mean((2, 3)) for t in inter]
                stages = stages or [[] for _ in pooled]
                for s, p in zip(stages, pooled, strict=True):
                    s.append(p)
                kept += idx
            out[part] = torch.cat(last).numpy()
            out[f"{part}_stages"] = [torch.cat(s).numpy() for s in stages]
            out[f"{part}_y"] = labels[kept]
    return out


def joined(f: dict[str, Any], which: list[int]) -> dict[str, np.ndarray]:
    """The last layer's features with the chosen stages, each block scaled to the last's overall std."""
    scale = float(f["train"].std())
    parts_train, parts_test = [f["train"]], [f["test"]]
    for i in which:
        a, b = f["train_stages"][i], f["test_stages"][i]
        mu, sd = a.mean(0), a.std() + 1e-6
        parts_train.append((a - mu) / sd * scale)
        parts_test.append((b - mu) / sd * scale)
    return {
        "train": np.hstack(parts_train).astype(np.float32),
        "test": np.hstack(parts_test).astype(np.float32),
        "train_y": f["train_y"],
        "test_y": f["test_y"],
    }


def main() -> None:
    def row_of(root: Path) -> dict[str, Any]:
        start = time.perf_counter()
        f = stage_features(root)
        row: dict[str, Any] = {"features_s (eager)": round(time.perf_counter() - start, 1)}
        n = len(f["train_stages"])
        for label, which in (("last", []), ("last+late", list(range(n - 3, n))), ("all", list(range(n)))):
            row.update(scores(joined(f, which), label))
        return row

    over_sets(__doc__ or "", row_of, skip=("_s", "(eager)"))


if __name__ == "__main__":
    main()
