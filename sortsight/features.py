"""Frozen-backbone embeddings: the pooled features of a pretrained network, cached on disk.

Used by training (the fast logistic-regression head phase) and by the data doctor (near
duplicates, likely mislabels). Decoding runs in a thread beside the network, so a 2-core
laptop keeps both busy.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from sortsight.config import DEFAULT_BATCH_SIZE, DEFAULT_MODEL
from sortsight.errors import DataError
from sortsight.fileops import atomic_write, cache_dir
from sortsight.progress import ProgressCallback, Ticker

logger = logging.getLogger(__name__)

__all__ = ["extract_features", "feature_backbone"]


def feature_backbone(model: str = DEFAULT_MODEL, image_size: int = 224) -> tuple[Any, Any]:
    """A pretrained network with no head (``images -> (B, D)`` pooled features) and its transform."""
    from sortsight.geometry import eval_transform
    from sortsight.models import create_model

    net, data_config = create_model(model, 1, pretrained=True, input_size=image_size)
    net.reset_classifier(0)
    net.eval()
    return net, eval_transform(data_config)


def _cache_key(paths: Sequence[Path], model: str, image_size: int) -> str:
    digest = hashlib.sha256(f"{model}|{image_size}".encode())
    for p in paths:
        st = p.stat()
        digest.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:32]


def _batches(paths: Sequence[Path], batch_size: int) -> Iterator[Sequence[Path]]:
    for start in range(0, len(paths), batch_size):
        yield paths[start : start + batch_size]


def extract_features(
    paths: Sequence[str | Path],
    *,
    model: str = DEFAULT_MODEL,
    image_size: int = 224,
    batch_size: int = DEFAULT_BATCH_SIZE,
    use_cache: bool = True,
    progress: ProgressCallback | None = None,
) -> np.ndarray:
    """Pooled features of a frozen pretrained backbone for each image, in order.

    Args:
        paths: image files (already verified; an unreadable one is a ``DataError``).
        model: backbone name (bundled names need no network).
        image_size: square input side.
        batch_size: images per forward pass.
        use_cache: reuse / store the result under :func:`cache_dir` (keyed by paths, sizes,
            modification times, model and size).
        progress: receives ``phase="features"`` events.

    Returns:
        ``(N, D)`` float32 array.

    Example:
        >>> feats = extract_features(["a.jpg", "b.jpg"])  # doctest: +SKIP
        >>> feats.shape  # doctest: +SKIP
        (2, 1280)
    """
    import torch

    from sortsight.images import open_image

    files = [Path(p) for p in paths]
    if not files:
        return np.zeros((0, 0), dtype=np.float32)
    cache_file = cache_dir() / "features" / f"{_cache_key(files, model, image_size)}.npy"
    if use_cache and cache_file.is_file():
        cached = np.load(cache_file, allow_pickle=False)
        if cached.shape[0] == len(files):
            return cached
    net, transform = feature_backbone(model, image_size)
    net = net.to(memory_format=torch.channels_last)
    draft = (image_size, image_size)

    def load(batch: Sequence[Path]) -> Any:
        tensors = []
        for path in batch:
            try:
                tensors.append(transform(open_image(path, draft=draft)))
            except DataError as exc:
                raise DataError(
                    f"Image '{path}' cannot be read ({exc}). Run 'sortsight check' on the data."
                ) from exc
        return torch.stack(tensors).contiguous(memory_format=torch.channels_last)

    ticker = Ticker(progress, "features", len(files))
    out: list[np.ndarray] = []
    with ThreadPoolExecutor(max_workers=1) as pool, torch.inference_mode():
        batches = list(_batches(files, batch_size))
        pending = pool.submit(load, batches[0])
        for i in range(len(batches)):
            images = pending.result()  # (B, 3, H, W)
            if i + 1 < len(batches):
                pending = pool.submit(load, batches[i + 1])  # decode the next batch while this one runs
            out.append(net(images).float().numpy())  # (B, D)
            ticker.advance(len(batches[i]))
    features = np.concatenate(out).astype(np.float32, copy=False)
    if use_cache:
        atomic_write(cache_file, lambda fh: np.save(fh, features, allow_pickle=False))
    return features
