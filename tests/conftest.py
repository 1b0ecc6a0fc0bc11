"""Shared test fixtures: small generated images and folders (no network, no big files).

Owners add fixtures here with care; fixtures used by one test file live in that file.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

# One colour and one shape per class, so a tiny model can learn them in seconds.
_COLOURS = [(220, 40, 40), (40, 160, 60), (40, 70, 220), (230, 200, 40), (160, 60, 200), (30, 200, 200)]


def make_image(label_index: int, *, size: int = 48, seed: int = 0) -> Image.Image:
    """A small RGB image whose colour and shape depend on ``label_index`` (with some noise)."""
    rng = random.Random(seed * 1000 + label_index)
    background = tuple(rng.randint(0, 60) for _ in range(3))
    img = Image.new("RGB", (size, size), background)  # type: ignore[arg-type]
    draw = ImageDraw.Draw(img)
    colour = _COLOURS[label_index % len(_COLOURS)]
    jitter = tuple(max(0, min(255, c + rng.randint(-25, 25))) for c in colour)
    a, b = rng.randint(2, size // 4), rng.randint(size // 2, size - 3)
    if label_index % 2 == 0:
        draw.ellipse([a, a, b, b], fill=jitter)  # type: ignore[arg-type]
    else:
        draw.rectangle([a, a, b, b], fill=jitter)  # type: ignore[arg-type]
    return img


def write_class_folder(
    root: Path,
    classes: Sequence[str] = ("cats", "dogs"),
    per_class: int = 10,
    *,
    size: int = 48,
    ext: str = ".png",
    seed: int = 0,
) -> Path:
    """Write ``root/<class>/<class>_<i><ext>`` images and return ``root``."""
    for ci, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            make_image(ci, size=size, seed=seed + i).save(folder / f"{name}_{i:03d}{ext}")
    return root


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """A two-class folder of 10 small PNGs per class."""
    return write_class_folder(tmp_path / "data")


@pytest.fixture
def make_folder(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``make_folder(classes=..., per_class=..., size=..., ext=...)`` under tmp_path."""
    counter = [0]

    def _make(**kwargs: object) -> Path:
        counter[0] += 1
        return write_class_folder(tmp_path / f"data{counter[0]}", **kwargs)  # type: ignore[arg-type]

    return _make


def worker_cores(worker: str, count: int, cores: Sequence[int]) -> list[int]:
    """The cores pytest-xdist worker ``worker`` (``gw0``, ``gw1``, ...) of ``count`` gets: every
    ``count``-th one, starting at its number; all of them outside xdist or with one worker."""
    if not worker.startswith("gw") or count < 2:
        return list(cores)
    return list(cores)[int(worker[2:]) % count :: count] or list(cores)


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (``-n N``), give each worker its own share of the cores, so that torch in
    N workers (and the CLI processes they start, which inherit the affinity) does not run N times
    as many threads as there are cores."""
    if not hasattr(os, "sched_setaffinity"):
        return
    cores = sorted(os.sched_getaffinity(0))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    mine = worker_cores(worker, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1), cores)
    if mine != cores:
        os.sched_setaffinity(0, mine)


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep sortsight's cache (verified images, extracted HF datasets) out of the user's home."""
    old = os.environ.get("SORTSIGHT_CACHE")
    os.environ["SORTSIGHT_CACHE"] = str(tmp_path_factory.mktemp("sortsight-cache"))
    yield
    if old is None:
        os.environ.pop("SORTSIGHT_CACHE", None)
    else:
        os.environ["SORTSIGHT_CACHE"] = old


TINY_LABELS = ("bird", "cat", "dog")  # make_image(0 | 1 | 2): red ellipse | green rectangle | blue ellipse


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An HF model folder: EfficientNet-Lite0 (bundled weights) at 64 px with a head fitted in about a
    second (logistic regression on frozen features) to tell ``make_image`` classes 0/1/2 apart,
    labelled ``TINY_LABELS``. Session-scoped: do not modify it."""
    import torch
    from sklearn.linear_model import LogisticRegression

    from sortsight.geometry import eval_transform
    from sortsight.model_folder import save_model_folder
    from sortsight.models import create_model

    torch.manual_seed(0)
    model, data_config = create_model("efficientnet_lite0", list(TINY_LABELS), input_size=64)
    model.eval()
    transform = eval_transform(data_config)
    images = [make_image(c, size=64, seed=100 + i) for c in range(3) for i in range(12)]
    targets = [c for c in range(3) for _ in range(12)]
    with torch.inference_mode():
        x = torch.stack([transform(im) for im in images])  # (N, 3, 64, 64)
        feats = model.forward_head(model.forward_features(x), pre_logits=True).numpy()  # (N, 1280)
    head = LogisticRegression(C=10.0, max_iter=1000).fit(feats, targets)
    with torch.no_grad():
        model.classifier.weight.copy_(torch.as_tensor(head.coef_, dtype=torch.float32))
        model.classifier.bias.copy_(torch.as_tensor(head.intercept_, dtype=torch.float32))
    out = tmp_path_factory.mktemp("tiny-model") / "model"
    return save_model_folder(model, list(TINY_LABELS), data_config, out, name="efficientnet_lite0")


def write_trainer_style_vit(folder: Path, labels: Sequence[str] = ("a", "b"), *, seed: int = 0) -> Path:
    """A model folder as a transformers ``Trainer`` saves it (a tiny random ViT, not timm): 32 px."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(seed)
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    ViTForImageClassification(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


# --------------------------------------------------------------------------- one real training run
TRAIN_CLASSES = ("red_circle", "green_square", "blue_circle")
TRAIN_FAST = {"image_size": 64, "batch_size": 8, "epochs": 1, "mixed_precision": "no"}


@pytest.fixture(scope="session")
def train_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three easy classes (``TRAIN_CLASSES``), 10 images of 40 px each. Session-scoped: read only."""
    return write_class_folder(tmp_path_factory.mktemp("train") / "data", TRAIN_CLASSES, per_class=10, size=40)


@pytest.fixture(scope="session")
def trained_run(train_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, list[Any]]:
    """``(TrainResult, progress events)`` of one real ``train`` on ``train_data`` (bundled Lite0 at
    64 px, one fine-tuning epoch, no refit, TensorBoard on): the training every test that only
    reads a finished run shares, instead of training again. Session-scoped: do not modify it;
    use ``copy_run``."""
    from sortsight.config import TrainConfig
    from sortsight.train import train

    events: list[Any] = []
    out = tmp_path_factory.mktemp("runs") / "run"
    config = TrainConfig(
        data_path=str(train_data),
        out=str(out),
        **TRAIN_FAST,
        strategy="finetune",
        refit=False,
        log="tensorboard",
    )
    return train(config, progress=events.append), events


def copy_run(run_dir: Path, dest: Path) -> Path:
    """A copy of a run folder that ``--resume`` continues in place (its record names ``dest``)."""
    shutil.copytree(run_dir, dest)
    record_path = dest / "sortsight.json"
    record = json.loads(record_path.read_text(encoding="utf-8"))
    record["config"]["out"] = str(dest)
    record_path.write_text(json.dumps(record, indent=2), encoding="utf-8")
    return dest
