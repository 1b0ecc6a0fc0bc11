"""HF model folders: write the folder ``transformers.pipeline("image-classification",
model=folder)`` loads offline, and read any HF image-classification folder back.

A timm network is saved as ``TimmWrapperForImageClassification`` (``config.json`` with
``id2label``/``label2id``, ``model.safetensors``, the processor settings) plus
``sortsight_model.json`` (labels, preprocessing, the architecture's name) and the card as
``README.md``. A transformers model is saved with its own ``save_pretrained``. Backbones side by side
(:mod:`sortsight.side_by_side`) are saved as a custom-code folder carrying ``side_by_side.py``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from safetensors import SafetensorError

from sortsight.errors import ModelError, first_line
from sortsight.models import (
    BUNDLED_MODELS,
    DataConfig,
    _hf_logits_class,
    _processor_data_config,
    _quiet_transformers,
    _timm_core,
    is_side_by_side_model,
    resolve_model_name,
)
from sortsight.runs import RunFolder

__all__ = ["LoadedModel", "config_labels", "is_model_folder", "load_model_folder", "save_model_folder"]

#: ``model_type`` of a side-by-side folder; ``side_by_side.MODEL_TYPE`` says the same (that file
#: travels alone in model folders, and importing it imports transformers; tests check the two agree)
SIDE_BY_SIDE_TYPE = "sortsight_side_by_side"

#: what reading a damaged or foreign folder raises (safetensors' header errors are their own class)
_UNREADABLE = (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError)


@dataclass
class LoadedModel:
    """A model read from a folder: ``module(images) -> logits`` plus what it needs to run."""

    module: Any  # torch.nn.Module, (B, 3, H, W) float -> (B, num_labels) logits
    labels: list[str]
    data_config: DataConfig
    name: str  # the architecture (timm name) or HF model type
    path: Path


def save_model_folder(
    model: Any,
    labels: Sequence[str],
    data_config: DataConfig,
    out_dir: str | Path,
    *,
    name: str,
    card: str | None = None,
) -> Path:
    """Write an HF model folder that ``transformers.pipeline`` loads offline, unchanged.

    A timm network is saved as ``TimmWrapperForImageClassification`` (``config.json`` with
    ``id2label``/``label2id``, ``model.safetensors``) plus a ``TimmWrapperImageProcessor``
    (``preprocessor_config.json`` carrying ``data_config``). A transformers model (from an HF
    id or folder) is saved with its own ``save_pretrained``.

    Args:
        model: the network returned by :func:`create_model` (trained or not).
        labels: class names, in output order.
        data_config: preprocessing.
        out_dir: the folder to write (created; files in it are replaced).
        name: the architecture (bundled or timm name) the network was created from.
        card: the model card text for ``README.md``.

    Returns:
        ``out_dir`` as a Path.
    """
    import torch
    from transformers import TimmWrapperConfig, TimmWrapperForImageClassification, TimmWrapperImageProcessor

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    id2label = dict(enumerate(labels))
    label2id = {label: i for i, label in enumerate(labels)}
    inner = getattr(model, "inner", None)
    if is_side_by_side_model(model):
        _save_side_by_side(model, name, id2label, label2id, data_config, out)
    elif inner is not None and hasattr(inner, "save_pretrained") and not hasattr(inner, "timm_model"):
        inner.config.id2label, inner.config.label2id = id2label, label2id
        inner.save_pretrained(out, safe_serialization=True)
        _write_processor_for(inner, data_config, out)
    else:
        core = _timm_core(inner if inner is not None else model)
        bundled = BUNDLED_MODELS.get(resolve_model_name(name))
        arch = bundled.timm_arch if bundled else getattr(core, "default_cfg", {}).get("architecture", name)
        pretrained_cfg = {
            **getattr(core, "pretrained_cfg", {}),
            **data_config.to_timm(),
            "num_classes": len(labels),
            "architecture": arch,
        }
        pretrained_cfg = {k: v for k, v in pretrained_cfg.items() if _jsonable(v)}
        # id2label sets the number of labels
        config = TimmWrapperConfig(architecture=arch, id2label=id2label, label2id=label2id)
        config.pretrained_cfg = pretrained_cfg  # what timm / the processor read back
        with torch.device("meta"):
            wrapper = TimmWrapperForImageClassification(config)
        wrapper.timm_model = core
        wrapper.config.architectures = ["TimmWrapperForImageClassification"]
        with _quiet_transformers():
            wrapper.save_pretrained(out, safe_serialization=True)
            # transformers 5 keeps the timm processor's settings inside config.json
            TimmWrapperImageProcessor(pretrained_cfg=pretrained_cfg, architecture=arch).save_pretrained(out)
    from sortsight.fileops import honour_umask

    honour_umask(*out.glob("*.safetensors"))  # safetensors writes 0600; a model folder is for sharing
    meta = {"labels": list(labels), "data_config": asdict(data_config), "name": name}
    (out / "sortsight_model.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    if card is not None:
        (out / "README.md").write_text(card, encoding="utf-8")
    return out


def _save_side_by_side(
    model: Any,
    name: str,
    id2label: dict[int, str],
    label2id: dict[str, int],
    data_config: DataConfig,
    out: Path,
) -> None:
    """Backbones side by side: a custom-code transformers folder (``side_by_side.py`` travels in it,
    so ``pipeline(..., trust_remote_code=True)`` loads it offline) and a stock image processor."""
    import torch

    from sortsight.side_by_side import SideBySideConfig, SideBySideForImageClassification

    archs = [
        getattr(p, "default_cfg", {}).get("architecture") or n
        for p, n in zip(model.parts, name.split("+"), strict=True)
    ]
    config = SideBySideConfig(parts=archs, sizes=model.sizes, id2label=id2label, label2id=label2id)
    config.architectures = ["SideBySideForImageClassification"]
    with torch.device("meta"):
        wrapper = SideBySideForImageClassification(config)
    wrapper.model = model
    # the copy of sortsight/side_by_side.py and config.json's auto_map
    SideBySideConfig.register_for_auto_class()
    SideBySideForImageClassification.register_for_auto_class("AutoModelForImageClassification")
    with _quiet_transformers():
        wrapper.save_pretrained(out, safe_serialization=True)
        _standard_processor(data_config).save_pretrained(out)


def _standard_processor(data_config: DataConfig) -> Any:
    """A stock transformers processor doing sortsight's evaluation preprocessing: ConvNeXt's
    resizes the short side to ``size / crop_pct`` and centre-crops ``size`` (timm's eval transform)."""
    from transformers import ConvNextImageProcessor
    from transformers.image_utils import PILImageResampling

    resample = {"bilinear": PILImageResampling.BILINEAR, "nearest": PILImageResampling.NEAREST}
    return ConvNextImageProcessor(
        size={"shortest_edge": data_config.input_size},
        crop_pct=data_config.crop_pct if data_config.crop_mode == "center" else 1.0,
        resample=resample.get(data_config.interpolation, PILImageResampling.BICUBIC),
        image_mean=list(data_config.mean),
        image_std=list(data_config.std),
    )


def _load_side_by_side(p: Path) -> tuple[Any, list[str], DataConfig, str]:
    """Read a side-by-side folder with sortsight's own classes (no remote code runs)."""
    from safetensors.torch import load_file

    from sortsight.side_by_side import SideBySideConfig, build_side_by_side

    try:
        config = SideBySideConfig.from_pretrained(p)
        model = build_side_by_side(config.parts, config.sizes, int(config.num_labels or 0))
        state = {k.removeprefix("model."): v for k, v in load_file(p / "model.safetensors").items()}
        model.load_state_dict(state)
        meta = json.loads((p / "sortsight_model.json").read_text(encoding="utf-8"))
    except _UNREADABLE as exc:
        first = first_line(exc)
        raise ModelError(f"Could not load the model in '{p}': {first}") from exc
    id2label = {int(k): v for k, v in (config.id2label or {}).items()}
    labels = [id2label[i] for i in range(len(id2label))]
    return (
        model.eval(),
        labels,
        DataConfig(
            **{
                **meta["data_config"],
                "mean": tuple(meta["data_config"]["mean"]),
                "std": tuple(meta["data_config"]["std"]),
            }
        ),
        str(meta.get("name", "+".join(config.parts))),
    )


def _read_config(p: Path) -> dict[str, Any]:
    try:
        found = json.loads((p / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        first = first_line(exc)
        message = f"Could not read '{p / 'config.json'}': {first}. Save the model folder again."
        raise ModelError(message) from exc
    if not isinstance(found, dict):
        raise ModelError(f"'{p / 'config.json'}' holds no JSON object. Save the model folder again.")
    return found


def config_labels(config_json: dict[str, Any]) -> list[str]:
    """The class names an HF ``config.json`` holds, in output order: its ``id2label``, or the
    ``label_names`` transformers 5 writes instead; empty when it holds neither."""
    id2label = config_json.get("id2label") or {}
    if id2label:
        return [str(id2label[k]) for k in sorted(id2label, key=lambda k: int(k))]
    return [str(x) for x in config_json.get("label_names") or []]


def _is_own_timm_folder(p: Path, config_json: dict[str, Any]) -> bool:
    """A timm network in a folder sortsight wrote itself: everything to rebuild it is in
    ``config.json`` (architecture, processor settings) and ``sortsight_model.json`` (labels)."""
    return (
        config_json.get("model_type") == "timm_wrapper"
        and isinstance(config_json.get("architecture"), str)
        and isinstance(config_json.get("pretrained_cfg"), dict)
        and (p / "sortsight_model.json").is_file()
        and (p / "model.safetensors").is_file()
        and not (p / "preprocessor_config.json").exists()  # older folders: the processor reads that
    )


def _load_timm_folder(p: Path, config_json: dict[str, Any]) -> LoadedModel:
    """Rebuild a sortsight-written ``TimmWrapperForImageClassification`` folder with timm alone.

    What transformers would do for it (``timm.create_model(architecture, pretrained=False,
    num_classes=…)``, the weights without their ``timm_model.`` prefix, the processor's
    ``resolve_data_config`` on ``pretrained_cfg``), without importing transformers: that import
    cost about 2 s of every ``predict`` or ``evaluate`` on a 2-core CPU. The folder is unchanged,
    so ``pipeline("image-classification", model=folder)`` still loads it (tests/test_side_by_side.py).
    """
    import timm
    from safetensors.torch import load_file

    try:
        meta = json.loads((p / "sortsight_model.json").read_text(encoding="utf-8"))
        labels = config_labels(config_json) or [str(label) for label in meta["labels"]]  # as transformers
        module = timm.create_model(
            config_json["architecture"],
            pretrained=False,
            num_classes=len(labels),
            **(config_json.get("model_args") or {}),
        )
        state = load_file(p / "model.safetensors")
        module.load_state_dict({k.removeprefix("timm_model."): v for k, v in state.items()})
        data_config = DataConfig.from_timm(
            timm.data.resolve_data_config(config_json["pretrained_cfg"], model=None, verbose=False)
        )
    except _UNREADABLE as exc:
        first = first_line(exc)
        raise ModelError(f"Could not load the model in '{p}': {first}") from exc
    return LoadedModel(module.eval(), labels, data_config, config_json["architecture"], p)


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except TypeError:
        return False
    return True


def _write_processor_for(hf_model: Any, data_config: DataConfig, out: Path) -> None:
    from transformers import AutoImageProcessor

    source = getattr(hf_model, "name_or_path", None)
    try:
        AutoImageProcessor.from_pretrained(source).save_pretrained(out)
    except Exception as exc:  # the source may be gone; the folder still needs a processor
        raise ModelError(
            f"Could not save the image processor of '{source}'. Keep that model folder "
            f"available while exporting."
        ) from exc


def is_model_folder(path: str | Path) -> bool:
    """True when ``path`` looks like an HF model folder (``config.json`` and weights)."""
    p = Path(path)
    return (p / "config.json").is_file() and any(
        (p / n).is_file() for n in ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
    )


def load_model_folder(path: str | Path) -> LoadedModel:
    """Load any HF image-classification folder (sortsight's, or one saved by a transformers
    ``Trainer``) as ``module(images) -> logits`` with its labels and preprocessing.

    A sortsight run folder is accepted too (its ``model/`` is used).

    Raises:
        ModelError: the folder is not a model folder or cannot be loaded.

    Example:
        >>> loaded = load_model_folder("runs/covers/model")  # doctest: +SKIP
        >>> loaded.labels  # doctest: +SKIP
        ['not useful', 'useful']
    """
    p = RunFolder.resolve(path).model_dir
    if not is_model_folder(p):
        raise ModelError(
            f"'{path}' is not a model folder (no config.json with model.safetensors). "
            f"Give a run folder (runs/NAME) or an HF image-classification model folder."
        )
    if (p / "pytorch_model.bin").is_file() and not (p / "model.safetensors").is_file():
        raise ModelError(
            f"'{path}' holds only pickled weights (pytorch_model.bin), which sortsight does not "
            f"load. Re-save it with save_pretrained(..., safe_serialization=True)."
        )
    config_json = _read_config(p)
    if config_json.get("model_type") == SIDE_BY_SIDE_TYPE:
        module, labels, data_config, name = _load_side_by_side(p)
        return LoadedModel(module, labels, data_config, name, p)
    if _is_own_timm_folder(p, config_json):
        return _load_timm_folder(p, config_json)
    from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification

    try:
        with _quiet_transformers():
            config = AutoConfig.from_pretrained(p)
            hf = AutoModelForImageClassification.from_pretrained(p)
            processor = AutoImageProcessor.from_pretrained(p)
    except _UNREADABLE as exc:
        first = first_line(exc)
        raise ModelError(f"Could not load the model in '{p}': {first}") from exc
    hf.eval()
    id2label = {int(k): v for k, v in config.id2label.items()}
    labels = [id2label[i] for i in range(len(id2label))]
    if hasattr(hf, "timm_model"):
        module, name = hf.timm_model, getattr(config, "architecture", "timm")
    else:
        module, name = _hf_logits_class()(hf), config.model_type
    module.eval()
    return LoadedModel(module, labels, _processor_data_config(processor), name, p)
