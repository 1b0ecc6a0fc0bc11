"""Frozen, validated configs — one per workflow — and reading them from files.

Configs are built at the edge (CLI flags, a YAML/JSON file, a studio form) and saved into
every run, so a run can always say exactly how it was made. Unknown keys are an error that
suggests the closest valid name.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
from pathlib import Path
from typing import Any, TypeVar

from sortsight.errors import ConfigError

__all__ = [
    "cache_dir",
    "PredictConfig",
    "TrainConfig",
    "closest",
    "config_from_dict",
    "config_to_dict",
    "load_train_config",
    "parse_duration",
    "read_config_file",
]

C = TypeVar("C")


def cache_dir() -> Path:
    """Where sortsight caches derived data: ``$SORTSIGHT_CACHE`` or ``~/.cache/sortsight``."""
    return Path(os.environ.get("SORTSIGHT_CACHE") or Path.home() / ".cache" / "sortsight").expanduser()


def closest(name: str, choices: list[str] | tuple[str, ...], *, cutoff: float = 0.5) -> str | None:
    """The valid name closest to ``name``, or None when nothing is close."""
    found = difflib.get_close_matches(name, list(choices), n=1, cutoff=cutoff)
    return found[0] if found else None


def config_from_dict(cls: type[C], values: dict[str, Any], *, what: str = "option") -> C:
    """Build the frozen dataclass ``cls`` from ``values``; unknown keys are a ``ConfigError``.

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass(frozen=True)
        ... class Demo:
        ...     lr: float = 0.1
        >>> config_from_dict(Demo, {"lr": 0.5}).lr
        0.5
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    names = [f.name for f in dataclasses.fields(cls)]
    for key in values:
        if key not in names:
            hint = closest(key, names)
            suggestion = f" Did you mean '{hint}'?" if hint else f" Valid {what}s: {', '.join(names)}."
            raise ConfigError(f"Unknown {what} '{key}'.{suggestion}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"Invalid {what}: {exc}") from exc


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (paths become strings, tuples lists)."""

    def plain(value: Any) -> Any:
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return {f.name: plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON config file into a dict, with a clear error when it is unreadable."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Config file '{path}' not found. Give the path to a .yml, .yaml or .json file.")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # yaml and json raise many kinds
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"Config file '{path}' could not be parsed: {first}. Fix its syntax.") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"Config file '{path}' must hold a mapping of option: value at the top level.")
    return data


# --------------------------------------------------------------------------------------------
# Training (owner: A). AutoTrain's image-classification parameter names where they exist.
# --------------------------------------------------------------------------------------------

AUGMENTATIONS = ("default", "none", "documents")
OPTIMIZERS = ("adamw_torch", "adamw", "adam", "sgd")
SCHEDULERS = ("cosine", "linear", "constant", "onecycle")
PRECISIONS = ("auto", "no", "fp32", "bf16", "fp16")
STRATEGIES = ("auto", "head", "finetune")
LOGGERS = ("none", "tensorboard")
TASKS = ("auto", "single_label", "multi_label")
TAG_SEPARATORS = ("auto", "|", ";", " ", ",")


def parse_duration(value: str | float | int | None) -> float | None:
    """Seconds from ``"10m"``, ``"1h30m"``, ``"90s"``, ``"2h"``, a number of seconds, or None.

    Example:
        >>> parse_duration("1h30m")
        5400.0
    """
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        import re

        text = str(value).strip().lower().replace(" ", "")
        parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?:in)?)?(?:(\d+(?:\.\d+)?)s?)?", text)
        if not text or parts is None:
            raise ConfigError(f"Time budget '{value}' is not a duration. Write it like 90s, 10m or 1h30m.")
        h, m, s = (float(p) if p else 0.0 for p in parts.groups())
        seconds = h * 3600 + m * 60 + s
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(f"Time budget must be positive, got '{value}'. Write it like 90s, 10m or 1h30m.")
    return seconds


def _finite(config: Any) -> None:
    """Refuse nan and infinity in any number option (``--lr inf`` would train with loss nan)."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"Option '{f.name}' must be a finite number, got '{value}'.")


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        hint = closest(value, choices)
        extra = f" Did you mean '{hint}'?" if hint else ""
        raise ConfigError(f"Unknown {name} '{value}'.{extra} Choose one of: {', '.join(choices)}.")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that decides how a model is trained; saved into every run's ``sortsight.json``.

    Names follow Hugging Face AutoTrain's image-classification parameters where one exists
    (``lr``, ``epochs``, ``batch_size``, ``warmup_ratio``, ...). Values are checked when the
    config is built; a bad value is a one-line :class:`ConfigError`.

    Example:
        >>> TrainConfig(data_path="photos/", epochs=3).epochs
        3
    """

    data_path: str | None = None
    model: str = "efficientnet_lite0"
    project_name: str = "sortsight-model"
    out: str | None = None  # run folder; default runs/<project_name>
    image_size: int | None = None  # default: the model's own input size
    augmentation: str = "default"  # default | none | documents
    strategy: str = "auto"  # auto: head, then fine-tune where it pays | head | finetune
    candidates: int = 1
    models: tuple[str, ...] = ()
    time_budget: float | None = None  # seconds; "10m" accepted
    resume: bool = False
    overwrite: bool = False
    refit: bool = dataclasses.field(
        default=True,
        metadata={
            "help": "Fit the final head again on train + validation once its settings are chosen on "
            "validation (uses every labelled image; validation metrics are then from before the refit)."
        },
    )
    # AutoTrain parameters
    lr: float = 3e-4
    epochs: int = 5
    batch_size: int = 32
    warmup_ratio: float = 0.1
    gradient_accumulation: int = 1
    optimizer: str = "adamw_torch"
    scheduler: str = "cosine"
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    seed: int = 42
    mixed_precision: str | None = "auto"  # auto | bf16 | fp16 | no
    auto_find_batch_size: bool = False
    early_stopping_patience: int = 5
    early_stopping_threshold: float = 0.0
    save_total_limit: int = 1
    max_samples: int | None = None
    image_column: str = "image"
    target_column: str = "target"
    train_split: str = "train"
    valid_split: float | str | None = 0.2  # a fraction, or AutoTrain's split name
    test_split: float = 0.0
    log: str = "none"  # none | tensorboard
    task: str = dataclasses.field(
        default="auto",
        metadata={
            "help": "single_label (one label per image) or multi_label (several tags); auto: from the data",
            "choices": TASKS,
        },
    )
    tag_separator: str = dataclasses.field(
        default="auto",
        metadata={
            "help": "What separates the tags in a labels cell; auto: '|' or ';', whichever the cells use",
            "choices": TAG_SEPARATORS,
        },
    )

    def __post_init__(self) -> None:
        fix = object.__setattr__
        if self.data_path is not None:
            fix(self, "data_path", str(self.data_path))
        if self.out is not None:
            fix(self, "out", str(self.out))
        if isinstance(self.models, str):
            fix(self, "models", tuple(m.strip() for m in self.models.split(",") if m.strip()))
        else:
            fix(self, "models", tuple(self.models))
        fix(self, "time_budget", parse_duration(self.time_budget))
        for name in ("lr", "warmup_ratio", "weight_decay", "max_grad_norm", "early_stopping_threshold",
                     "test_split"):
            value = getattr(self, name)
            try:
                fix(self, name, float(value))
            except (TypeError, ValueError):
                raise ConfigError(f"Option '{name}' must be a number, got '{value}'.") from None
        for name in ("epochs", "batch_size", "gradient_accumulation", "seed", "early_stopping_patience",
                     "save_total_limit", "candidates"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                try:
                    fix(self, name, int(str(value)))
                except ValueError:
                    raise ConfigError(f"Option '{name}' must be a whole number, got '{value}'.") from None
        mp = self.mixed_precision
        fix(self, "mixed_precision", "no" if mp in (None, "none", "None", False) else str(mp))
        fix(self, "log", "none" if self.log in (None, "None", False) else str(self.log))
        vs = self.valid_split
        if isinstance(vs, str):
            try:
                vs = float(vs)
            except ValueError:
                pass
        fix(self, "valid_split", vs)
        _finite(self)
        _choice("augmentation", self.augmentation, AUGMENTATIONS)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("scheduler", self.scheduler, SCHEDULERS)
        _choice("mixed_precision", str(self.mixed_precision), PRECISIONS)
        _choice("strategy", self.strategy, STRATEGIES)
        _choice("log", self.log, LOGGERS)
        _choice("task", self.task, TASKS)
        _choice("tag_separator", self.tag_separator, TAG_SEPARATORS)
        checks = [
            (self.lr > 0, "lr must be > 0, e.g. 1e-3"),
            (self.epochs >= 1, "epochs must be at least 1"),
            (self.batch_size >= 1, "batch_size must be at least 1"),
            (0 <= self.warmup_ratio < 1, "warmup_ratio must be in [0, 1), e.g. 0.1"),
            (self.gradient_accumulation >= 1, "gradient_accumulation must be at least 1"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (self.max_grad_norm >= 0, "max_grad_norm must be >= 0 (0 turns clipping off)"),
            (self.early_stopping_patience >= 0, "early_stopping_patience must be >= 0 (0 turns it off)"),
            (self.save_total_limit >= 1, "save_total_limit must be at least 1"),
            (self.candidates >= 1, "candidates must be at least 1"),
            (self.image_size is None or 16 <= int(self.image_size) <= 1024,
             "image_size must be between 16 and 1024 pixels"),
            (self.max_samples is None or int(self.max_samples) >= 2, "max_samples must be at least 2"),
            (0 <= self.test_split < 1, "test_split must be a fraction in [0, 1)"),
            (not (self.resume and self.overwrite), "use either resume or overwrite, not both"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"Invalid training option: {message}.")
        if isinstance(vs, float) and not 0 < vs < 1:
            raise ConfigError(
                f"valid_split must be a fraction between 0 and 1 (e.g. 0.2) or a split name, got {vs}."
            )

    @property
    def run_dir(self) -> Path:
        """The run folder: ``out`` or ``runs/<project_name>``."""
        return Path(self.out) if self.out else Path("runs") / self.project_name

    @property
    def valid_fraction(self) -> float:
        """The validation fraction used when the data has no validation split of its own."""
        return self.valid_split if isinstance(self.valid_split, float) else 0.2


_AUTOTRAIN_TOP = ("task", "base_model", "project_name", "log", "backend", "data", "params", "hub")


def _autotrain_to_flat(raw: dict[str, Any]) -> dict[str, Any]:
    """Map an AutoTrain image-classification YAML onto TrainConfig's flat names."""
    task = str(raw.get("task", "image_classification")).replace("-", "_")
    if task not in ("image_classification", "image_multi_class_classification"):
        raise ConfigError(f"AutoTrain task '{task}' is not supported; sortsight trains image_classification.")
    for key in raw:
        if key not in _AUTOTRAIN_TOP:
            hint = closest(key, _AUTOTRAIN_TOP)
            extra = f" Did you mean '{hint}'?" if hint else ""
            raise ConfigError(f"Unknown AutoTrain section '{key}'.{extra}")
    flat: dict[str, Any] = {}
    if raw.get("base_model"):
        flat["model"] = raw["base_model"]
    if raw.get("project_name"):
        flat["project_name"] = raw["project_name"]
    if raw.get("log") is not None:
        flat["log"] = raw["log"]
    data = raw.get("data") or {}
    if not isinstance(data, dict):
        raise ConfigError(
            "AutoTrain 'data' must be a mapping with path, train_split, valid_split, column_mapping."
        )
    if data.get("path") is not None:
        flat["data_path"] = data["path"]
    if data.get("train_split"):
        flat["train_split"] = data["train_split"]
    if "valid_split" in data:
        flat["valid_split"] = data["valid_split"] if data["valid_split"] is not None else 0.2
    mapping = data.get("column_mapping") or {}
    for key in ("image_column", "target_column"):
        if mapping.get(key):
            flat[key] = mapping[key]
    params = raw.get("params") or {}
    if not isinstance(params, dict):
        raise ConfigError("AutoTrain 'params' must be a mapping of parameter: value.")
    flat.update(params)
    return flat


def load_train_config(path: str | Path, **overrides: Any) -> TrainConfig:
    """Read a training config file: an AutoTrain image-classification YAML or flat sortsight keys.

    ``overrides`` (e.g. from CLI flags) win over the file. Unknown keys raise a ``ConfigError``
    naming the closest valid one.

    Example:
        >>> # autotrain.yml: task: image_classification / data: {path: photos} / params: {epochs: 3}
        >>> # load_train_config("autotrain.yml").epochs  -> 3
    """
    raw = read_config_file(path)
    is_autotrain = any(k in raw for k in ("task", "base_model", "params", "data", "hub", "backend"))
    flat = _autotrain_to_flat(raw) if is_autotrain else dict(raw)
    flat.update({k: v for k, v in overrides.items() if v is not None})
    if flat.get("data_path") is not None:
        data_path = Path(str(flat["data_path"])).expanduser()
        if not data_path.is_absolute() and not data_path.exists():
            beside = Path(path).parent / data_path
            if beside.exists():
                data_path = beside
        flat["data_path"] = str(data_path)
    return config_from_dict(TrainConfig, flat, what="training option")


PREDICT_ENGINES = ("auto", "onnx", "jit", "eager")


@dataclasses.dataclass(frozen=True)
class PredictConfig:
    """How new images are predicted (and optionally sorted): the settings of ``sortsight predict``.

    Example:
        >>> PredictConfig(model="runs/covers", inputs=("new/",), threshold=0.6).top_k
        5
    """

    model: str = ""
    inputs: tuple[str, ...] = ()  # files, folders (recursive) or CSV/TXT lists of paths
    output: str = "predictions.csv"
    jsonl: bool = False  # write JSON Lines instead of CSV
    top_k: int = 5
    threshold: float = 0.0  # below it a prediction is "unsure"
    batch_size: int = 32
    engine: str = "auto"  # auto | onnx | jit | eager
    num_workers: int | None = None  # image-decoding processes; None: sized for the machine
    sort_into: str | None = None
    move: bool = False
    dry_run: bool = False
    merge_identical: bool = dataclasses.field(
        default=False,
        metadata={
            "help": "With --sort-into: do not add a suffixed copy of content already in the label "
            "folder (with --move the source is removed; logged, undo restores it)."
        },
    )
    follow_links: bool = dataclasses.field(
        default=False,
        metadata={"help": "Also search folders reached through symbolic links (never moved through)."},
    )
    tags_only: bool = dataclasses.field(
        default=False,
        metadata={
            "help": "Multi-label, with sort_into: write DEST/tags.csv (path, tags) instead of copying images"
        },
    )
    tta: bool = dataclasses.field(
        default=False,
        metadata={
            "help": "Flip test-time augmentation: average each image's prediction with its mirror "
            "image's (twice the compute; not for collections where mirroring changes the class)."
        },
    )

    def __post_init__(self) -> None:
        fix = object.__setattr__
        fix(self, "model", str(self.model))
        fix(self, "inputs", (str(self.inputs),) if isinstance(self.inputs, (str, Path))
            else tuple(str(i) for i in self.inputs))
        fix(self, "output", str(self.output))
        if self.sort_into is not None:
            fix(self, "sort_into", str(self.sort_into))
        try:
            fix(self, "top_k", int(self.top_k))
            fix(self, "batch_size", int(self.batch_size))
            fix(self, "threshold", float(self.threshold))
            if self.num_workers is not None:
                fix(self, "num_workers", int(self.num_workers))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"Invalid prediction option: {exc}.") from None
        _finite(self)
        _choice("engine", self.engine, PREDICT_ENGINES)
        checks = [
            (self.top_k >= 1, "top_k must be at least 1"),
            (self.batch_size >= 1, "batch_size must be at least 1"),
            (0.0 <= self.threshold <= 1.0, "threshold must be between 0 and 1, e.g. 0.6"),
            (self.num_workers is None or self.num_workers >= 0, "num_workers must be >= 0"),
            (not (self.move and self.sort_into is None), "move needs sort_into (a destination folder)"),
            (not (self.dry_run and self.sort_into is None), "dry_run needs sort_into (a destination folder)"),
            (not (self.merge_identical and self.sort_into is None), "merge_identical needs sort_into"),
            (not (self.follow_links and self.move), "follow_links reads through links; it cannot --move"),
            (not (self.tags_only and self.sort_into is None), "tags_only needs sort_into (a folder)"),
            (not (self.tags_only and self.move), "use either tags_only or move, not both"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"Invalid prediction option: {message}.")
