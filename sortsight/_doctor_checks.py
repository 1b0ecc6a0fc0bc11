"""The doctor's measurements: per-image quality statistics and duplicate-pair finding.

Private helpers of :mod:`sortsight.doctor` (which re-exports the public names): pixel statistics
measured with NumPy and Pillow, perceptual hashes from ``imagehash``, and pair search over
64-bit hashes or embeddings in blocks, so memory stays bounded for large collections.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sortsight.data import TINY_SIDE
from sortsight.errors import ImageError
from sortsight.fileops import sha256_file
from sortsight.images import inspect_image, open_image
from sortsight.progress import ProgressCallback, Ticker

__all__ = [
    "ImageStats",
    "QualityThresholds",
    "groups",
    "image_stats",
    "measure_images",
    "near_pairs_embedding",
    "near_pairs_hash",
    "quality_flags",
]

_STATS_SIDE = 512  # pixel statistics are measured on the image fitted into this box


@dataclass(frozen=True)
class QualityThresholds:
    """When an image gets a quality flag (brightness/contrast on a 0–1 scale).

    Attributes:
        dark: mean brightness below this → ``dark``.
        bright: mean brightness above this → ``bright``.
        blurry: variance of the Laplacian (8-bit grey, image fitted into 512 px) below this → ``blurry``.
        low_information: grey-level entropy (bits, 0–8) below this → ``low_information``.
        tiny: shorter side below this many pixels → ``tiny`` (the same limit as ``sortsight check``).
        aspect: longer/shorter side above this → ``odd_aspect``.
        grayscale: mean channel spread (0–255) below this counts as grayscale …
        colour_share: … and is flagged only when at least this share of the set is in colour.
    """

    dark: float = 0.12
    bright: float = 0.92
    blurry: float = 20.0
    low_information: float = 2.0
    tiny: int = TINY_SIDE
    aspect: float = 3.0
    grayscale: float = 3.0
    colour_share: float = 0.8


@dataclass(frozen=True)
class ImageStats:
    """Measurements of one image (see :func:`image_stats`)."""

    width: int
    height: int
    brightness: float
    contrast: float
    entropy: float
    sharpness: float
    colourfulness: float
    sha256: str
    phash: str


# --------------------------------------------------------------------------- measurements


def image_stats(path: str | os.PathLike, *, size: tuple[int, int] | None = None) -> ImageStats:
    """Measure one image: size, brightness, contrast, entropy, sharpness, colour, hashes.

    Args:
        path: the image file.
        size: its upright (width, height) when already known (saves reading the header).

    Raises:
        ImageError: the image cannot be read.
    """
    import imagehash
    from PIL import Image

    if size is None:
        info = inspect_image(path, full=False)
        size = (info.width, info.height)
    img = open_image(path, draft=(_STATS_SIDE, _STATS_SIDE))
    img.thumbnail((_STATS_SIDE, _STATS_SIDE), Image.Resampling.BILINEAR)
    gray = img.convert("L")
    grey = np.asarray(gray, dtype=np.float32)  # (H, W)
    if min(grey.shape) >= 3:
        lap = grey[1:-1, :-2] + grey[1:-1, 2:] + grey[:-2, 1:-1] + grey[2:, 1:-1] - 4 * grey[1:-1, 1:-1]
        sharpness = float(lap.var())
    else:
        sharpness = 0.0
    rgb = np.asarray(img.resize((64, 64), Image.Resampling.BILINEAR), dtype=np.int16)  # (64, 64, 3)
    spread = rgb.max(axis=2) - rgb.min(axis=2)
    return ImageStats(
        width=size[0],
        height=size[1],
        brightness=round(float(grey.mean()) / 255.0, 4),
        contrast=round(float(grey.std()) / 255.0, 4),
        entropy=round(float(gray.entropy()), 4),
        sharpness=round(sharpness, 2),
        colourfulness=round(float(spread.mean()), 3),
        sha256=sha256_file(Path(path)),
        phash=str(imagehash.phash(img)),
    )


def measure_images(
    items: Sequence[Any],
    sizes: Mapping[Path, tuple[int, int]],
    progress: ProgressCallback | None,
    workers: int | None = None,
) -> list[ImageStats | str]:
    """:func:`image_stats` of every item (``.path``), in threads (decoding and hashing release the
    GIL), with a ``doctor`` progress event per image; an unreadable one gives its reason instead."""
    ticker = Ticker(progress, "doctor", len(items))

    def measure(item: Any) -> ImageStats | str:
        try:
            return image_stats(item.path, size=sizes.get(item.path))
        except ImageError as exc:
            return exc.reason
        finally:
            ticker.advance()

    with ThreadPoolExecutor(max_workers=workers or min(4, os.cpu_count() or 1)) as pool:
        return list(pool.map(measure, items))


def quality_flags(
    stats: ImageStats, thresholds: QualityThresholds, *, colour_set: bool
) -> list[tuple[str, float, float]]:
    """``(issue, value, threshold)`` for each quality problem of one image."""
    t = thresholds
    out: list[tuple[str, float, float]] = []
    if stats.brightness < t.dark:
        out.append(("dark", stats.brightness, t.dark))
    if stats.brightness > t.bright:
        out.append(("bright", stats.brightness, t.bright))
    low_info = stats.entropy < t.low_information
    if low_info:
        out.append(("low_information", stats.entropy, t.low_information))
    elif stats.sharpness < t.blurry:  # a blank image is low-information, not blurry
        out.append(("blurry", stats.sharpness, t.blurry))
    short, long = sorted((stats.width, stats.height))
    if short < t.tiny:
        out.append(("tiny", float(short), float(t.tiny)))
    if short > 0 and long / short > t.aspect:
        out.append(("odd_aspect", round(long / short, 2), t.aspect))
    if colour_set and not low_info and stats.colourfulness < t.grayscale:
        out.append(("grayscale", stats.colourfulness, t.grayscale))
    return out


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    table = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
    return table[x.view(np.uint8).reshape(*x.shape, 8)].sum(axis=-1)


def near_pairs_hash(hashes: Sequence[str], max_distance: int) -> list[tuple[int, int, int]]:
    """``(i, j, bits)`` for pairs whose 64-bit perceptual hashes differ in at most ``max_distance`` bits."""
    h = np.array([int(x, 16) for x in hashes], dtype=np.uint64)
    n = len(h)
    block = max(1, 8_000_000 // max(n, 1))
    pairs: list[tuple[int, int, int]] = []
    for start in range(0, n, block):
        # rows [start, start+B) against columns [start, N): each pair once, upper triangle
        dist = _popcount(np.bitwise_xor(h[start : start + block, None], h[None, start:]))  # (B, N - start)
        for i, j in zip(*np.nonzero(dist <= max_distance), strict=True):
            if i < j:
                pairs.append((start + int(i), start + int(j), int(dist[i, j])))
    return pairs


def near_pairs_embedding(features: np.ndarray, min_similarity: float) -> list[tuple[int, int, int]]:
    """``(i, j, 0)`` for pairs whose embedding cosine similarity is at least ``min_similarity``."""
    x = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    block = max(1, 8_000_000 // max(len(x), 1))
    pairs: list[tuple[int, int, int]] = []
    for start in range(0, len(x), block):
        sim = x[start : start + block] @ x[start:].T  # (B, N - start)
        for i, j in zip(*np.nonzero(sim >= min_similarity), strict=True):
            if i < j:
                pairs.append((start + int(i), start + int(j), 0))
    return pairs


def groups(n: int, pairs: Sequence[tuple[int, int, int]]) -> list[tuple[list[int], int]]:
    """Connected components (size ≥ 2) of the pair graph, with the largest distance inside."""
    parent = list(range(n))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    worst: dict[int, int] = {}
    for a, b, d in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[rb] = ra
            worst[ra] = max(worst.get(ra, 0), worst.pop(rb, 0))
        worst[ra] = max(worst.get(ra, 0), d)
    members: dict[int, list[int]] = {}
    for i in range(n):
        members.setdefault(find(i), []).append(i)
    return [(m, worst.get(root, 0)) for root, m in members.items() if len(m) > 1]
