"""Decode every image once into small uint8 tensors: the eval view plus a few augmented views.

Decoding and resizing JPEGs is a large share of CPU training time when it is redone every
epoch. The training engine only needs the model's input size, so each image is decoded once
(with JPEG draft mode), and we keep ``(N, 3, S, S)`` uint8 arrays (150 KB per image at 224 px).
Augmented views are drawn from a per-image seeded RNG, so a resumed run sees the same pixels.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageEnhance

from sortsight.images import open_image
from sortsight.progress import ProgressCallback, Ticker

__all__ = ["ImageCache", "build_cache", "eval_view", "geometry", "train_view"]

log = logging.getLogger(__name__)

_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}


@dataclass
class ImageCache:
    """uint8 pixels of one list of images.

    Attributes:
        eval: ``(N, 3, S, S)`` the eval view (resize shorter side to S/crop_pct, centre crop S).
        views: ``(V, N, 3, S, S)`` augmented views (V may be 0).
        kept: indices into the input list of the images that could be read.
        failed: ``(path, reason)`` of the images that could not be read.
    """

    eval: torch.Tensor
    views: torch.Tensor
    kept: list[int]
    failed: list[tuple[str, str]]


def _to_tensor(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)  # (3, S, S)


def eval_view(
    img: Image.Image,
    size: int,
    *,
    crop_pct: float = 0.875,
    interpolation: str = "bicubic",
    crop_mode: str = "center",
) -> Image.Image:
    """timm's eval geometry: shorter side to ``size / crop_pct``, then a centre crop of ``size``
    (``crop_mode="squash"``: straight to ``size`` x ``size``, as ViT-style processors do)."""
    resample = _RESAMPLE.get(interpolation, Image.Resampling.BICUBIC)
    if crop_mode == "squash":
        return img.resize((size, size), resample)
    scale = int(size / crop_pct) if crop_pct else size
    w, h = img.size
    new = (scale, max(scale, round(h * scale / w))) if w <= h else (max(scale, round(w * scale / h)), scale)
    img = img.resize(new, resample)
    left, top = (new[0] - size) // 2, (new[1] - size) // 2
    return img.crop((left, top, left + size, top + size))


def train_view(img: Image.Image, size: int, preset: str, rng: random.Random) -> Image.Image:
    """One augmented view.

    ``default``: random resized crop (35-100 % of the area), horizontal flip, light colour jitter.
    ``documents``: gentler crop (70-100 %, near-square), light colour jitter, never flipped or
    rotated — text pages and covers must not be mirrored.
    """
    w, h = img.size
    lo, ratio = (0.35, (3 / 4, 4 / 3)) if preset == "default" else (0.7, (0.9, 1.1))
    for _ in range(10):
        area = w * h * rng.uniform(lo, 1.0)
        aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
        cw, ch = round((area * aspect) ** 0.5), round((area / aspect) ** 0.5)
        if 0 < cw <= w and 0 < ch <= h:
            x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
            break
    else:
        cw = ch = min(w, h)
        x, y = (w - cw) // 2, (h - ch) // 2
    img = img.resize((size, size), Image.Resampling.BICUBIC, box=(x, y, x + cw, y + ch))
    if preset == "default" and rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        img = enhance(img).enhance(rng.uniform(0.8, 1.2))
    return img


def geometry(data_config: Any) -> dict[str, Any]:
    """The eval-view options of :func:`build_cache` for a model's ``DataConfig``."""
    return {
        "crop_pct": data_config.crop_pct,
        "crop_mode": data_config.crop_mode,
        "interpolation": data_config.interpolation,
    }


def build_cache(
    paths: Sequence[str | Path],
    size: int,
    *,
    crop_pct: float = 0.875,
    interpolation: str = "bicubic",
    crop_mode: str = "center",
    views: int = 0,
    preset: str = "default",
    seed: int = 42,
    progress: ProgressCallback | None = None,
) -> ImageCache:
    """Decode ``paths`` once, in threads (PIL releases the GIL while decoding).

    Unreadable images are left out and listed in ``failed``; the job goes on.
    """
    n_views = views if preset != "none" else 0
    draft = (2 * size, 2 * size)

    def load(i: int) -> tuple[torch.Tensor, list[torch.Tensor]] | str:
        try:
            img = open_image(paths[i], draft=draft)
        except Exception as exc:  # one bad image must not stop the job
            return getattr(exc, "reason", None) or str(exc).splitlines()[0]
        rng = random.Random(f"{seed}:{i}")
        aug = [_to_tensor(train_view(img, size, preset, rng)) for _ in range(n_views)]
        return _to_tensor(
            eval_view(img, size, crop_pct=crop_pct, interpolation=interpolation, crop_mode=crop_mode)
        ), aug

    ticker = Ticker(progress, "cache", total=len(paths))
    eval_list: list[torch.Tensor] = []
    view_lists: list[list[torch.Tensor]] = [[] for _ in range(n_views)]
    kept: list[int] = []
    failed: list[tuple[str, str]] = []
    workers = max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i, result in enumerate(pool.map(load, range(len(paths)))):
            if isinstance(result, str):
                failed.append((str(paths[i]), result))
            else:
                eval_list.append(result[0])
                for v, t in enumerate(result[1]):
                    view_lists[v].append(t)
                kept.append(i)
            ticker.advance()
    empty = torch.zeros((0, 3, size, size), dtype=torch.uint8)
    eval_t = torch.stack(eval_list) if eval_list else empty
    views_t = (
        torch.stack([torch.stack(vl) for vl in view_lists])
        if n_views and eval_list
        else torch.zeros((0, len(eval_list), 3, size, size), dtype=torch.uint8)
    )
    if failed:
        log.warning("%d images could not be read and were left out", len(failed))
    return ImageCache(eval_t, views_t, kept, failed)
