"""The feature extractor behind :mod:`sortsight.index`: a headless backbone run by the fastest engine.

The backbone is :func:`sortsight.features.feature_backbone` (a pretrained network without its
head); it runs through :func:`sortsight.engines.build_engine`, so ``"auto"`` takes ONNX Runtime,
then a frozen TorchScript graph, then eager PyTorch — the same choice ``sortsight predict``
makes. For the ONNX export to be cached like a model folder's, the backbone's weights are
written once to ``$SORTSIGHT_CACHE/backbones/<model>-<size>/model.safetensors``.

:func:`iter_embeddings` streams files: DataLoader worker processes read, hash (SHA-256) and
decode images while the engine computes the previous batch, as in ``sortsight predict``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sortsight.config import DEFAULT_BATCH_SIZE
from sortsight.engines import Engine, build_engine
from sortsight.errors import ImageError
from sortsight.fileops import atomic_write_text, cache_dir, staged_file
from sortsight.images import open_image
from sortsight.model_folder import LoadedModel
from sortsight.models import BUNDLED_MODELS, DataConfig, resolve_model_name

logger = logging.getLogger(__name__)

__all__ = ["Embedder", "default_image_size", "iter_embeddings", "load_embedder"]


def default_image_size(model: str) -> int:
    """The square input side a backbone was trained at (224 for names sortsight does not bundle)."""
    spec = BUNDLED_MODELS.get(resolve_model_name(model))
    return spec.input_size if spec is not None else 224


@dataclass
class Embedder:
    """A backbone ready to embed: ``engine(pixels (B, 3, H, W)) -> (B, D)`` and its transform."""

    engine: Engine
    transform: Any
    model: str
    image_size: int
    dim: int

    @property
    def draft(self) -> tuple[int, int]:
        return (self.image_size, self.image_size)

    def embed(self, images: Sequence[Any]) -> np.ndarray:
        """``(N, D)`` float32 features of images (paths, bytes or PIL images).

        Raises:
            ImageError: an image cannot be opened.
        """
        import torch

        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        pixels = torch.stack([self.transform(open_image(im, draft=self.draft)) for im in images])
        return np.asarray(self.engine(pixels), dtype=np.float32)  # (N, D)


def _weights_folder(net: Any, model: str, image_size: int) -> Path:
    """A folder holding the backbone's weights, so the ONNX export is cached by their digest."""
    from safetensors.torch import save_model

    safe = resolve_model_name(model).replace("/", "--")
    folder = cache_dir() / "backbones" / f"{safe}-{image_size}"
    weights = folder / "model.safetensors"
    if not weights.is_file():
        with staged_file(weights) as tmp:
            save_model(net, str(tmp))
    # the exported graph has a fixed input side: it is part of what the cached export is made from
    config = json.dumps({"model": resolve_model_name(model), "image_size": image_size, "headless": True})
    written = folder / "config.json"
    if not written.is_file() or written.read_text(encoding="utf-8") != config:
        atomic_write_text(written, config)
    return folder


@functools.lru_cache(maxsize=2)
def load_embedder(
    model: str, image_size: int, *, engine: str = "auto", threads: int | None = None
) -> Embedder:
    """The backbone of ``model`` at ``image_size`` behind the fastest engine that runs it here.

    The last two are kept: a studio or a script embedding again does not load the network again.

    Raises:
        ModelError: unknown model, weights not available offline, or the requested engine fails.
    """
    import torch

    from sortsight.features import feature_backbone

    net, transform = feature_backbone(model, image_size)
    with torch.inference_mode():
        dim = int(net(torch.zeros(1, 3, image_size, image_size)).shape[-1])  # (1, D)
    folder = _weights_folder(net, model, image_size) if engine in ("auto", "onnx") else cache_dir()
    loaded = LoadedModel(
        module=net,
        labels=[f"f{i}" for i in range(dim)],
        data_config=DataConfig(input_size=image_size),
        name=resolve_model_name(model),
        path=folder,
    )
    runner = build_engine(loaded, engine, threads=threads)
    logger.info("index backbone %s@%d runs on the %s engine", model, image_size, runner.name)
    return Embedder(runner, transform, resolve_model_name(model), image_size, dim)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _HashDecode:
    """Dataset: index → (index, SHA-256 or "", (3, H, W) tensor or None, failure reason or "")."""

    def __init__(self, paths: Sequence[Path], transform: Any, draft: tuple[int, int]) -> None:
        self.paths, self.transform, self.draft = paths, transform, draft

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, str, Any, str]:
        try:
            sha = _sha256(self.paths[i])
        except OSError:
            return i, "", None, "not found"
        try:
            return i, sha, self.transform(open_image(self.paths[i], draft=self.draft)), ""
        except ImageError as exc:
            return i, sha, None, exc.reason
        except Exception as exc:  # a transform failing on a strange image must not stop the index
            return i, sha, None, type(exc).__name__


def _collate(items: list[tuple[int, str, Any, str]]) -> tuple[list[tuple[int, str, str]], Any]:
    import torch

    good = [t for _, _, t, _ in items if t is not None]
    meta = [(i, sha, reason) for i, sha, _, reason in items]
    return meta, torch.stack(good) if good else None  # (B, 3, H, W)


def _worker_init(_: int) -> None:
    import torch

    torch.set_num_threads(1)  # decoding processes must not compete with the engine's threads


def iter_embeddings(
    embedder: Embedder,
    paths: Sequence[Path],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    num_workers: int | None = None,
) -> Iterator[tuple[int, str, np.ndarray | None, str]]:
    """Per file, in order: ``(index, sha256, (D,) vector or None, failure reason or "")``."""
    from torch.utils.data import DataLoader

    from sortsight.predict import default_workers

    workers = default_workers() if num_workers is None else num_workers
    workers = min(workers, max(1, len(paths) // batch_size))
    loader: Any = DataLoader(
        _HashDecode(paths, embedder.transform, embedder.draft),  # type: ignore[arg-type]
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_collate,
        worker_init_fn=_worker_init if workers else None,
        prefetch_factor=2 if workers else None,
    )
    for meta, pixels in loader:
        vectors = np.asarray(embedder.engine(pixels), dtype=np.float32) if pixels is not None else None
        k = 0
        for i, sha, reason in meta:
            if reason:
                yield i, sha, None, reason
            else:
                assert vectors is not None
                yield i, sha, vectors[k], ""
                k += 1
