"""Starting from an unlabelled pile: index throughput, simulated assisted labelling, map methods.

    apt-get install dataset-fashion-mnist
    PYTHONPATH=. python benchmarks/labelling.py [--pool 2000] [--test 1000] [--out bench-labelling]

On a set made from Debian's Fashion-MNIST (10 classes, a balanced "pile" from the train split
and a held-out set from the test split, written as PNG files), in one run:

1. **Index throughput**: ``build_index`` over the pile vs ``sortsight predict``
   (``predict_paths``, a Lite0 model folder) over the same images, both on the ``auto`` engine
   after a warm-up (ONNX exports done first), in images per second.
2. **Simulated labelling**: a :class:`sortsight.labelling.LabelSession` labels the pile one
   image at a time with the true class, in the order the session asks for (uncertainty
   sampling) and in a random order. After every ``--every`` labels the head's accuracy on the
   held-out set is measured; the result is how many labels each order needs to reach 90 % of
   the accuracy the same head gets with every pile image labelled.
3. **Map methods**: UMAP (if installed) and PCA+t-SNE on the pile: seconds and the share of
   each image's 10 nearest map neighbours that have its class.

The CPU capability and the machine's load are printed: compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

SOURCE = Path("/usr/share/datasets/fashion-mnist")
NAMES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")


def read_idx(name: str) -> np.ndarray:
    with gzip.open(SOURCE / name) as fh:
        data = fh.read()
    if "labels" in name:
        return np.frombuffer(data, np.uint8, offset=8)
    return np.frombuffer(data, np.uint8, offset=16).reshape(-1, 28, 28)


def make_set(root: Path, split: str, count: int, seed: int) -> dict[str, str]:
    """``count`` balanced Fashion-MNIST images as flat PNGs (no class folders); returns name -> class."""
    from PIL import Image

    prefix = "train" if split == "train" else "t10k"
    xs, ys = read_idx(f"{prefix}-images-idx3-ubyte.gz"), read_idx(f"{prefix}-labels-idx1-ubyte.gz")
    rng = np.random.default_rng(seed)
    truth: dict[str, str] = {}
    root.mkdir(parents=True, exist_ok=True)
    for label in range(10):
        for i in rng.permutation(np.flatnonzero(ys == label))[: count // 10]:
            name = f"{split}_{i:05d}.png"
            Image.fromarray(xs[i]).save(root / name)
            truth[name] = NAMES[label]
    return truth


def truth_of(folder: Path, split: str) -> dict[str, str]:
    """name -> class of the images :func:`make_set` wrote (the number in the name is the row)."""
    ys = read_idx(f"{'train' if split == 'train' else 't10k'}-labels-idx1-ubyte.gz")
    return {p.name: NAMES[ys[int(p.stem.split("_")[1])]] for p in folder.glob("*.png")}


def throughput(pile: Path, work: Path) -> dict[str, float]:
    from sortsight._index_embed import load_embedder
    from sortsight.index import build_index
    from sortsight.model_folder import save_model_folder
    from sortsight.models import create_model
    from sortsight.predict import Classifier, collect_paths, predict_paths

    model, config = create_model("efficientnet_lite0", list(NAMES))
    folder = save_model_folder(model, list(NAMES), config, work / "model", name="efficientnet_lite0")
    clf = Classifier.load(folder)  # warm-up: the ONNX export happens here, not in the timing
    load_embedder("efficientnet_lite0", 224)  # likewise for the index's headless backbone
    paths = collect_paths([pile])
    start = time.perf_counter()
    summary = build_index(pile, work / "pile.index")
    index_s = time.perf_counter() - start
    start = time.perf_counter()
    predict_paths(clf, paths, work / "predictions.csv")
    predict_s = time.perf_counter() - start
    return {
        "images": len(paths),
        "index_engine": summary.engine,
        "predict_engine": clf.engine.name,
        "index_images_per_s": round(len(paths) / index_s, 1),
        "predict_images_per_s": round(len(paths) / predict_s, 1),
        "index_vs_predict": round(predict_s / index_s, 2),
    }


def simulate(
    index_dir: Path,
    truth: dict[str, str],
    test: np.ndarray,
    test_y: list[str],
    every: int,
    seed: int,
    work: Path,
    limit: int,
) -> dict:
    from sortsight.labelling import LabelSession

    def accuracy(session: LabelSession) -> float:
        return float(np.mean([a == b for a, b in zip(session.classify(test), test_y, strict=True)]))

    full = LabelSession(work / "full", index=index_dir, refit_every=10**9)
    names = [truth[p] for p in full.index.relative_paths]
    full.labels = dict(enumerate(names))
    full.classes = list(NAMES)
    full.refit()
    full_acc = accuracy(full)
    curves: dict[str, list[tuple[int, float]]] = {}
    fit_ms: dict[str, float] = {}
    for order in ("uncertain", "random"):
        folder = work / f"sim-{order}"
        shutil.rmtree(folder, ignore_errors=True)
        session = LabelSession(folder, index=index_dir, refit_every=every)
        for name in NAMES:
            session.add_class(name)
        rng = np.random.default_rng(seed)
        shuffled = [int(i) for i in rng.permutation(len(names))]
        curve: list[tuple[int, float]] = []
        fit_times: list[float] = []
        while len(session.labels) < min(limit, len(names)):
            if order == "uncertain":
                batch = [s.position for s in session.next(every)]
            else:
                batch = [p for p in shuffled if p not in session.labels][:every]
            for pos in batch:
                session.label(pos, names[pos])
            fit_times.append(session.fit_seconds)
            if session.probs is not None:
                curve.append((len(session.labels), accuracy(session)))
                if curve[-1][1] >= 0.9 * full_acc:
                    break
        curves[order] = curve
        fit_ms[order] = round(1000 * float(np.median(fit_times)), 1)
    needed = {
        order: next((n for n, acc in curves[order] if acc >= 0.9 * full_acc), None)
        for order in ("uncertain", "random")
    }
    return {
        "full_data_accuracy": round(full_acc, 4),
        "target": round(0.9 * full_acc, 4),
        "labels_needed": needed,
        "head_refit_ms_median": fit_ms,
        "curves": curves,
    }


def maps(index_dir: Path, truth: dict[str, str]) -> dict:
    import importlib.util

    from sklearn.neighbors import NearestNeighbors

    from sortsight.collection_map import compute_map
    from sortsight.index import load_index

    index = load_index(index_dir)
    y = np.array([truth[p] for p in index.relative_paths])
    out = {}
    methods = ["tsne"] + (["umap"] if importlib.util.find_spec("umap") else [])
    for method in methods:
        for cached in index_dir.glob(f"map-{method}.npz"):
            cached.unlink()
        start = time.perf_counter()
        cmap = compute_map(index, method=method)
        seconds = time.perf_counter() - start
        _, nn = NearestNeighbors(n_neighbors=11).fit(cmap.xy).kneighbors(cmap.xy)
        agree = float(np.mean(y[nn[:, 1:]] == y[:, None]))
        out[method] = {"seconds": round(seconds, 1), "knn10_same_class": round(agree, 3)}
    return out


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, default=2000, help="images in the unlabelled pile")
    parser.add_argument("--test", type=int, default=1000, help="held-out images")
    parser.add_argument("--every", type=int, default=10, help="labels between measurements (and refits)")
    parser.add_argument("--limit", type=int, default=1000, help="stop a simulation after this many labels")
    parser.add_argument("--out", type=Path, default=Path("bench-labelling"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reuse", action="store_true", help="rerun only the simulation on the sets of --out")
    args = parser.parse_args()
    if not SOURCE.is_dir():
        raise SystemExit(f"{SOURCE} is missing: apt-get install dataset-fashion-mnist")
    print(
        f"CPU capability: {torch.backends.cpu.get_cpu_capability()}, cores: {os.cpu_count()}, "
        f"load average: {os.getloadavg()[0]:.1f}, torch threads: {torch.get_num_threads()}"
    )
    from sortsight.index import build_index, load_index

    result: dict = {}
    if args.reuse and (args.out / "test.index").is_dir():  # only the simulation, on the indexes made before
        truth, test_truth = truth_of(args.out / "pile", "train"), truth_of(args.out / "test", "test")
    else:
        shutil.rmtree(args.out, ignore_errors=True)
        truth = make_set(args.out / "pile", "train", args.pool, args.seed)
        test_truth = make_set(args.out / "test", "test", args.test, args.seed)
        result["throughput"] = throughput(args.out / "pile", args.out)
        print(json.dumps(result["throughput"]))
        build_index(args.out / "test", args.out / "test.index")
    test_index = load_index(args.out / "test.index")
    test_y = [test_truth[p] for p in test_index.relative_paths]
    sim = simulate(
        args.out / "pile.index",
        truth,
        test_index.vectors(),
        test_y,
        args.every,
        args.seed,
        args.out,
        args.limit,
    )
    result["labelling"] = sim
    print(json.dumps({k: v for k, v in sim.items() if k != "curves"}))
    for order in ("uncertain", "random"):
        print(
            order,
            "labels -> held-out accuracy:",
            ", ".join(f"{n}:{a:.3f}" for n, a in sim["curves"][order][::5]),
        )
    if not args.reuse:
        result["maps"] = maps(args.out / "pile.index", truth)
        print(json.dumps(result["maps"]))
    result["load_average_end"] = round(os.getloadavg()[0], 1)
    written = args.out / ("result-reuse.json" if args.reuse else "result.json")
    written.write_text(json.dumps(result, indent=1))
    print(f"load average at the end: {result['load_average_end']}; full result: {written}")


if __name__ == "__main__":
    main()
