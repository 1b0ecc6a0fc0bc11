"""Decode every image once into small uint8 tensors: the eval view, and augmented views on demand.

Decoding and resizing JPEGs is a large share of CPU training time when it is redone every
epoch. The engine only needs the model's input size, so each image is decoded once (JPEG draft
mode) into ``(3, S, S)`` uint8 (150 KB at 224 px). The eval view is the one geometry predict
uses (:mod:`sortsight.geometry`). :func:`stream_eval` yields it in batches while threads decode
ahead, so the frozen-feature pass computes while the next images decode. Augmented views are
made later, only when fine-tuning runs, from a per-image seeded RNG (a resumed run sees the same
pixels).
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageEnhance

from sortsight.config import DEFAULT_BATCH_SIZE
from sortsight.geometry import draft_size, eval_pixels
from sortsight.images import open_image
from sortsight.progress import ProgressCallback, Ticker

__all__ = ["ImageCache", "build_cache", "build_views", "stream_eval", "train_view"]

log = logging.getLogger(__name__)


@dataclass
class ImageCache:
    """uint8 pixels of one list of images.

    Attributes:
        eval: ``(N, 3, S, S)`` the eval view (:func:`sortsight.geometry.eval_view`).
        kept: indices into the input list of the images that could be read.
        failed: ``(path, reason)`` of the images that could not be read.
    """

    eval: torch.Tensor
    kept: list[int]
    failed: list[tuple[str, str]] = field(default_factory=list)


def _to_tensor(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)  # (3, S, S)


def _workers() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)
    return max(1, min(8, cores))


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


def stream_eval(
    paths: Sequence[str | Path],
    data_config: Any,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    failed: list[tuple[str, str]] | None = None,
) -> Iterator[tuple[list[int], torch.Tensor]]:
    """Yield ``(indices, uint8 (B, 3, S, S))`` eval views in order, decoding ahead in threads
    (PIL releases the GIL), so the caller's compute overlaps the decoding. Unreadable images are
    left out and appended to ``failed`` as ``(path, reason)``; the job goes on."""
    draft = draft_size(data_config)

    def load(i: int) -> torch.Tensor | str:
        try:
            return eval_pixels(open_image(paths[i], draft=draft), data_config)  # type: ignore[no-any-return]
        except Exception as exc:  # one bad image must not stop the job
            return getattr(exc, "reason", None) or str(exc).splitlines()[0]

    idx: list[int] = []
    batch: list[torch.Tensor] = []
    with ThreadPoolExecutor(max_workers=_workers()) as pool:
        for i, result in enumerate(pool.map(load, range(len(paths)))):
            if isinstance(result, str):
                if failed is not None:
                    failed.append((str(paths[i]), result))
                continue
            idx.append(i)
            batch.append(result)
            if len(batch) == batch_size:
                yield idx, torch.stack(batch)
                idx, batch = [], []
    if batch:
        yield idx, torch.stack(batch)


def build_cache(
    paths: Sequence[str | Path], data_config: Any, *, progress: ProgressCallback | None = None
) -> ImageCache:
    """The eval views of ``paths``, all in memory (see :func:`stream_eval`)."""
    failed: list[tuple[str, str]] = []
    kept: list[int] = []
    parts: list[torch.Tensor] = []
    ticker = Ticker(progress, "cache", total=len(paths))
    for idx, pixels in stream_eval(paths, data_config, failed=failed):
        kept += idx
        parts.append(pixels)
        ticker.advance(len(idx))
    side = data_config.input_size
    pixels = torch.cat(parts) if parts else torch.zeros((0, 3, side, side), dtype=torch.uint8)
    if failed:
        log.warning("%d images could not be read and were left out", len(failed))
    return ImageCache(pixels, kept, failed)


def build_views(
    paths: Sequence[str | Path],
    data_config: Any,
    *,
    views: int,
    preset: str,
    seed: int,
    progress: ProgressCallback | None = None,
) -> torch.Tensor:
    """``(V, N, 3, S, S)`` augmented views of readable ``paths`` (seeded per image and view)."""
    size = data_config.input_size
    draft = (2 * size, 2 * size)  # random crops zoom in: decode with some detail to spare

    def load(i: int) -> list[torch.Tensor]:
        img = open_image(paths[i], draft=draft)
        rng = random.Random(f"{seed}:{i}")
        return [_to_tensor(train_view(img, size, preset, rng)) for _ in range(views)]

    out = torch.empty((views, len(paths), 3, size, size), dtype=torch.uint8)
    if not views or not paths:
        return out
    ticker = Ticker(progress, "cache", total=len(paths))
    with ThreadPoolExecutor(max_workers=_workers()) as pool:
        for i, tensors in enumerate(pool.map(load, range(len(paths)))):
            for v, t in enumerate(tensors):
                out[v, i] = t
            ticker.advance()
    return out
