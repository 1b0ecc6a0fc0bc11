"""The data doctor against the cleanlab + linear-probe reference: planted look-alike label errors.

Builds labelled sets whose errors sit between classes that look alike, plants them at 1 % and
5 % of the images, and runs, each in its own fresh process and one after the other in the same run:

1. **doctor** — ``sortsight check DATA --doctor`` (the whole command: scan and verify, image
   statistics and hashes, frozen EfficientNet-Lite0 features, out-of-sample probabilities,
   ranking), with an empty feature cache;
2. **reference** — the simplest confident-learning recipe: the same frozen Lite0 features
   (:func:`sortsight.features.extract_features`, no cache), ``cross_val_predict`` of a plain
   ``LogisticRegression(max_iter=1000)`` in 5 stratified folds, and cleanlab's
   ``find_label_issues(labels, probs, return_indices_ranked_by="self_confidence")``. It gets the
   same single BLAS thread as the doctor (with BLAS threads fighting for two loaded cores its fits
   were many times slower, which would flatter the doctor's time).

For each set × noise level it prints the planted errors found in the first 50 flags (recall@50),
precision@50, the whole-process wall time of each, and the CPU capability.

Sets (built into ``--work``, default a temporary folder):

- ``fashion`` — Debian's ``dataset-fashion-mnist`` (``apt-get install dataset-fashion-mnist``),
  all 10 classes, ``--per-class`` images each (150: 1,500 images, the set of issue 21); errors
  planted shirt↔t-shirt and pullover↔coat, evenly in the four directions.
- ``digits`` — the digits 0–9 rendered in the DejaVu and Liberation fonts Debian ships
  (``fonts-dejavu-core``, ``fonts-liberation``) with random size, shift, rotation, stroke, blur
  and noise, 64 px, ``--per-class`` each; errors planted among 3, 5 and 8 in all six directions.
- ``scans`` — the ``fashion`` images through the "different scanner" of ``benchmarks/sets.py``
  (resampled, rotated, lifted blacks, paper texture, blur, heavy JPEG: a degraded scan, where
  look-alike classes are harder to tell apart); errors planted as in ``fashion``. Not in the
  default ``--sets``: ``--sets scans``.

Usage::

    python benchmarks/doctor.py                       # both sets, 1 % and 5 %
    python benchmarks/doctor.py --sets digits --noise 0.05 --json doctor-bench.json
    python benchmarks/doctor.py --rankings            # compare ranking methods on the same features
    python benchmarks/doctor.py --rankings --draws 8  # ... over 8 draws of planted errors each
    python benchmarks/doctor.py --quick               # tiny smoke run (numbers mean nothing)
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

FASHION = Path("/usr/share/datasets/fashion-mnist")
FASHION_NAMES = [
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "boot",
]
FASHION_PAIRS = [("shirt", "t-shirt"), ("t-shirt", "shirt"), ("pullover", "coat"), ("coat", "pullover")]
DIGIT_PAIRS = [("3", "5"), ("5", "3"), ("3", "8"), ("8", "3"), ("5", "8"), ("8", "5")]
FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/truetype/liberation"))
TOP = 50
SEED = 42


# ----------------------------------------------------------------------------------------- sets
def _fashion_images(per_class: int, rng: np.random.Generator) -> dict[str, list[Any]]:
    from PIL import Image

    _need("dataset-fashion-mnist")
    with gzip.open(FASHION / "train-images-idx3-ubyte.gz") as fh:
        xs = np.frombuffer(fh.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(FASHION / "train-labels-idx1-ubyte.gz") as fh:
        ys = np.frombuffer(fh.read(), np.uint8, offset=8)
    out: dict[str, list[Any]] = {}
    for label, name in enumerate(FASHION_NAMES):
        idx = rng.permutation(np.flatnonzero(ys == label))[:per_class]
        out[name] = [Image.fromarray(xs[i]) for i in idx]
    return out


def _need(*packages: str) -> None:
    """Install the Debian packages a set is built from, as benchmarks/sets.py does (root only)."""
    from sets import SetError, ensure_packages  # benchmarks/sets.py

    try:
        ensure_packages(packages)
    except SetError as exc:
        sys.exit(str(exc))


def _fonts() -> list[Path]:
    _need("fonts-dejavu-core", "fonts-liberation")
    fonts = sorted(p for d in FONT_DIRS if d.is_dir() for p in d.glob("*.ttf") if "Math" not in p.name)
    if len(fonts) < 4:
        sys.exit("Too few fonts for the digits set: apt-get install fonts-dejavu-core fonts-liberation.")
    return fonts


def _digit(text: str, font_path: Path, rng: np.random.Generator, size: int = 64) -> Any:
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    font = ImageFont.truetype(str(font_path), int(rng.integers(30, 52)))
    ink, paper = int(rng.integers(0, 70)), int(rng.integers(185, 256))
    canvas = Image.new("L", (size * 2, size * 2), paper)
    draw = ImageDraw.Draw(canvas)
    x, y = size + rng.normal(0, 5), size + rng.normal(0, 5)
    draw.text((x, y), text, font=font, fill=ink, anchor="mm", stroke_width=int(rng.integers(0, 3)))
    canvas = canvas.rotate(float(rng.normal(0, 8)), resample=Image.Resampling.BILINEAR, fillcolor=paper)
    img = canvas.crop((size // 2, size // 2, size * 3 // 2, size * 3 // 2))
    img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 1.2))))
    arr = np.asarray(img, np.float32) + rng.normal(0, rng.uniform(2, 14), (size, size))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _digit_images(per_class: int, rng: np.random.Generator) -> dict[str, list[Any]]:
    fonts = _fonts()
    return {
        str(d): [_digit(str(d), fonts[int(rng.integers(len(fonts)))], rng) for _ in range(per_class)]
        for d in range(10)
    }


def _scan_images(per_class: int, rng: np.random.Generator) -> dict[str, list[Any]]:
    from sets import scanner  # benchmarks/sets.py: the "different scanner" of the shift benchmark

    return {
        name: [scanner(np.asarray(img), rng) for img in imgs]
        for name, imgs in _fashion_images(per_class, rng).items()
    }


BUILDERS = {
    "fashion": (_fashion_images, FASHION_PAIRS),
    "digits": (_digit_images, DIGIT_PAIRS),
    "scans": (_scan_images, FASHION_PAIRS),
}


def plant(labels: list[str], pairs: list[tuple[str, str]], n_errors: int, seed: int) -> list[str]:
    """The given labels: ``n_errors`` images of ``labels`` moved to a look-alike class, evenly over the
    directions of ``pairs``, drawn with ``seed``."""
    pick = random.Random(seed)
    given = list(labels)
    for k in range(n_errors):
        true, wrong = pairs[k % len(pairs)]
        free = [i for i, label in enumerate(labels) if label == true and given[i] == true]
        given[pick.choice(free)] = wrong
    return given


def build_set(name: str, noise: float, per_class: int, root: Path, seed: int = SEED) -> dict[str, str]:
    """Write ``root/<label>/*.png`` with ``noise`` × N planted errors; return ``{path: true label}``."""
    make, pairs = BUILDERS[name]
    rng = np.random.default_rng(seed)  # the same images at every noise level
    images = make(per_class, rng)
    flat = [(label, i, img) for label, imgs in images.items() for i, img in enumerate(imgs)]
    n_errors = max(1, round(noise * len(flat)))
    given = plant([label for label, _, _ in flat], pairs, n_errors, seed + int(noise * 1000))
    planted: dict[str, str] = {}
    for (label, i, img), label_given in zip(flat, given, strict=True):
        folder = root / label_given
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}_{label}_{i:04d}.png"  # the file name hides nothing from the doctor
        img.save(path)
        if label_given != label:
            planted[str(path.resolve())] = label
    return planted


# ------------------------------------------------------------------------------------ the tools
def _cpu() -> str:
    import torch

    load = os.getloadavg()[0]
    return f"cpu {torch.backends.cpu.get_cpu_capability()}, {os.cpu_count()} cores, load {load:.1f}"


def reference(data: Path, result: Path) -> None:
    """The reference recipe (run in its own process by :func:`main`); writes the ranked paths."""
    from cleanlab.filter import find_label_issues
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from threadpoolctl import threadpool_limits

    from sortsight.data import load_dataset
    from sortsight.features import extract_features

    ds = load_dataset(data)
    paths = [str(item.path.resolve()) for item in ds.items]
    names = sorted(set(ds.labels))
    y = np.array([names.index(item.label) for item in ds.items])
    feats = extract_features(paths, use_cache=False)
    cv = StratifiedKFold(n_splits=5, shuffle=True, random_state=SEED)
    with threadpool_limits(limits=1, user_api="blas"):
        probs = cross_val_predict(LogisticRegression(max_iter=1000), feats, y, cv=cv, method="predict_proba")
    ranked = find_label_issues(y, probs, return_indices_ranked_by="self_confidence")
    result.write_text(json.dumps([paths[i] for i in ranked]))


def _timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return seconds


def run_doctor(data: Path, out: Path, cache: Path) -> tuple[list[str], float]:
    env = {**os.environ, "SORTSIGHT_CACHE": str(cache)}
    seconds = _timed(
        [
            sys.executable,
            "-m",
            "sortsight",
            "check",
            str(data),
            "--doctor",
            "--doctor-out",
            str(out),
            "--json",
        ],
        env,
    )
    report = json.loads((out / "doctor.json").read_text())
    return [str(Path(i["path"]).resolve()) for i in report["label_issues"]], seconds


def run_reference(data: Path, out: Path) -> tuple[list[str], float]:
    out.mkdir(parents=True, exist_ok=True)
    result = out / "reference.json"
    seconds = _timed(
        [sys.executable, __file__, "--reference", str(data), "--result", str(result)], dict(os.environ)
    )
    return json.loads(result.read_text()), seconds


def score(flags: list[str], planted: dict[str, str]) -> dict[str, Any]:
    top = flags[:TOP]
    hits = sum(p in planted for p in top)
    return {
        "found@50": hits,
        "recall@50": round(hits / len(planted), 3),
        "precision@50": round(hits / max(1, len(top)), 3),
        "flags": len(flags),
        "found_all": sum(p in planted for p in flags),
    }


# ------------------------------------------------------------------------------------- rankings
def _features(data: Path, work: Path) -> tuple[list[str], np.ndarray]:
    """The images of ``data`` and their frozen features, stored in ``work`` once per set (the same
    images at every noise level)."""
    from sortsight.data import load_dataset
    from sortsight.features import extract_features

    os.environ["SORTSIGHT_CACHE"] = str(work / "rank-cache")
    paths = [str(item.path.resolve()) for item in load_dataset(data).items]
    store = work / f"features-{data.parent.name.split('-')[0]}.npz"
    names_of = [Path(p).name for p in paths]
    if store.is_file():
        saved = np.load(store)
        row = {n: i for i, n in enumerate(saved["names"])}
        return paths, saved["feats"][[row[n] for n in names_of]]
    feats = extract_features(paths)
    np.savez(store, names=np.array(names_of), feats=feats)
    return paths, feats


def methods_found(feats: np.ndarray, given: list[str], is_planted: np.ndarray) -> dict[str, int]:
    """Planted errors in the first 50 for the reference and each probe × ranking setting."""
    from cleanlab.filter import find_label_issues
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from threadpoolctl import threadpool_limits

    from sortsight._doctor_labels import LabelSettings, assign_folds, out_of_sample_probs, rank_label_issues

    names = sorted(set(given))
    y = np.array([names.index(label) for label in given])

    def found(order: Any) -> int:
        return int(is_planted[np.asarray(order[:TOP], dtype=int)].sum())

    methods: dict[str, int] = {}
    cv = StratifiedKFold(n_splits=5, shuffle=True, random_state=SEED)
    with threadpool_limits(limits=1, user_api="blas"):
        ref = cross_val_predict(LogisticRegression(max_iter=1000), feats, y, cv=cv, method="predict_proba")
    methods["reference"] = found(find_label_issues(y, ref, return_indices_ranked_by="self_confidence"))
    fold_of, _ = assign_folds(y, 5, SEED)
    base = LabelSettings()
    for prune in (False, True):
        for c in (2.0, 8.0):
            for w in (0.0, 0.3):
                settings = LabelSettings(C=c, knn_weight=w, prune=prune)
                probs = out_of_sample_probs(feats, y, fold_of, len(names), settings)
                for rank_by in ("self_confidence", "normalized_margin"):
                    order, _ = rank_label_issues(y, probs, LabelSettings(rank_by=rank_by))
                    tag = f"prune={prune} C={c:g} knn_weight={w:g} {rank_by}"
                    methods[tag] = found(order)
                    if (prune, c, w, rank_by) == (base.prune, base.C, base.knn_weight, base.rank_by):
                        methods["doctor default"] = methods[tag]
    return methods


def compare(
    data: Path, planted: dict[str, str], work: Path, name: str, draws: int = 1, seed: int = SEED
) -> dict[str, Any]:
    """Planted errors in the first 50 for each ranking method, on the same features and folds.

    With ``draws`` > 1 the errors are planted afresh ``draws`` times on the same images (in memory,
    as many errors between the same classes, drawn with seeds ``seed * 1000 + d``): the spread of
    one setting over draws shows how much of a margin is the luck of one draw.
    """
    from sortsight.data import load_dataset

    paths, feats = _features(data, work)
    given = [item.label for item in load_dataset(data).items]
    if draws <= 1:
        return {"methods": methods_found(feats, given, np.array([p in planted for p in paths]))}
    true = [planted.get(p, label) for p, label in zip(paths, given, strict=True)]
    per_draw: dict[str, list[int]] = {}
    for d in range(draws):
        labels = plant(true, BUILDERS[name][1], len(planted), seed * 1000 + d)
        found = methods_found(feats, labels, np.array([a != b for a, b in zip(labels, true, strict=True)]))
        for method, n in found.items():
            per_draw.setdefault(method, []).append(n)
    ref = np.array(per_draw["reference"])
    return {
        "methods": {m: round(float(np.mean(v)), 2) for m, v in per_draw.items()},
        "draws": per_draw,
        "margin_at_least_2": {m: int((np.array(v) - ref >= 2).sum()) for m, v in per_draw.items()},
    }


# ----------------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default="fashion,digits")
    parser.add_argument("--noise", default="0.01,0.05")
    parser.add_argument(
        "--per-class", type=int, default=None, help="images per class (fashion and scans 150, digits 100)"
    )
    parser.add_argument(
        "--work", type=Path, default=None, help="build the sets here (default: a temp folder)"
    )
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=SEED, help="which images and which planted errors")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rankings", action="store_true", help="compare ranking methods on the features")
    parser.add_argument(
        "--draws", type=int, default=1, help="with --rankings: plant the errors afresh this many times"
    )
    parser.add_argument("--reference", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reference:
        reference(args.reference, args.result)
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="doctor-bench-"))
    noises = [float(x) for x in args.noise.split(",")]
    rows: list[dict[str, Any]] = []
    print(f"[{_cpu()}]", flush=True)
    for name in args.sets.split(","):
        per_class = 12 if args.quick else args.per_class or (100 if name == "digits" else 150)
        for noise in noises:
            data = work / f"{name}-{noise:g}" / "data"
            if data.exists():
                import shutil

                shutil.rmtree(data)
            planted = build_set(name, noise, per_class, data, seed=args.seed)
            if args.rankings:
                found = compare(data, planted, work, name, args.draws, args.seed)
                row = {"set": name, "noise": noise, "planted": len(planted), **found}
                rows.append(row)
                best = max(row["methods"].items(), key=lambda kv: kv[1])
                mean = f" (mean of {args.draws} draws)" if args.draws > 1 else ""
                print(
                    f"{name:8s} noise {noise:.0%} ({len(planted)} planted){mean}: "
                    + ", ".join(
                        f"{k} {v}" for k, v in row["methods"].items() if k.startswith(("reference", "doctor"))
                    )
                    + f"; best {best[0]} {best[1]}",
                    flush=True,
                )
                if args.draws > 1:
                    ahead = row["margin_at_least_2"]
                    print(
                        f"  doctor default: {row['draws']['doctor default']} against the reference's "
                        f"{row['draws']['reference']}; reference + 2 or more in {ahead['doctor default']} of "
                        f"{args.draws} draws (best setting there: {max(ahead.values())})",
                        flush=True,
                    )
                continue
            cache = Path(tempfile.mkdtemp(prefix="cache-", dir=work))
            doc_flags, doc_s = run_doctor(data, work / f"{name}-{noise:g}" / "doctor", cache)
            ref_flags, ref_s = run_reference(data, work / f"{name}-{noise:g}" / "reference")
            row = {
                "set": name,
                "noise": noise,
                "images": per_class * 10,
                "planted": len(planted),
                "doctor": {**score(doc_flags, planted), "seconds": round(doc_s, 1)},
                "reference": {**score(ref_flags, planted), "seconds": round(ref_s, 1)},
            }
            row["margin@50"] = row["doctor"]["found@50"] - row["reference"]["found@50"]
            row["time_ratio"] = round(doc_s / ref_s, 2)
            rows.append(row)
            d, r = row["doctor"], row["reference"]
            print(
                f"{name:8s} noise {noise:.0%} ({len(planted)} planted of {row['images']}): "
                f"doctor {d['found@50']}/{len(planted)} in first 50 (p@50 {d['precision@50']:.2f}) "
                f"{d['seconds']:.0f} s | reference {r['found@50']}/{len(planted)} (p@50 "
                f"{r['precision@50']:.2f}) {r['seconds']:.0f} s | margin {row['margin@50']:+d}, "
                f"time x{row['time_ratio']:.2f}  [{_cpu()}]",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps({"cpu": _cpu(), "seed": args.seed, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
