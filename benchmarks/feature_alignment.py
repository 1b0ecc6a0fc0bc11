"""Feature-statistics alignment: does matching the new images' feature statistics to the training
images' help a linear probe on images from another source?

A transductive lever (it needs the new images as a batch, and their class mix moves their
statistics too), measured before deciding whether predict should offer it. For each benchmark set
of :mod:`sets`, the frozen Lite0 224-px features of the training and test images (sortsight's own
frozen pass, as in :mod:`head_levers`) are computed once; then a plain probe
(``LogisticRegression(max_iter=2000)``, C = 1, all training images) is scored on the test images:

* ``probe`` — raw features (the baseline of ``shift.py``);
* ``mean align`` — test features shifted so that their mean is the training mean;
* ``z own stats`` — each side standardised per feature by its own mean and spread (an AdaBN-like
  re-normalisation at the feature level);
* ``z train stats`` — both sides standardised by the training statistics (the usual probe scaling);
* ``pca256`` / ``pca256 coral`` — 256 principal components of the training features, then CORAL
  (test covariance whitened and re-coloured with the training covariance).

One split, one seed: a point or so is within what another seed would move.

Usage::

    python benchmarks/feature_alignment.py --work bench-work --json alignment.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from head_levers import features
from peers import machine
from sets import DEFAULT_SETS, build


def _sqrtm(cov: np.ndarray, *, inverse: bool = False) -> np.ndarray:
    w, v = np.linalg.eigh(cov)
    w = np.clip(w, 1e-9, None)
    return (v * w ** (-0.5 if inverse else 0.5)) @ v.T


def _cov(z: np.ndarray) -> np.ndarray:
    c = np.cov(z, rowvar=False)
    return c + np.eye(len(c)) * 1e-3 * np.trace(c) / len(c)  # a little shrinkage: 256-d from ~1,000 rows


def recipes(f: dict[str, np.ndarray]) -> dict[str, float]:
    """Test accuracy of the probe under each alignment recipe."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression

    xtr, ytr, xte, yte = f["train"], f["train_y"], f["test"], f["test_y"]

    def score(a: np.ndarray, b: np.ndarray) -> float:
        return float((LogisticRegression(max_iter=2000).fit(a, ytr).predict(b) == yte).mean())

    mu_tr, mu_te = xtr.mean(0), xte.mean(0)
    sd_tr, sd_te = xtr.std(0) + 1e-6, xte.std(0) + 1e-6
    pca = PCA(256, random_state=0).fit(xtr)
    a, b = pca.transform(xtr), pca.transform(xte)
    coral = (b - b.mean(0)) @ _sqrtm(_cov(b), inverse=True) @ _sqrtm(_cov(a)) + a.mean(0)
    return {
        "probe": score(xtr, xte),
        "mean align": score(xtr, xte - mu_te + mu_tr),
        "z own stats": score((xtr - mu_tr) / sd_tr, (xte - mu_te) / sd_te),
        "z train stats": score((xtr - mu_tr) / sd_tr, (xte - mu_tr) / sd_tr),
        "pca256": score(a, b),
        "pca256 coral": score(a, coral),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="bench-work", help="folder for the sets (cached)")
    parser.add_argument("--sets", default=",".join(DEFAULT_SETS), help="comma-separated set names")
    parser.add_argument("--json", dest="json_out", help="write the figures to this JSON file")
    args = parser.parse_args()
    info = machine()
    print(
        f"CPU capability {info['cpu_capability']} | {info['cores']} cores | torch {info['torch']} | "
        f"{info['cpu']} | load {os.getloadavg()[0]:.1f}"
    )
    table: dict[str, dict[str, Any]] = {}
    for name in [s.strip() for s in args.sets.split(",") if s.strip()]:
        table[name] = recipes(features(build(name, Path(args.work).resolve() / "sets"), mirror=False))
        base = table[name]["probe"]
        cells = " | ".join(f"{k} {v:.3f} ({100 * (v - base):+.1f})" for k, v in table[name].items())
        print(f"{name:8s} {cells}", flush=True)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"machine": info, "sets": table}, indent=2) + "\n")


if __name__ == "__main__":
    main()
