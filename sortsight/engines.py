"""Inference engines: the same network run by eager PyTorch, a frozen TorchScript graph, or ONNX Runtime.

An engine maps a batch of preprocessed images, a ``(B, 3, H, W)`` float32 tensor, to
``(B, num_labels)`` float32 logits as a NumPy array. :func:`build_engine` picks one by name;
``"auto"`` takes the fastest that works here. Measured on a 2-core AVX2 machine
(EfficientNet-Lite0, batch 32, 224 px): ONNX Runtime ~80 img/s, ``torch.jit.freeze`` ~47,
eager ~30; on a 2-core AVX512 Xeon, end to end with decoding, 84 / 27 / 27 — so ``auto`` tries
ONNX Runtime, then jit, then eager.

Two ONNX graphs can be made from one model. The *quick* graph comes from the TorchScript exporter
(1–2 s for Lite0 at 224 px on a 2-core AMD EPYC, AVX2); the *optimised* one from the
``torch.export``-based exporter, which ONNX Runtime runs faster but which takes ~15 s to make
there (``benchmarks/predict_speed.py --export`` measures both, end to end). A job exports the
quick graph, unless it is known to have at least :data:`OPTIMISED_PAYS_FROM` images, where the
faster graph repays its export; ``sortsight export --onnx`` (a file to ship) writes the optimised
one. Either exporter is the other's fallback.

Except for a small job: even the quick export, its parity check and the session cost a second or
two, so when the caller says how many images will be seen and there are fewer than
:data:`ONNX_PAYS_FROM` (scaled by the input's pixels: a smaller image saves less per image),
``auto`` runs eager PyTorch and exports nothing. A later, bigger job exports then.

ONNX graphs are exported once per model and cached (``$SORTSIGHT_CACHE/onnx`` or
``~/.cache/sortsight/onnx``); a ``model.onnx`` written by ``sortsight export --onnx`` next to the
weights is used directly when it was made from those weights. Exported files carry the labels
and the preprocessing in their ``metadata_props``, so an ``.onnx`` file alone is enough to predict.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from sortsight.errors import ModelError
from sortsight.model_folder import LoadedModel
from sortsight.onnx_graphs import (
    OPTIMISED_PAYS_FROM,
    OnnxEngine,
    cached_graph,
    export_onnx,
    find_current_onnx,
    onnx_cache_dir,
    quiet,
    read_onnx_metadata,
    source_digest,
    wants_optimised,
)

logger = logging.getLogger(__name__)

__all__ = [
    "ENGINE_NAMES",
    "ONNX_PAYS_FROM",
    "OPTIMISED_PAYS_FROM",
    "EagerEngine",
    "Engine",
    "FlipTTA",
    "JitEngine",
    "OnnxEngine",
    "build_engine",
    "export_onnx",
    "export_pays",
    "find_current_onnx",
    "onnx_cache_dir",
    "read_onnx_metadata",
    "source_digest",
    "wants_optimised",
]

ENGINE_NAMES = ("auto", "onnx", "jit", "eager")
_AUTO_ORDER = ("onnx", "jit", "eager")  # fastest first, as measured (see the module docstring)
#: at 224 px, the fewest images for which ``auto`` exports a first (quick) ONNX graph rather than run eager
ONNX_PAYS_FROM = 100


class Engine(Protocol):
    """``engine(pixels) -> logits``: ``(B, 3, H, W)`` float32 tensor → ``(B, C)`` float32 array."""

    name: str

    def __call__(self, pixels: Any) -> np.ndarray: ...


class EagerEngine:
    """Plain PyTorch in inference mode, channels-last memory layout (faster for convnets on CPU)."""

    name = "eager"

    def __init__(self, module: Any, *, channels_last: bool = True) -> None:
        import torch

        self.module = module.eval()
        self.channels_last = channels_last
        if channels_last:
            self.module = self.module.to(memory_format=torch.channels_last)

    def __call__(self, pixels: Any) -> np.ndarray:
        import torch

        x = torch.as_tensor(pixels, dtype=torch.float32)  # (B, 3, H, W)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return self.module(x).float().numpy()  # type: ignore[no-any-return]


class FlipTTA:
    """Flip test-time augmentation around any engine: the image and its mirror image are both run
    and their probabilities averaged; returns the log of that mean, so ``softmax`` of the output
    is the averaged probability. Twice the compute; off by default (see docs/training.md for what
    it changed on the benchmark sets). Not for collections where mirroring changes the class."""

    def __init__(self, inner: Engine) -> None:
        self.inner = inner
        self.name = f"{inner.name}+flip"

    def __call__(self, pixels: Any) -> np.ndarray:
        x = np.asarray(pixels.numpy() if hasattr(pixels, "numpy") else pixels, dtype=np.float32)  # (B,3,H,W)
        a, b = self.inner(x), self.inner(np.ascontiguousarray(x[..., ::-1]))

        def prob(z: np.ndarray) -> np.ndarray:
            e = np.exp(z - z.max(1, keepdims=True))
            return e / e.sum(1, keepdims=True)  # type: ignore[no-any-return]

        return np.log((prob(a) + prob(b)) / 2 + 1e-12).astype(np.float32)  # type: ignore[no-any-return]


class JitEngine:
    """A traced and frozen TorchScript graph (``torch.jit.freeze``): constant folding, fused ops."""

    name = "jit"

    def __init__(self, module: Any, input_size: int) -> None:
        import torch

        example = torch.zeros(2, 3, input_size, input_size)  # (B, 3, H, W)
        try:
            with quiet(), torch.inference_mode(False), torch.no_grad():
                traced = torch.jit.trace(module.eval(), example, strict=False)
                self.graph = torch.jit.freeze(traced)
        except Exception as exc:  # tracing fails in many ways on exotic models
            raise ModelError(
                f"This model cannot be traced for the jit engine ({type(exc).__name__}); use --engine eager."
            ) from exc

    def __call__(self, pixels: Any) -> np.ndarray:
        import torch

        with torch.no_grad():
            out = self.graph(torch.as_tensor(pixels, dtype=torch.float32))
        return out.float().numpy()  # type: ignore[no-any-return]


def _export(loaded: LoadedModel, cache_dir: Path | None, *, optimised: bool) -> Path:
    """A new export of ``loaded`` into the cache (the optimised graph when ``optimised``)."""
    target = cached_graph(source_digest(loaded.path), cache_dir, optimised=optimised)
    return export_onnx(loaded, target, optimised=optimised)


def export_pays(images: int | None, input_size: int) -> bool:
    """Whether exporting a first ONNX graph pays for a job of ``images`` images (None: unknown, a
    server or a big folder: it does) at ``input_size`` px; see :data:`ONNX_PAYS_FROM`."""
    return images is None or images >= ONNX_PAYS_FROM * (224 / max(1, input_size)) ** 2


def build_engine(
    loaded: LoadedModel,
    engine: str = "auto",
    *,
    threads: int | None = None,
    cache_dir: str | Path | None = None,
    images: int | None = None,
) -> Engine:
    """An engine running ``loaded``; ``"auto"`` takes the fastest one that works (onnx → jit → eager),
    or eager when ``images`` (how many the job will see, when known) are too few for a first ONNX
    export to pay (:func:`export_pays`); a graph exported before is used whatever the number.

    Raises:
        ModelError: an explicitly requested engine cannot run this model; an unknown engine name.
    """
    if engine not in ENGINE_NAMES:
        from sortsight.errors import closest

        hint = closest(engine, ENGINE_NAMES)
        tip = f" Did you mean '{hint}'?" if hint else ""
        raise ModelError(f"Unknown engine '{engine}'.{tip} Choose one of: {', '.join(ENGINE_NAMES)}.")
    order = _AUTO_ORDER if engine == "auto" else (engine,)
    cache = Path(cache_dir) if cache_dir is not None else None
    small = engine == "auto" and not export_pays(images, loaded.data_config.input_size)
    optimised = wants_optimised(images) and not small  # a small job uses any graph made before
    found = find_current_onnx(loaded.path, cache, optimised=optimised) if "onnx" in order else None
    if small and found is None:
        order = ("eager",)  # a small job: nothing exported for it
    last: Exception | None = None
    for name in order:
        try:
            if name == "onnx":
                graph = found or _export(loaded, cache, optimised=optimised)
                return OnnxEngine(graph, threads=threads)
            if name == "jit":
                return JitEngine(loaded.module, loaded.data_config.input_size)
            return EagerEngine(loaded.module)
        except (ModelError, OSError) as exc:
            if engine != "auto":
                if isinstance(exc, OSError):
                    raise ModelError(
                        f"Could not prepare the {name} engine: {exc}. Try --engine eager."
                    ) from exc
                raise
            logger.info("engine %s unavailable for %s: %s", name, loaded.path, exc)
            last = exc
    raise last or ModelError("No inference engine could run this model.")  # pragma: no cover
