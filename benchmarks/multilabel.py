"""Multi-label benchmark: sortsight's default training vs. a plain one-vs-rest probe, in one run.

The data is built from Debian's ``dataset-fashion-mnist`` package (``apt-get install
dataset-fashion-mnist``): each image is a 2×2 canvas holding 2–4 Fashion-MNIST items in random
cells (the rest black), upscaled to 112 px; its tags are the item classes in it. A labels file
(``image,labels`` with ``|``-separated tags) lists the training images; a separate set is the test.

Both contestants start from the same images and the same bundled EfficientNet-Lite0 at the same
input size, and are timed from image files to a fitted model:

- **default**: ``sortsight.train(TrainConfig(data_path=labels.csv))`` end to end (verify, split,
  features, tag head with cross-validated C / weighting / per-tag thresholds, save model folder,
  fine-tuning where it pays); ``--strategies auto,head,finetune,auto:90s`` runs each strategy
  (``:BUDGET`` adds a time budget) on the same data (the first is the one compared with the goal);
- **probe**: frozen pooled features (``extract_features``, no cache) of the same training images
  the run used, then scikit-learn ``OneVsRestClassifier(StandardScaler + LogisticRegression())``
  cut at 0.5.

Scored on the test images: micro-F1, macro-F1 and mAP. The goal (issue 18): micro-F1 at least
the probe's + 2 points in at most 1.5× its time.

    python benchmarks/multilabel.py --train 1000 --test 400
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import tempfile
import time
from pathlib import Path

import numpy as np

FASHION = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ("tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")


def _idx(name: str) -> np.ndarray:
    with gzip.open(FASHION / name, "rb") as fh:
        data = fh.read()
    if name.endswith("images-idx3-ubyte.gz"):
        return np.frombuffer(data, np.uint8, offset=16).reshape(-1, 28, 28)
    return np.frombuffer(data, np.uint8, offset=8)


def build(root: Path, n: int, *, seed: int, source: str) -> list[tuple[str, list[str]]]:
    """Write ``n`` composites under ``root/img`` and return ``[(relative path, tags)]``."""
    from PIL import Image

    images, labels = _idx(f"{source}-images-idx3-ubyte.gz"), _idx(f"{source}-labels-idx1-ubyte.gz")
    rng = random.Random(seed)
    (root / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        canvas = np.zeros((56, 56), np.uint8)
        cells = rng.sample(range(4), rng.randint(2, 4))
        tags = set()
        for cell in cells:
            k = rng.randrange(len(images))
            r, c = divmod(cell, 2)
            canvas[r * 28 : (r + 1) * 28, c * 28 : (c + 1) * 28] = images[k]
            tags.add(CLASSES[int(labels[k])])
        rel = f"img/{i:05d}.png"
        Image.fromarray(canvas).convert("RGB").resize((112, 112), Image.BICUBIC).save(root / rel)
        rows.append((rel, sorted(tags)))
    return rows


def scores(y: np.ndarray, s: np.ndarray, cuts: np.ndarray) -> dict[str, float]:
    from sortsight.tagmetrics import tag_metrics

    m = tag_metrics(y, s, cuts, CLASSES)["metrics"]
    return {k: round(m[k], 4) for k in ("f1_micro", "f1_macro", "map")}


def _ready_times(times: list[float], start: float):
    """A progress callback appending the seconds since ``start`` of each ``model_ready`` event."""

    def callback(event) -> None:
        if event.phase == "model_ready":
            times.append(time.perf_counter() - start)

    return callback


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=1000, help="labelled images (train + validation)")
    parser.add_argument("--test", type=int, default=400, help="test images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--strategies",
        default="auto",
        help="sortsight runs, comma-separated: auto (the default), head, finetune, each optionally "
        "with a time budget (auto:90s); each on the same data",
    )
    args = parser.parse_args()
    if not FASHION.is_dir():
        raise SystemExit("Needs Debian's dataset-fashion-mnist: apt-get install dataset-fashion-mnist")
    work = Path(tempfile.mkdtemp(prefix="sortsight-multilabel-"))
    os.environ["SORTSIGHT_CACHE"] = str(work / "cache")  # nothing cached from an earlier run

    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from sortsight.config import TrainConfig
    from sortsight.features import extract_features
    from sortsight.predict import Classifier
    from sortsight.train import train

    rows = build(work / "data", args.train, seed=args.seed, source="train")
    test = build(work / "test", args.test, seed=args.seed + 1, source="t10k")
    labels = work / "data" / "labels.csv"
    labels.write_text("image,labels\n" + "".join(f"{p},{'|'.join(t)}\n" for p, t in rows), encoding="utf-8")
    test_paths = [work / "test" / p for p, _ in test]
    y_test = np.array([[c in t for c in CLASSES] for _, t in test])
    print(
        f"CPU capability: {torch.backends.cpu.get_cpu_capability()}, threads: {torch.get_num_threads()}, "
        f"load average: {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{args.train} labelled + {args.test} test composites, {len(CLASSES)} tags, "
        f"{np.mean([len(t) for _, t in rows]):.2f} tags per image"
    )

    runs: dict[str, tuple[dict[str, float], float, dict]] = {}
    first_model: dict[str, float] = {}
    for strategy in [x.strip() for x in args.strategies.split(",") if x.strip()]:
        ready: list[float] = []  # when each model_ready event came: the first is the usable head
        start = time.perf_counter()
        name, _, budget = strategy.partition(":")  # auto:90s = strategy auto with a time budget
        config = TrainConfig(
            data_path=str(labels),
            out=str(work / f"run-{name}-{budget or 'none'}"),
            strategy=name,
            time_budget=budget or None,
        )
        result = train(config, progress=_ready_times(ready, start))
        t_run = time.perf_counter() - start
        first_model[strategy] = ready[0] if ready else t_run
        info = json.loads((result.run_dir / "sortsight.json").read_text(encoding="utf-8"))
        clf = Classifier.load(result.run_dir, engine="eager")
        s_run = clf.predict_proba([str(p) for p in test_paths])
        y_cols = [CLASSES.index(t) for t in clf.labels]
        runs[strategy] = (scores(y_test[:, y_cols], s_run, np.asarray(clf.thresholds)), t_run, info)
    default, t_default, info = next(iter(runs.values()))

    train_rel = info["data"]["splits"]["train"]  # the same training images the run fitted on
    tags_of = dict(rows)
    start = time.perf_counter()
    x = extract_features([work / "data" / r for r in train_rel], use_cache=False)
    y = np.array([[c in tags_of[r] for c in clf.labels] for r in train_rel])
    probe = OneVsRestClassifier(make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))).fit(x, y)
    t_probe = time.perf_counter() - start
    s_probe = probe.predict_proba(extract_features(test_paths, use_cache=False))
    plain = scores(y_test[:, y_cols], s_probe, np.full(len(clf.labels), 0.5))

    print(f"{'':18} {'micro-F1':>9} {'macro-F1':>9} {'mAP':>7} {'seconds':>8}")
    table = [(f"sortsight {k}", m, t) for k, (m, t, _) in runs.items()] + [("probe", plain, t_probe)]
    for name, m, t in table:
        print(f"{name:18} {m['f1_micro']:9.4f} {m['f1_macro']:9.4f} {m['map']:7.4f} {t:8.1f}")
    for k, (_, _, run_info) in runs.items():
        best = run_info["best"]
        print(
            f"sortsight {k}: kept {best['chosen']} (WiSE alpha {best['wise_alpha']}, "
            f"{best['epochs']} epochs, stopped: {best['stopped']}); "
            f"validation mAP {run_info['metrics']['map']:.4f}; first model (the tag head) saved and "
            f"usable after {first_model[k]:.1f} s = {first_model[k] / t_probe:.2f}x the probe's time"
        )
    gain = 100 * (default["f1_micro"] - plain["f1_micro"])
    print(
        f"{next(iter(runs))} - probe: {gain:+.1f} micro-F1 points in {t_default / t_probe:.2f}x "
        f"the probe's time (goal: >= +2.0 in <= 1.5x)"
    )
    print(
        f"head: C={info['engine']['C']}, class weighting {info['engine']['class_weight']}, "
        f"cross-validated mAP {info['engine']['cv_map']}"
    )
    print(
        f"default's features {info['engine']['features_seconds']} s, head {info['engine']['head_seconds']} s"
    )


if __name__ == "__main__":
    main()
