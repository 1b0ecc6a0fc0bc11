"""Head levers on frozen features: which logistic-regression recipe transfers to another source?

For each benchmark set of :mod:`sets`, the frozen Lite0 224-px features of the training and test
images (sortsight's own frozen pass: ONNX Runtime or eager, whichever it measures faster) and of
their mirror images are computed once; then every head recipe is fitted on the same features and
scored on the test images (which, except for ``fashion``, come from another source):

* ``probe`` — scikit-learn ``LogisticRegression(max_iter=2000)`` on the raw features of all
  training images (the baseline of ``shift.py``), and the same with flip TTA at test;
* ``head`` — sortsight's head: scaling and C chosen on a stratified 20 % validation split
  (seed 42), ``no refit`` = fitted on the other 80 %, ``refit`` = fitted again on all training
  images (the default), ``+tta`` = logits of the image and its mirror added;
* ``flip-aug`` — the head fitted on the features of the images *and* their mirrors;
* ``wide grid`` — the head with C in {0.003 … 3} instead of {0.01, 0.1, 1}.

Only the head changes between rows, so the differences are the levers' own. One split, one seed:
a difference of a point or so is within what another seed would move.

Usage::

    python benchmarks/head_levers.py --work bench-work --json head_levers.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import machine
from sets import DEFAULT_SETS, build


def features(root: Path) -> dict[str, np.ndarray]:
    """Pooled features of train/test images and of their mirrors, through sortsight's frozen pass."""
    from sortsight.config import TrainConfig
    from sortsight.training.frozen import FrozenPass
    from sortsight.training.run import build as build_model
    from sortsight.training.views import stream_eval

    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    _, data_config, split = build_model("efficientnet_lite0", None, TrainConfig(), classes)
    frozen = FrozenPass(split, data_config)
    out: dict[str, np.ndarray] = {}
    for part in ("train", "test"):
        paths = [str(f) for c in classes for f in sorted((root / part / c).iterdir())]
        labels = np.array([k for k, c in enumerate(classes) for _ in sorted((root / part / c).iterdir())])
        plain, mirror, kept = [], [], []
        for idx, pixels in stream_eval(paths, data_config, failed=[]):
            plain.append(frozen(pixels)[1].numpy())
            mirror.append(frozen(pixels.flip(3))[1].numpy())
            kept += idx
        out[part] = np.concatenate(plain).astype(np.float64)
        out[f"{part}_mirror"] = np.concatenate(mirror).astype(np.float64)
        out[f"{part}_y"] = labels[kept]
    return out


def levers(f: dict[str, np.ndarray]) -> dict[str, Any]:
    """Test accuracy of every recipe on the same features."""
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    from sortsight.training import head as H

    x, xm, y = f["train"], f["train_mirror"], f["train_y"]
    xt, xtm, yt = f["test"], f["test_mirror"], f["test_y"]
    k = int(y.max()) + 1

    def score(logits: np.ndarray) -> float:
        return round(float((logits.argmax(1) == yt).mean()), 4)

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a).float()

    r: dict[str, Any] = {}
    start = time.perf_counter()
    probe = LogisticRegression(max_iter=2000).fit(x, y)
    r["probe_fit_s"] = round(time.perf_counter() - start, 2)
    r["probe"] = score(probe.predict_log_proba(xt))
    r["probe +tta"] = score(probe.predict_log_proba(xt) + probe.predict_log_proba(xtm))
    tr, va = train_test_split(np.arange(len(y)), test_size=0.2, stratify=y, random_state=42)
    default_grid = H.C_GRID
    for label, grid in (("head", default_grid), ("wide grid", (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0))):
        H.C_GRID = grid
        try:
            start = time.perf_counter()
            fit, _ = H.fit_head(
                t(x[tr]), torch.from_numpy(y[tr]), t(x[va]), torch.from_numpy(y[va]), n_classes=k, seed=42
            )
            refit = H.refit_head(fit, t(x), torch.from_numpy(y), n_classes=k, seed=42)
            r[f"{label}_fit_s"] = round(time.perf_counter() - start, 2)
            r[f"{label}_choice"] = f"{fit.scaling} C={fit.C:g}"
            r[f"{label} no refit"] = score(x_logits(fit, xt))
            r[f"{label} refit"] = score(x_logits(refit, xt))
            r[f"{label} refit +tta"] = score(x_logits(refit, xt) + x_logits(refit, xtm))
            both, yy = np.concatenate([x[tr], xm[tr]]), np.concatenate([y[tr], y[tr]])
            fit2, _ = H.fit_head(
                t(both), torch.from_numpy(yy), t(x[va]), torch.from_numpy(y[va]), n_classes=k, seed=42
            )
            refit2 = H.refit_head(
                fit2,
                t(np.concatenate([x, xm])),
                torch.from_numpy(np.concatenate([y, y])),
                n_classes=k,
                seed=42,
            )
            r[f"{label} flip-aug refit"] = score(x_logits(refit2, xt))
            r[f"{label} flip-aug refit +tta"] = score(x_logits(refit2, xt) + x_logits(refit2, xtm))
        finally:
            H.C_GRID = default_grid
    return r


def x_logits(fit: Any, x: np.ndarray) -> np.ndarray:
    return np.asarray(x @ fit.weight.T + fit.bias)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default=",".join(DEFAULT_SETS))
    ap.add_argument("--work", default="bench-work")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    info = machine()
    print(f"[{info}]", flush=True)
    results: dict[str, Any] = {"machine": info, "sets": {}}
    for name in args.sets.split(","):
        root = build(name, Path(args.work) / "sets", scale=args.scale)
        start = time.perf_counter()
        f = features(root)
        row = {"features_s": round(time.perf_counter() - start, 1), **levers(f)}
        results["sets"][name] = row
        print(name, json.dumps(row), flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
    names = [k for k in next(iter(results["sets"].values())) if not k.endswith(("_s", "_choice"))]
    print("\n| recipe | " + " | ".join(results["sets"]) + " |")
    print("|---|" + "---|" * len(results["sets"]))
    for n in names:
        print(f"| {n} | " + " | ".join(f"{row[n]:.3f}" for row in results["sets"].values()) + " |")


if __name__ == "__main__":
    main()
