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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import machine
from sets import DEFAULT_SETS, build


def features(
    root: Path, model: str = "efficientnet_lite0", *, mirror: bool = True, size: int | None = None
) -> dict[str, np.ndarray]:
    """Pooled features of train/test images (and of their mirrors), through sortsight's frozen pass;
    ``size`` is the input side in pixels (the model's own by default)."""
    from sortsight.config import TrainConfig
    from sortsight.training.frozen import FrozenPass
    from sortsight.training.run import build as build_model
    from sortsight.training.views import stream_eval

    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    _, data_config, split = build_model(model, size, TrainConfig(), classes)
    images = sum(1 for part in ("train", "test") for f in (root / part).rglob("*") if f.is_file())
    frozen = FrozenPass(split, data_config, images=images)  # the engine is chosen for all of them
    out: dict[str, np.ndarray] = {}
    for part in ("train", "test"):
        items = [(str(f), k) for k, c in enumerate(classes) for f in sorted((root / part / c).iterdir())]
        paths, labels = [p for p, _ in items], np.array([k for _, k in items])
        plain, mirrored, kept = [], [], []
        for idx, pixels in stream_eval(paths, data_config, failed=[]):
            plain.append(frozen(pixels)[1])
            if mirror:
                mirrored.append(frozen(pixels.flip(3))[1])
            kept += idx
        out[part] = torch.cat(plain).numpy()
        if mirror:
            out[f"{part}_mirror"] = torch.cat(mirrored).numpy()
        out[f"{part}_y"] = labels[kept]
    return out


def levers(f: dict[str, np.ndarray]) -> dict[str, Any]:
    """Test accuracy of every recipe on the same features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    from sortsight.training.head import C_GRID, fit_head, refit_head

    x, xm, y = (torch.from_numpy(f[k]) for k in ("train", "train_mirror", "train_y"))
    xt, xtm, yt = (torch.from_numpy(f[k]) for k in ("test", "test_mirror", "test_y"))
    k = int(y.max()) + 1

    def score(logits: torch.Tensor) -> float:
        return round(float((logits.argmax(1) == yt).double().mean()), 4)

    r: dict[str, Any] = {}
    start = time.perf_counter()
    probe = LogisticRegression(max_iter=2000).fit(f["train"].astype(np.float64), f["train_y"])
    r["probe_fit_s"] = round(time.perf_counter() - start, 2)
    r["probe"] = score(torch.from_numpy(probe.predict_log_proba(f["test"].astype(np.float64))))
    r["probe +tta"] = score(
        torch.from_numpy(probe.predict_log_proba(f["test"].astype(np.float64)))
        + torch.from_numpy(probe.predict_log_proba(f["test_mirror"].astype(np.float64)))
    )
    tr, va = train_test_split(np.arange(len(y)), test_size=0.2, stratify=f["train_y"], random_state=42)
    tr, va = torch.from_numpy(tr), torch.from_numpy(va)
    for label, grid in (("head", C_GRID), ("wide grid", (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0))):
        for recipe, (x_fit, y_fit, x_all, y_all) in (
            ("", (x[tr], y[tr], x, y)),
            (" flip-aug", (torch.cat([x[tr], xm[tr]]), y[tr].repeat(2), torch.cat([x, xm]), y.repeat(2))),
        ):
            start = time.perf_counter()
            fit, _ = fit_head(x_fit, y_fit, x[va], y[va], n_classes=k, seed=42, grid=grid)
            refit = refit_head(fit, x_all, y_all, n_classes=k, seed=42)
            r[f"{label}{recipe}_fit_s"] = round(time.perf_counter() - start, 2)
            r[f"{label}{recipe}_choice"] = f"{fit.scaling} C={fit.C:g}"
            if not recipe:
                r[f"{label} no refit"] = score(fit.logits(xt))
            r[f"{label}{recipe} refit"] = score(refit.logits(xt))
            r[f"{label}{recipe} refit +tta"] = score(refit.logits(xt) + refit.logits(xtm))
    return r


def over_sets(
    doc: str, row_of: Callable[[Path], dict[str, Any]], *, skip: tuple[str, ...] = ("_s",)
) -> dict[str, Any]:
    """The command line every feature benchmark shares: ``--sets --work --scale --json``; builds
    each set, prints ``row_of(set folder)`` as it comes (and keeps the JSON file up to date), then
    the Markdown table of every row; returns the results."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--sets", default=",".join(DEFAULT_SETS))
    ap.add_argument("--work", default="bench-work")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    info = machine()
    print(f"[{info}]", flush=True)
    results: dict[str, Any] = {"machine": info, "sets": {}}
    for name in args.sets.split(","):
        row = row_of(build(name, Path(args.work) / "sets", scale=args.scale))
        results["sets"][name] = row
        print(name, json.dumps(row), flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print_table(results["sets"], skip=skip)
    return results


def main() -> None:
    def row_of(root: Path) -> dict[str, Any]:
        start = time.perf_counter()
        f = features(root)
        return {"features_s": round(time.perf_counter() - start, 1), **levers(f)}

    over_sets(__doc__ or "", row_of, skip=("_s", "_choice"))


def print_table(sets: dict[str, dict[str, Any]], *, skip: tuple[str, ...] = ("_s",)) -> None:
    """A Markdown table: one row per recipe (every key not ending in ``skip``), one column per set."""
    names = [k for k in next(iter(sets.values())) if not k.endswith(skip)]
    print("\n| recipe | " + " | ".join(sets) + " |")
    print("|---|" + "---|" * len(sets))
    for n in names:
        print(f"| {n} | " + " | ".join(f"{row[n]:.3f}" for row in sets.values()) + " |")


def print_seconds(sets: dict[str, dict[str, Any]], keys: list[str]) -> None:
    """The Markdown rows of the timing figures ``keys`` (seconds, one column per set) under the table."""
    for key in keys:
        print(f"| {key} | " + " | ".join(f"{row[key]:.0f}" for row in sets.values()) + " |")


if __name__ == "__main__":
    main()
