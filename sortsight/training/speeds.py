"""Speeds measured on this machine, remembered for the next estimate.

Every run and every measured estimate times what its stages cost here: the frozen-feature pass
per image, the head's fit per item, building the model and choosing the feature engine, a
training step of the tail and the precision it chose. They are kept in
``$SORTSIGHT_CACHE/speeds.json`` (one owner: this module), keyed by the machine (CPU model and
flags, the cores this process may use, the torch version) and by what sets the speed (model,
input size, batch size, precision asked for, pretrained or not). A later estimate for the same
model on the same machine answers from them without building the model or importing torch, so
it costs about a second instead of about ten; a new machine, model, size or torch measures
again. The one part of the cost that depends on the images, decoding them, is timed again on a
few of the new images (:func:`decode_seconds`).

Nothing here may fail a run: a cache that cannot be read or written is logged and ignored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from sortsight.config import TrainConfig

__all__ = ["decode_seconds", "geometry", "machine", "recall", "remember", "speed_key"]

log = logging.getLogger(__name__)
_VERSION = 1
_DECODE_SAMPLE = 12  # images decoded to time the part of the cost that depends on the images
_MACHINE_KEY = "machine"  # per-machine figures (the engine's import time), beside the model records


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def machine() -> str:
    """This machine as the speeds' key sees it: CPU model, a digest of its flags, cores, torch."""
    found: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                name, _, value = line.partition(":")
                if name.strip() in ("model name", "flags"):
                    found.setdefault(name.strip(), value.strip())
                if len(found) == 2:
                    break
    except OSError:  # no cpuinfo (macOS, Windows): the processor string and the cores
        pass
    try:
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_version = "none"
    model = found.get("model name") or platform.processor() or platform.machine()
    flags = " ".join(sorted(found.get("flags", "").split()))
    digest = hashlib.sha256(flags.encode()).hexdigest()[:12]
    return f"{model}|{digest}|{_cores()} cores|torch {torch_version}"


def speed_key(name: str, size: int | None, config: TrainConfig) -> str:
    """The record for one candidate: ``(model, input size or the model's own)`` with the options
    that change its speed."""
    return "|".join(
        (
            name,
            str(size or config.image_size or "default"),
            f"batch {config.batch_size}",
            f"precision {config.mixed_precision}",
            "pretrained" if config.pretrained else "scratch",
        )
    )


def _path() -> Path:
    from sortsight.fileops import cache_dir

    return cache_dir() / "speeds.json"


def _read() -> dict[str, Any]:
    try:
        data = json.loads(_path().read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.info("speeds cache not read (%s): measuring again", exc)
        return {}
    if not isinstance(data, dict) or data.get("version") != _VERSION:
        return {}
    records = data.get("machines", {}).get(machine(), {})
    return records if isinstance(records, dict) else {}


def recall(key: str = _MACHINE_KEY) -> dict[str, Any] | None:
    """The remembered figures for ``key`` on this machine (see :func:`speed_key`), or None."""
    record = _read().get(key)
    return dict(record) if isinstance(record, dict) else None


def remember(values: dict[str, Any], key: str = _MACHINE_KEY, *, source: str) -> None:
    """Merge ``values`` into the record for ``key`` on this machine (fields not measured this
    time are kept; seconds rounded to the microsecond), with when and by what (``"run"`` or
    ``"estimate"``) they were measured."""
    from sortsight.fileops import atomic_write_text

    path = _path()
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        if not isinstance(data, dict) or data.get("version") != _VERSION:
            data = {}
    except (OSError, ValueError):
        data = {}  # unreadable: written anew
    data["version"] = _VERSION
    records = data.setdefault("machines", {}).setdefault(machine(), {})
    record = records.setdefault(key, {})
    record.update({k: round(v, 6) if isinstance(v, float) else v for k, v in values.items()})
    record["measured"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    record["source"] = source
    try:
        atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True))
    except OSError as exc:
        log.info("speeds cache not written (%s)", exc)


def geometry(data_config: Any) -> dict[str, Any]:
    """What :func:`decode_seconds` needs of a model's data config, as a record keeps it."""
    return {
        "image_size": int(data_config.input_size),
        "crop_pct": float(data_config.crop_pct),
        "interpolation": str(data_config.interpolation),
        "crop_mode": str(getattr(data_config, "crop_mode", "center")),
    }


def decode_seconds(paths: Sequence[str | Path], record: dict[str, Any]) -> float | None:
    """Seconds to decode one image into the eval view the record's model takes, timed on a few of
    ``paths`` in this thread (the part of the frozen pass that depends on the images)."""
    from sortsight.geometry import DataConfig, draft_size, eval_view
    from sortsight.images import open_image

    config = DataConfig(
        input_size=int(record["image_size"]),
        crop_pct=float(record.get("crop_pct", 0.875)),
        interpolation=str(record.get("interpolation", "bicubic")),
        crop_mode=str(record.get("crop_mode", "center")),
    )
    step = max(1, len(paths) // _DECODE_SAMPLE)
    sample, done = list(paths[::step][:_DECODE_SAMPLE]), 0
    start = time.perf_counter()
    for path in sample:
        try:
            eval_view(open_image(path, draft=draft_size(config)), config)
            done += 1
        except Exception:  # an unreadable image is the data check's business, not the timing's
            continue
    return (time.perf_counter() - start) / done if done else None
