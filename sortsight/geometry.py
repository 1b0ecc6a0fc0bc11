"""The one evaluation geometry: how an image becomes the network's input at predict time.

Training (its image cache), predict, evaluate, the ONNX engine and the doctor all call
:func:`eval_view`; it reproduces timm's eval transform (which ``TimmWrapperImageProcessor``, and so
``transformers.pipeline``, applies to a saved model) pixel for pixel:

- ``crop_mode="center"``: resize the shorter side to ``floor(size / crop_pct)`` (the longer side
  in proportion, truncated as torchvision does), then take the centre ``size`` x ``size`` crop;
- ``crop_mode="squash"``: resize to ``floor(size / crop_pct)`` square, then centre-crop ``size``.

``tests/test_geometry.py`` checks the parity with timm on odd-shaped images.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["DataConfig", "draft_size", "eval_pixels", "eval_transform", "eval_view", "normalize"]


@dataclass(frozen=True)
class DataConfig:
    """How images are prepared for a model — the single source of truth (timm's ``data_config``).

    ``input_size`` is the square side fed to the network; evaluation resizes the short side to
    ``input_size / crop_pct`` and centre-crops ``input_size``.
    """

    input_size: int = 224
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    crop_mode: str = "center"  # "center": resize the short side, centre-crop; "squash": resize to a square

    def with_size(self, input_size: int) -> DataConfig:
        return replace(self, input_size=int(input_size))

    def to_timm(self) -> dict[str, Any]:
        """The ``pretrained_cfg``-style dict timm and ``TimmWrapperImageProcessor`` read."""
        return {
            "input_size": (3, self.input_size, self.input_size),
            "mean": tuple(self.mean),
            "std": tuple(self.std),
            "interpolation": self.interpolation,
            "crop_pct": self.crop_pct,
            "crop_mode": self.crop_mode,
        }

    @classmethod
    def from_timm(cls, cfg: dict[str, Any]) -> DataConfig:
        size = cfg.get("input_size", (3, 224, 224))
        side = int(size[-1]) if isinstance(size, (list, tuple)) else int(size)
        return cls(
            input_size=side,
            mean=tuple(float(v) for v in cfg.get("mean", (0.485, 0.456, 0.406))),  # type: ignore[arg-type]
            std=tuple(float(v) for v in cfg.get("std", (0.229, 0.224, 0.225))),  # type: ignore[arg-type]
            interpolation=str(cfg.get("interpolation", "bicubic")),
            crop_pct=float(cfg.get("crop_pct") or 1.0),
            crop_mode=str(cfg.get("crop_mode") or "center"),
        )


def _resample(interpolation: str) -> Any:
    from PIL import Image

    return {
        "bicubic": Image.Resampling.BICUBIC,
        "bilinear": Image.Resampling.BILINEAR,
        "nearest": Image.Resampling.NEAREST,
        "lanczos": Image.Resampling.LANCZOS,
    }.get(interpolation, Image.Resampling.BICUBIC)


def draft_size(data_config: DataConfig) -> tuple[int, int]:
    """The smallest JPEG decode size (PIL draft mode) that still feeds the resize without upscaling:
    training and predict decode at this size, so a JPEG gives them the same pixels."""
    side = round(data_config.input_size / max(data_config.crop_pct, 1e-3))
    return (side, side)


def eval_view(img: Image.Image, data_config: DataConfig) -> Image.Image:
    """``img`` (RGB) resized and centre-cropped to ``input_size`` x ``input_size`` as timm does."""
    size = data_config.input_size
    scale = math.floor(size / data_config.crop_pct) if data_config.crop_pct else size
    resample = _resample(data_config.interpolation)
    w, h = img.size
    if data_config.crop_mode == "squash":
        new = (scale, scale)
    elif w <= h:
        new = (scale, int(scale * h / w))
    else:
        new = (int(scale * w / h), scale)
    if new != (w, h):
        img = img.resize(new, resample)
    left, top = round((new[0] - size) / 2.0), round((new[1] - size) / 2.0)
    return img.crop((left, top, left + size, top + size))


def eval_pixels(img: Image.Image, data_config: DataConfig) -> Any:
    """:func:`eval_view` as a uint8 tensor ``(3, S, S)`` (what the training cache stores)."""
    import numpy as np
    import torch

    view = eval_view(img, data_config)
    return torch.from_numpy(np.asarray(view, dtype=np.uint8).copy()).permute(2, 0, 1)


def normalize(pixels: Any, data_config: DataConfig) -> Any:
    """uint8 ``(..., 3, S, S)`` → float32, scaled to [0, 1] then normalised by the model's mean/std."""
    import torch

    mean = torch.tensor(data_config.mean).view(3, 1, 1)
    std = torch.tensor(data_config.std).view(3, 1, 1)
    return (pixels.float() / 255.0 - mean) / std


def eval_transform(data_config: DataConfig) -> Callable[[Any], Any]:
    """PIL image (RGB) → normalised ``(3, S, S)`` float tensor, as at evaluation time."""

    def transform(img: Any) -> Any:
        return normalize(eval_pixels(img, data_config), data_config)

    return transform
