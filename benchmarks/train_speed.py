"""Training speed: a plain fp32 timm/PyTorch fine-tune loop against ``sortsight.train`` defaults.

One run, same model (bundled EfficientNet-Lite0 ImageNet weights), same data and split, same
machine. Prints train images/s, wall time, validation accuracy and time-to-accuracy of both, as
ratios, plus the logistic-regression head on frozen 224-px features — the floor sortsight's
default must not fall below — with the CPU capability beside every figure.

    python benchmarks/train_speed.py                      # the bundled Fashion-MNIST sample
    python benchmarks/train_speed.py --data photos/       # your own folder
    python benchmarks/train_speed.py --generated 60       # generated images, 60 per class
    python benchmarks/train_speed.py --quick              # a smoke run (tiny, minutes)

Run it on an idle machine: other processes skew every number.
"""

from __future__ import annotations

import argparse
import math
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]


def _cpu() -> str:
    from sortsight.training.precision import _cpu_has_fast_bf16, cpu_capability

    bf16 = "yes" if _cpu_has_fast_bf16() else "no"
    return f"[cpu {cpu_capability()}, native bf16 {bf16}, {torch.get_num_threads()} threads]"


def _generate(root: Path, per_class: int, size: int = 96) -> Path:
    """Colour/shape classes with noise (a quick stand-in when no real data is at hand)."""
    from PIL import Image, ImageDraw

    colours = [(220, 40, 40), (40, 160, 60), (40, 70, 220), (230, 200, 40)]
    for ci, colour in enumerate(colours):
        (root / f"class{ci}").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            rng = random.Random(ci * 100003 + i)
            img = Image.new("RGB", (size, size), tuple(rng.randint(0, 90) for _ in range(3)))  # type: ignore[arg-type]
            draw = ImageDraw.Draw(img)
            a, b = rng.randint(2, size // 3), rng.randint(size // 2, size - 3)
            c = tuple(max(0, min(255, v + rng.randint(-60, 60))) for v in colour)
            (draw.ellipse if ci % 2 == 0 else draw.rectangle)([a, a, b, b], fill=c)  # type: ignore[operator]
            img.save(root / f"class{ci}" / f"{i:04d}.png")
    return root


def plain_loop(
    train_items: list[Any],
    valid_items: list[Any],
    classes: list[str],
    *,
    epochs: int,
    image_size: int,
    batch_size: int,
    lr: float,
) -> dict[str, Any]:
    """The ordinary recipe: timm transforms, DataLoader, all layers trained in fp32, AdamW + cosine."""
    import timm.data
    from torch.utils.data import DataLoader, Dataset

    from sortsight.geometry import eval_transform
    from sortsight.images import open_image
    from sortsight.models import create_model

    index = {c: i for i, c in enumerate(classes)}
    model, dc = create_model("efficientnet_lite0", classes, input_size=image_size)
    train_tf = timm.data.create_transform(**dc.to_timm(), is_training=True)
    valid_tf = eval_transform(dc)

    class Items(Dataset):  # type: ignore[type-arg]
        def __init__(self, items: list[Any], tf: Any) -> None:
            self.items, self.tf = items, tf

        def __len__(self) -> int:
            return len(self.items)

        def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
            item = self.items[i]
            return self.tf(open_image(item.path)), index[item.label]

    g = torch.Generator().manual_seed(42)
    train_dl = DataLoader(Items(train_items, train_tf), batch_size=batch_size, shuffle=True, generator=g)
    valid_dl = DataLoader(Items(valid_items, valid_tf), batch_size=64)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    total = epochs * len(train_dl)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=0.1)
    history, train_seconds, start = [], 0.0, time.perf_counter()
    for epoch in range(epochs):
        model.train()
        t = time.perf_counter()
        for x, y in train_dl:
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad()
            sched.step()
        train_seconds += time.perf_counter() - t
        model.eval()
        right = n = 0
        with torch.no_grad():
            for x, y in valid_dl:
                right += int((model(x).argmax(1) == y).sum())
                n += len(y)
        history.append((time.perf_counter() - start, right / n))
        print(f"  plain epoch {epoch + 1}: val accuracy {right / n:.3f} at {history[-1][0]:.0f} s {_cpu()}")
    return {
        "seconds": time.perf_counter() - start,
        "train_images_per_s": epochs * len(train_items) / train_seconds,
        "accuracy": max(a for _, a in history),
        "history": history,
    }


def lr_head(train_items: list[Any], valid_items: list[Any], classes: list[str]) -> dict[str, float]:
    """Logistic regression on frozen 224-px pooled Lite0 features (features.py), the baseline."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from sortsight.features import extract_features

    start = time.perf_counter()
    xt = extract_features(
        [i.path for i in train_items], model="efficientnet_lite0", image_size=224, use_cache=False
    )
    xv = extract_features(
        [i.path for i in valid_items], model="efficientnet_lite0", image_size=224, use_cache=False
    )
    yt, yv = [i.label for i in train_items], [i.label for i in valid_items]
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=1000)).fit(xt, yt)
    return {
        "accuracy": float(np.mean(clf.predict(xv) == np.array(yv))),
        "seconds": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=str(ROOT / "sortsight" / "sample" / "fashion"))
    parser.add_argument("--generated", type=int, default=0, help="use N generated images per class instead")
    parser.add_argument("--plain-epochs", type=int, default=3)
    parser.add_argument("--plain-image-size", type=int, default=224)
    parser.add_argument("--plain-lr", type=float, default=5e-4)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run: 64 px, 1 epoch each")
    args = parser.parse_args()

    from sortsight.config import TrainConfig
    from sortsight.data import load_dataset
    from sortsight.train import train
    from sortsight.training.precision import set_threads

    set_threads()
    tmp = Path(tempfile.mkdtemp(prefix="sortsight-bench-"))
    data = _generate(tmp / "data", args.generated) if args.generated else Path(args.data)
    ds = load_dataset(data, valid_split=0.2, seed=42)
    train_items, valid_items, classes = ds.by_split("train"), ds.by_split("validation"), list(ds.classes)
    size = 64 if args.quick else args.plain_image_size
    epochs = 1 if args.quick else args.plain_epochs
    print(
        f"data: {data} — {len(train_items)} train / {len(valid_items)} validation images, "
        f"{len(classes)} classes"
    )
    print(f"machine: {_cpu()}")

    print("\n1. plain fp32 timm/PyTorch loop (all layers, DataLoader, decode + augment every epoch)")
    plain = plain_loop(
        train_items, valid_items, classes, epochs=epochs, image_size=size, batch_size=32, lr=args.plain_lr
    )

    print("\n2. sortsight default (cache → frozen trunk → LR head → fine-tune tail → keep the better)")
    events: list[Any] = []
    reached: list[tuple[float, float]] = []  # (seconds since start, validation accuracy of a model made then)
    start = time.perf_counter()

    def record(event: Any) -> None:
        events.append(event)
        if event.phase == "head" and "accuracy" in event.metrics:
            reached.append((time.perf_counter() - start, event.metrics["accuracy"]))
        if event.phase == "validate":
            reached.append((time.perf_counter() - start, event.metrics["val_accuracy"]))

    overrides: dict[str, Any] = {"image_size": 64, "epochs": 1} if args.quick else {}
    result = train(TrainConfig(data_path=str(data), out=str(tmp / "run"), **overrides), progress=record)
    ours_s = time.perf_counter() - start
    ours_acc = result.metrics["accuracy"]
    ours_ips = max(1, result.best.epochs) * len(train_items) / ours_s
    for e in events:
        if e.phase == "validate":
            print(f"  sortsight epoch {e.step}: val accuracy {e.metrics['val_accuracy']:.3f} {_cpu()}")
    print(f"  engine: {result.best.engine}")

    print("\n3. logistic-regression head on frozen 224-px features (features.py)")
    head = (
        lr_head(train_items, valid_items, classes)
        if not args.quick
        else {"accuracy": float("nan"), "seconds": 0}
    )

    target = plain["accuracy"]
    plain_tta = next((t for t, a in plain["history"] if a >= target), math.nan)
    # the first moment sortsight held a model (the head, or an epoch's weights) at the target accuracy
    ours_tta = next((t for t, a in reached if a >= target), math.nan)
    print("\n=== results", _cpu(), "===")
    print(
        f"plain fp32 loop : {plain['train_images_per_s']:7.1f} train img/s (training steps only), "
        f"{plain['seconds']:6.0f} s wall, best val accuracy {plain['accuracy']:.3f} {_cpu()}"
    )
    print(
        f"sortsight       : {ours_ips:7.1f} train img/s (end to end, incl. cache and features), "
        f"{ours_s:6.0f} s wall, val accuracy {ours_acc:.3f} ({result.best.chosen}) {_cpu()}"
    )
    print(f"LR head (224 px): val accuracy {head['accuracy']:.3f} in {head['seconds']:.0f} s {_cpu()}")
    print(f"sortsight head phase (its own LR head): val accuracy {result.best.head_metrics['accuracy']:.3f}")
    print(
        "speed ratio (sortsight end-to-end img/s / plain training img/s): "
        f"{ours_ips / plain['train_images_per_s']:.2f}x"
    )
    print(f"wall-time ratio (plain / sortsight): {plain['seconds'] / ours_s:.2f}x")
    print(
        f"time to accuracy {target:.3f} (first model at least that good on validation): "
        f"plain {plain_tta:.0f} s, sortsight {ours_tta:.0f} s, "
        f"ratio {plain_tta / ours_tta if ours_tta == ours_tta else float('nan'):.2f}x {_cpu()}"
    )
    print(
        f"accuracy difference (sortsight - plain): {ours_acc - plain['accuracy']:+.3f}; "
        f"sortsight - LR head: {ours_acc - head['accuracy']:+.3f}"
    )


if __name__ == "__main__":
    main()
