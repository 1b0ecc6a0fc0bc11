"""Rebuild the bundled sample dataset from Debian's ``dataset-fashion-mnist`` package.

    apt-get install dataset-fashion-mnist && python scripts/make_sample.py

Writes ``sortsight/sample/fashion/{train,test}/<class>/*.png`` and ``sortsight/sample/inbox/*.png``
(unlabelled images for the sort step). Fashion-MNIST is © Zalando SE, MIT licence.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

SOURCE = Path("/usr/share/datasets/fashion-mnist")
OUT = Path(__file__).resolve().parents[1] / "sortsight" / "sample"
CLASSES = {0: "t-shirt", 1: "trouser", 2: "pullover", 7: "sneaker", 8: "bag"}
PER_CLASS = {"train": 100, "test": 30}
INBOX = 50


def read_idx(name: str) -> np.ndarray:
    with gzip.open(SOURCE / name) as fh:
        data = fh.read()
    if name.find("labels") >= 0:
        return np.frombuffer(data, np.uint8, offset=8)
    return np.frombuffer(data, np.uint8, offset=16).reshape(-1, 28, 28)


def main() -> None:
    if (OUT / "fashion").exists():
        shutil.rmtree(OUT / "fashion")
    if (OUT / "inbox").exists():
        shutil.rmtree(OUT / "inbox")
    rng = np.random.default_rng(42)
    train_x, train_y = read_idx("train-images-idx3-ubyte.gz"), read_idx("train-labels-idx1-ubyte.gz")
    test_x, test_y = read_idx("t10k-images-idx3-ubyte.gz"), read_idx("t10k-labels-idx1-ubyte.gz")
    for split, (xs, ys) in {"train": (train_x, train_y), "test": (test_x, test_y)}.items():
        for label, name in CLASSES.items():
            idx = rng.permutation(np.flatnonzero(ys == label))[: PER_CLASS[split]]
            folder = OUT / "fashion" / split / name
            folder.mkdir(parents=True)
            for i in idx:
                Image.fromarray(xs[i]).save(folder / f"{name}_{i:05d}.png", optimize=True)
    # the inbox: test images not used above, of the same classes, unlabelled
    used = {p.stem.split("_")[-1] for p in (OUT / "fashion" / "test").rglob("*.png")}
    pool = [i for i in np.flatnonzero(np.isin(test_y, list(CLASSES))) if f"{i:05d}" not in used]
    (OUT / "inbox").mkdir(parents=True)
    for i in rng.permutation(pool)[:INBOX]:
        Image.fromarray(test_x[i]).save(OUT / "inbox" / f"item_{i:05d}.png", optimize=True)


if __name__ == "__main__":
    main()
