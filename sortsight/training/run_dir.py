"""The run folder as training writes it: config on resume, ``sortsight.json``, ``metrics.jsonl``,
``events.jsonl``, the leaderboard, candidates' done markers and the saved ``model/``.

``events.jsonl`` (one JSON object per line, main process only) is the structured stream front-ends
follow: every progress event of the run, plus the named phases ``estimate``, ``model_ready`` (a
complete, loadable ``model/`` is on disk) and ``done``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import platform
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from sortsight.config import TrainConfig, config_from_dict, config_to_dict
from sortsight.errors import ConfigError, TrainError
from sortsight.fileops import atomic_write_text, clear_for_overwrite, ensure_output_dir, staged_folder
from sortsight.progress import ProgressCallback, ProgressEvent
from sortsight.training.checkpoint import write_json_atomic
from sortsight.training.distributed import Environment

if TYPE_CHECKING:
    from sortsight.training.plan import RunData
    from sortsight.training.result import CandidateResult

__all__ = ["EventLog", "prepare_run_dir", "save_model", "write_run_json"]

# what may change when a run is resumed; any other option given with --resume must match the run's
RESUMABLE = (
    "time_budget",
    "epochs",
    "early_stopping_patience",
    "early_stopping_threshold",
    "log",
    "save_total_limit",
    "resume",
    "overwrite",
    "out",
)


class EventLog:
    """A progress callback that appends each event to ``RUN/events.jsonl`` and passes it on."""

    def __init__(self, run_dir: Path, env: Environment, progress: ProgressCallback | None) -> None:
        self.path = run_dir / "events.jsonl"
        self.env, self.progress = env, progress
        self.start = time.time()

    def __call__(self, event: ProgressEvent) -> None:
        if self.env.is_main:
            line = {
                "time": round(time.time(), 3),
                "phase": event.phase,
                "step": event.step,
                "total": event.total,
                "metrics": _jsonable(event.metrics),
                "eta": None if event.eta is None else round(float(event.eta), 2),
                "message": event.message,
            }
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(line) + "\n")
        if self.progress is not None:
            self.progress(event)


def _jsonable(metrics: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, (str, int, float, bool)) or value is None:
            out[key] = value
        elif isinstance(value, Path):
            out[key] = str(value)
        elif isinstance(value, dict):
            out[key] = _jsonable(value)
    return out


def _merge_resume(stored: dict[str, Any], given: TrainConfig) -> TrainConfig:
    """The stored config, with the options that may change on resume taken from ``given``.

    An option given with ``--resume`` that differs from both its default and the run's own value
    is an error naming it (it used to be silently replaced by the stored value)."""
    defaults = TrainConfig()
    merged = dict(stored)
    for f in dataclasses.fields(TrainConfig):
        value = getattr(given, f.name)
        if f.name in ("data_path",) and value is not None and stored.get("data_path") is not None:
            if Path(value).resolve() != Path(stored["data_path"]).resolve():
                raise ConfigError(
                    f"--resume continues the run on its own data ('{stored['data_path']}'), not '{value}'. "
                    f"Drop DATA, or start a new run with another --out."
                )
            continue
        if value == getattr(defaults, f.name) or f.name not in stored:
            continue
        if f.name in RESUMABLE:
            merged[f.name] = config_to_dict(given)[f.name]
        elif config_to_dict(given)[f.name] != stored[f.name]:
            given_value = config_to_dict(given)[f.name]
            raise ConfigError(
                f"Option '{f.name}' cannot change when resuming (the run used {stored[f.name]!r}, given "
                f"{given_value!r}). Resume without it, or start a new run with another --out."
            )
    merged.update(resume=True, overwrite=False, time_budget=given.time_budget)
    return config_from_dict(TrainConfig, merged, what="training option")


def prepare_run_dir(config: TrainConfig, env: Environment) -> TrainConfig:
    """Refuse to overwrite, clear on ``overwrite``, or reload the stored config on ``resume``."""
    if not config.data_path and not config.resume:
        raise ConfigError("No data given. Pass the folder of labelled images: sortsight train DATA.")
    run_dir = ensure_output_dir(config.run_dir, what="--out folder")
    env.wait()  # every process's write probe is gone before any looks at what the folder holds
    stored = run_dir / "sortsight.json"
    if config.resume:
        if not stored.is_file():
            raise TrainError(
                f"Nothing to resume in '{run_dir}' (no sortsight.json). Start it without --resume."
            )
        config = _merge_resume(json.loads(stored.read_text(encoding="utf-8"))["config"], config)
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
        if not config.resume:
            (run_dir / "events.jsonl").unlink(missing_ok=True)
    env.wait()
    if config.data_path and Path(config.data_path).exists():  # so --resume works from any folder
        config = dataclasses.replace(config, data_path=str(Path(config.data_path).resolve()))
    return config


def write_run_json(run_dir: Path, data: dict[str, Any]) -> None:
    write_json_atomic(run_dir / "sortsight.json", data)


def slug(name: str, size: int | None) -> str:
    base = "".join(c if c.isalnum() or c in "-_." else "-" for c in name)
    return f"{base}-{size}" if size else base


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
    with staged_folder(dest) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)


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


class MetricsLog:
    """``metrics.jsonl`` (one line for the head and per epoch) and TensorBoard with ``log: tensorboard``."""

    def __init__(self, out: Path, env: Environment, log: str) -> None:
        self.out, self.env, self.log = out, env, log
        self.writer: Any = None

    def append(self, record: dict[str, Any]) -> None:
        if not self.env.is_main:
            return
        record = {"time": round(time.time(), 3), **record}
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / "metrics.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        if self.log != "tensorboard":
            return
        if self.writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise ConfigError(
                    "log: tensorboard needs the tensorboard package: pip install 'sortsight[tensorboard]'."
                ) from exc
            self.writer = SummaryWriter(log_dir=str(self.out / "tensorboard"))
        for key, value in record.items():
            if key.startswith(("val_", "train_")) and isinstance(value, (int, float)):
                self.writer.add_scalar(key.replace("_", "/", 1), value, record.get("step", 0))
        self.writer.flush()


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


SHOWN = (
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
    "refit",
    "pretrained",
)


def features_engine(out: Path, config: TrainConfig) -> str:
    """The frozen-feature engine for a candidate's run in ``out``: the one its interrupted run used
    when ``config.resume`` continues from a checkpoint (the engine is otherwise chosen by timing,
    which the machine's load can tip), else ``"auto"``, for the whole job."""
    from sortsight.training.checkpoint import latest_checkpoint_state

    state = (latest_checkpoint_state(out / "checkpoints") or {}) if config.resume else {}
    return str(state.get("features_engine", "auto"))


def save_imports() -> float:
    """Seconds to import what :func:`save_model` needs (transformers' model classes, the card),
    paid now instead of at the save (nothing once this process has them)."""
    t = time.perf_counter()
    from transformers import TimmWrapperForImageClassification  # noqa: F401  (what the save imports)

    from sortsight import card, model_folder  # noqa: F401

    return time.perf_counter() - t


def save_model(
    model: nn.Module,
    data_config: Any,
    data: RunData,
    config: TrainConfig,
    result: CandidateResult,
    *,
    model_dir: Path | None = None,
) -> Path:
    """Write a complete ``model/`` (HF folder + card) atomically: a reader never sees half of one."""
    from sortsight import __version__
    from sortsight.card import model_card
    from sortsight.model_folder import save_model_folder

    model_dir = model_dir or result.model_dir
    params = {k: getattr(config, k) for k in SHOWN if hasattr(config, k)}
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
        refit=result.refit,
        test_metrics=result.test_metrics or None,
        pretrained=config.pretrained,
    )
    model.eval()
    with staged_folder(model_dir) as tmp:
        save_model_folder(model, list(data.classes), data_config, tmp, name=result.model, card=card)
    return model_dir
