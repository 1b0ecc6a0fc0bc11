"""The plumbing around the training loop: run folder, data, processes, head fit, schedule, files.

``train.py`` keeps the story (cache → features → head → fine-tune → keep the better); this
module keeps the details that would interrupt it.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import platform
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from sortsight._checkpoint import write_json_atomic
from sortsight._precision import cpu_capability, set_threads
from sortsight.config import TrainConfig, config_from_dict, config_to_dict
from sortsight.errors import ConfigError, DataError, TrainError
from sortsight.fileops import atomic_write_text, clear_for_overwrite, ensure_output_dir
from sortsight.progress import ProgressCallback

if TYPE_CHECKING:
    from sortsight.train import CandidateResult

__all__ = ["Environment", "RunData", "candidate_specs", "load_data", "prepare_run_dir", "setup_environment"]

# what --candidates K tries, in order: cheap first
DEFAULT_CANDIDATES: tuple[tuple[str, int | None], ...] = (
    ("efficientnet_lite0", None),
    ("efficientnet_lite1", None),
    ("efficientnet_lite2", None),
    ("efficientnet_lite0", 160),
)
MIN_TRAIN_PER_CLASS = 2


# ----------------------------------------------------------------------------- processes


@dataclass
class Environment:
    """This process's place in the run: one process, or one of a ``torchrun`` group."""

    accelerator: Any
    world: int
    rank: int
    is_main: bool
    cpu: str
    threads: int
    log: str = "none"
    writers: dict[str, Any] = field(default_factory=dict)

    def wait(self) -> None:
        if self.world > 1:
            self.accelerator.wait_for_everyone()

    def wrap(self, module: nn.Module) -> nn.Module:
        """DistributedDataParallel around ``module`` when there are several processes."""
        return self.accelerator.prepare_model(module) if self.world > 1 else module  # type: ignore[no-any-return]

    def agree(self, flag: bool) -> bool:
        """True on every process when it is true on any (so all stop at the same step)."""
        if self.world == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0])
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return bool(t.item() > 0)

    def sync_buffers(self, module: nn.Module) -> None:
        """Copy rank 0's buffers (BatchNorm statistics) to every process."""
        if self.world > 1:
            for buf in module.buffers():
                torch.distributed.broadcast(buf, src=0)

    def tensorboard(self, folder: Path) -> Any:
        if self.log != "tensorboard" or not self.is_main:
            return None
        if str(folder) not in self.writers:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise ConfigError(
                    "log: tensorboard needs the tensorboard package: pip install 'sortsight[tensorboard]'."
                ) from exc
            self.writers[str(folder)] = SummaryWriter(log_dir=str(folder / "tensorboard"))
        return self.writers[str(folder)]


def setup_environment() -> Environment:
    """Threads sized to the cores; ``accelerate`` picks up a ``torchrun`` process group if any."""
    threads = set_threads()
    from accelerate import Accelerator

    acc = Accelerator(cpu=True)
    return Environment(
        acc, acc.num_processes, acc.process_index, acc.is_main_process, cpu_capability(), threads
    )


# ----------------------------------------------------------------------------- run folder


def prepare_run_dir(config: TrainConfig, env: Environment) -> TrainConfig:
    """Refuse to overwrite, clear on ``overwrite``, or reload the stored config on ``resume``."""
    if not config.data_path and not config.resume:
        raise ConfigError("No data given. Pass the folder of labelled images: sortsight train DATA.")
    run_dir = ensure_output_dir(config.run_dir, what="--out folder")
    stored = run_dir / "sortsight.json"
    if config.resume:
        if not stored.is_file():
            raise TrainError(
                f"Nothing to resume in '{run_dir}' (no sortsight.json). Start it without --resume."
            )
        saved = json.loads(stored.read_text(encoding="utf-8"))["config"]
        saved.update(resume=True, overwrite=False, time_budget=config.time_budget)
        config = config_from_dict(TrainConfig, saved, what="training option")
    elif run_dir.exists() and any(run_dir.iterdir()):
        if not config.overwrite:
            raise TrainError(
                f"Output folder '{run_dir}' already exists. Use --overwrite to replace it, "
                f"--resume to continue it, or choose another --out."
            )
        if not stored.is_file():
            raise TrainError(
                f"'{run_dir}' is not a sortsight run folder (no sortsight.json); sortsight will not "
                f"delete it even with --overwrite. Choose another --out."
            )
        env.wait()
        if env.is_main:
            clear_for_overwrite(run_dir, inputs=[config.data_path])
    env.wait()
    if env.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    env.wait()
    env.log = config.log
    if config.data_path and Path(config.data_path).exists():  # so --resume works from any folder
        config = dataclasses.replace(config, data_path=str(Path(config.data_path).resolve()))
    return config


def write_run_json(run_dir: Path, data: dict[str, Any]) -> None:
    write_json_atomic(run_dir / "sortsight.json", data)


def slug(name: str, size: int | None) -> str:
    base = "".join(c if c.isalnum() or c in "-_." else "-" for c in name)
    return f"{base}-{size}" if size else base


def candidate_specs(config: TrainConfig) -> list[tuple[str, int | None]]:
    """``(model, input size or None)`` for each candidate: ``models`` (``name`` or ``name@size``),
    else the first ``candidates`` of :data:`DEFAULT_CANDIDATES` (starting with ``config.model``)."""
    if config.models:
        specs = []
        for text in config.models:
            name, _, size = text.partition("@")
            if size and not size.isdigit():
                raise ConfigError(
                    f"Candidate '{text}' is not 'model' or 'model@size' (e.g. efficientnet_lite0@160)."
                )
            specs.append((name, int(size) if size else config.image_size))
        return specs
    if config.candidates == 1:
        return [(config.model, config.image_size)]
    pool = [(config.model, config.image_size)] + [c for c in DEFAULT_CANDIDATES if c != (config.model, None)]
    return pool[: config.candidates]


def finished_candidate(out: Path) -> dict[str, Any] | None:
    path = out / "checkpoints" / "result.json"
    if not path.is_file() or not (out / "model" / "config.json").is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    data["model_dir"] = Path(data["model_dir"])
    return dict(data)


def mark_finished(out: Path, result: CandidateResult) -> None:
    write_json_atomic(out / "checkpoints" / "result.json", dataclasses.asdict(result))


def copy_model(src: Path, dest: Path) -> None:
    tmp = dest.with_name(dest.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(src, tmp)
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)


def write_leaderboard(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    rows = sorted(
        rows, key=lambda r: (r.get("val_accuracy") or 0.0, -(r.get("val_loss") or 0.0)), reverse=True
    )
    rows = [{"rank": i + 1, **r} for i, r in enumerate(rows)]
    write_json_atomic(run_dir / "leaderboard.json", rows)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(run_dir / "leaderboard.csv", buf.getvalue())


def append_metrics(out: Path, env: Environment, record: dict[str, Any]) -> None:
    """One line of ``metrics.jsonl`` (and TensorBoard scalars when ``log: tensorboard``)."""
    if not env.is_main:
        return
    record = {"time": round(time.time(), 3), **record}
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "metrics.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
    writer = env.tensorboard(out)
    if writer is not None:
        for key, value in record.items():
            if key.startswith(("val_", "train_")) and isinstance(value, (int, float)):
                writer.add_scalar(key.replace("_", "/", 1), value, record.get("step", 0))
        writer.flush()


# ----------------------------------------------------------------------------- data


@dataclass
class RunData:
    """The split dataset as training needs it."""

    dataset: Any  # sortsight.data.ImageDataset
    classes: tuple[str, ...]
    train_paths: list[Path]
    train_targets: list[int]
    valid_paths: list[Path]
    valid_targets: list[int]


def load_data(config: TrainConfig, progress: ProgressCallback | None) -> RunData:
    from sortsight.data import load_dataset

    ds = load_dataset(
        str(config.data_path),
        valid_split=config.valid_fraction,
        test_split=config.test_split,
        seed=config.seed,
        max_samples=config.max_samples,
        image_column=None if config.image_column == "image" else config.image_column,
        target_column=None if config.target_column == "target" else config.target_column,
        progress=progress,
    )
    if len(ds.classes) < 2:
        raise DataError(
            f"Found only one class ('{ds.classes[0] if ds.classes else ''}') in '{config.data_path}'. "
            f"A classifier needs at least two: add a folder of images per class."
        )
    index = {c: i for i, c in enumerate(ds.classes)}
    train, valid = ds.by_split("train"), ds.by_split("validation")
    if not valid:
        raise DataError(
            f"'{config.data_path}' has no validation images. Set valid_split (e.g. 0.2) or add a "
            f"validation/ folder."
        )
    return RunData(
        ds,
        tuple(ds.classes),
        [i.path for i in train],
        [index[i.label] for i in train],
        [i.path for i in valid],
        [index[i.label] for i in valid],
    )


def check_trainable(classes: Sequence[str], y_train: torch.Tensor, y_valid: torch.Tensor) -> None:
    counts = torch.bincount(y_train, minlength=len(classes))
    small = [f"'{classes[i]}' ({int(n)})" for i, n in enumerate(counts) if n < MIN_TRAIN_PER_CLASS]
    if small:
        raise DataError(
            f"Too few training images for class {', '.join(small[:5])}: each class needs at least "
            f"{MIN_TRAIN_PER_CLASS} after the validation split. Add images or lower valid_split."
        )
    if len(y_valid) == 0:
        raise DataError("No readable validation images. Add images or raise valid_split.")


def run_info(config: TrainConfig, data: RunData, env: Environment) -> dict[str, Any]:
    """What ``sortsight.json`` records about the run before it starts."""
    import sklearn
    import timm
    import transformers

    from sortsight import __version__

    ds = data.dataset
    return {
        "sortsight_version": __version__,
        "config": config_to_dict(config),
        "data": {
            "path": str(config.data_path),
            "source": ds.source,
            "fingerprint": ds.fingerprint(),
            "classes": list(ds.classes),
            "counts": ds.counts(),
            "split_seed": config.seed,
            "splits": {
                s: [ds.relative(i.path) for i in ds.by_split(s)] for s in ("train", "validation", "test")
            },
            "skipped": [{"path": ds.relative(s.path), "reason": s.reason} for s in ds.skipped],
        },
        "environment": {
            "cpu_capability": env.cpu,
            "threads": env.threads,
            "processes": env.world,
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "versions": {
            "sortsight": __version__,
            "torch": torch.__version__,
            "timm": timm.__version__,
            "transformers": transformers.__version__,
            "scikit-learn": sklearn.__version__,
        },
    }


# ----------------------------------------------------------------------------- head and schedule


def fit_head(
    classifier: nn.Linear,
    f_train: torch.Tensor,
    y_train: torch.Tensor,
    f_valid: torch.Tensor,
    y_valid: torch.Tensor,
    *,
    seed: int,
) -> dict[str, float]:
    """Logistic regression on scaled features, folded into ``classifier``.

    Two scalings × three strengths are fitted and the best on validation is kept (accuracy,
    then log loss): per-feature standardisation (scikit-learn's ``StandardScaler`` — the usual
    linear probe, which the default must never score below) and one global scale (gentler when
    folded into the layer: a feature almost constant on the training images would otherwise get
    a huge weight that fine-tuning could blow up; per-feature scales are floored for that reason).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, log_loss

    x, xv = f_train.numpy().astype(np.float64), f_valid.numpy().astype(np.float64)
    mu = x.mean(0)
    global_sigma = float(x.std()) + 1e-6
    per_feature = x.std(0)
    per_feature = np.where(per_feature > 0, np.maximum(per_feature, 1e-3 * global_sigma), 1.0)
    best: tuple[tuple[float, float], Any, Any] | None = None
    n_classes = classifier.out_features
    for sigma in (per_feature, np.full_like(per_feature, global_sigma)):
        xs, xvs = (x - mu) / sigma, (xv - mu) / sigma
        for c in (0.01, 0.1, 1.0):
            fitted = LogisticRegression(C=c, max_iter=1000, random_state=seed).fit(xs, y_train.numpy())
            proba = fitted.predict_proba(xvs)
            key = (
                float(accuracy_score(y_valid.numpy(), proba.argmax(1))),
                -float(log_loss(y_valid.numpy(), proba, labels=list(range(n_classes)))),
            )
            if best is None or key > best[0]:
                best = (key, fitted, sigma)
    assert best is not None
    sigma = best[2]
    lr = best[1]
    coef, intercept = lr.coef_, lr.intercept_
    if coef.shape[0] == 1:  # binary: softmax([0, z]) == sigmoid(z)
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.concatenate([[0.0], intercept])
    weight = coef / sigma  # fold the standardisation into the linear layer
    bias = intercept - (coef * mu / sigma).sum(1)
    with torch.no_grad():
        classifier.weight.copy_(torch.from_numpy(weight).float())
        classifier.bias.copy_(torch.from_numpy(bias).float())
    return {"accuracy": best[0][0], "loss": -best[0][1], "C": float(lr.C)}


def make_optimizer(
    config: TrainConfig, groups: list[list[nn.Parameter]], lrs: list[float]
) -> torch.optim.Optimizer:
    params = [{"params": g, "lr": lr} for g, lr in zip(groups, lrs, strict=True)]
    if config.optimizer in ("adamw_torch", "adamw"):
        return torch.optim.AdamW(params, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, momentum=0.9, nesterov=True, weight_decay=config.weight_decay)


def lr_factor(step: int, total: int, warmup_ratio: float, scheduler: str) -> float:
    """Learning-rate multiplier at optimizer step ``step`` of ``total``: warm-up, then decay."""
    if scheduler == "onecycle":
        warmup_ratio = max(warmup_ratio, 0.25)
    warm = int(total * warmup_ratio)
    if step < warm:
        return (step + 1) / warm
    if scheduler == "constant":
        return 1.0
    p = (step - warm) / max(1, total - warm)
    return 0.5 * (1 + math.cos(math.pi * p)) if scheduler in ("cosine", "onecycle") else max(0.0, 1 - p)


def state_copy(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


# ----------------------------------------------------------------------------- estimate and save


def estimate_seconds(
    timing: dict[str, float],
    *,
    n_train: int,
    n_valid: int,
    views: int,
    epochs: int,
    batch_size: int,
    world: int,
) -> float:
    """Seconds for features + fine-tune, from the warm-up's measured trunk and step times."""
    features = (
        timing["trunk_seconds_per_image"] * (n_train * views + n_valid) * 1.3
    )  # + pooling through the tail
    steps = epochs * math.ceil(math.ceil(n_train / world) / batch_size)
    finetune = (
        steps * timing["step_seconds"] * 1.5 + epochs * n_valid * timing["trunk_seconds_per_image"] * 0.3
    )
    return features + finetune + 2.0


def human(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 3600:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def save_model(
    model: nn.Module, data_config: Any, data: RunData, config: TrainConfig, result: CandidateResult
) -> None:
    from sortsight import __version__
    from sortsight.card import model_card
    from sortsight.models import save_model_folder

    shown = (
        "lr",
        "epochs",
        "batch_size",
        "warmup_ratio",
        "optimizer",
        "scheduler",
        "weight_decay",
        "augmentation",
        "seed",
        "valid_split",
    )
    params = {k: getattr(config, k) for k in shown}
    params.update(precision=result.engine.get("precision"), epochs_run=result.epochs, stopped=result.stopped)
    card = model_card(
        model_name=result.model,
        labels=list(data.classes),
        counts=data.dataset.counts(),
        metrics=result.metrics,
        head_metrics=result.head_metrics,
        chosen=result.chosen,
        parameters=params,
        image_size=result.image_size,
        dataset_fingerprint=data.dataset.fingerprint(),
        version=__version__,
    )
    model.eval()
    tmp = result.model_dir.with_name(result.model_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    save_model_folder(model, list(data.classes), data_config, tmp, name=result.model, card=card)
    if result.model_dir.exists():
        shutil.rmtree(result.model_dir)
    os.replace(tmp, result.model_dir)
