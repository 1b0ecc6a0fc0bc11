"""The frozen-feature pass: every image once through the frozen trunk and the pretrained tail.

It is the floor on the cost of any model, so it runs on the fastest engine measured here: the
trunk and the pooled features are exported once to ONNX (cached under ``$SORTSIGHT_CACHE/onnx``,
keyed by the weights) and ONNX Runtime's timing on the first batch is compared with eager
PyTorch's on the same images; the faster one runs the rest. ONNX Runtime's idle threads sleep
(no spinning), so the threads decoding the next images (:func:`views.stream_eval`) get the cores
between its small runs. Outputs: the trunk activations (kept for fine-tuning, fp16) and the
pooled features (for the logistic-regression head, float32).
"""

from __future__ import annotations

import hashlib
import io
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sortsight.fileops import atomic_write
from sortsight.progress import ProgressCallback, Ticker
from sortsight.training.split import Split
from sortsight.training.views import stream_eval

__all__ = ["EXPORT_FLOOR_SECONDS", "FrozenPass", "Frozen", "frozen_engine"]

#: the least an ONNX export of a trunk costs (Lite0 with the TorchScript exporter: 1-2 s on a 2-core
#: AVX2 CPU, measured by benchmarks/predict_speed.py --export): a pass eager finishes sooner stays eager
EXPORT_FLOOR_SECONDS = 1.0

log = logging.getLogger(__name__)
_MICRO = 4  # images per ONNX Runtime call: leaves the cores to decoding in between


class _TrunkAndFeatures(nn.Module):
    """uint8 ``(B, 3, S, S)`` → (trunk activations ``(B, C, h, w)``, pooled features ``(B, F)``)."""

    def __init__(self, split: Split) -> None:
        super().__init__()
        self.trunk, self.tail = split.trunk, split.tail
        self.classifier_ids = {id(p) for p in split.classifier.parameters()}  # not used by the features

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        acts = self.trunk(x)
        return acts, self.tail.features(acts)


@dataclass
class Frozen:
    """What the pass made for one list of images."""

    acts: torch.Tensor  # (N, C, h, w) fp16
    features: torch.Tensor  # (N, F) float32
    kept: list[int]
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def concat(self, other: Frozen, offset: int) -> Frozen:
        """This pass and ``other`` (over the next slice of the list, starting at ``offset``) as one."""
        kept = self.kept + [i + offset for i in other.kept]
        failed, seconds = self.failed + other.failed, self.seconds + other.seconds
        if not other.kept or not self.kept:
            base = self if self.kept else other
            return Frozen(base.acts, base.features, kept, failed, seconds)
        return Frozen(
            torch.cat([self.acts, other.acts]),
            torch.cat([self.features, other.features]),
            kept,
            failed,
            seconds,
        )

    def reindexed(self, order: Sequence[int]) -> Frozen:
        """This pass over a list reordered by ``order`` (:func:`sortsight._sampling.spread_first`),
        its ``kept`` given as indices into the original list."""
        return replace(self, kept=[order[i] for i in self.kept])


class FrozenPass:
    """``run(paths)`` → :class:`Frozen`, on the engine chosen by :func:`frozen_engine`.

    ``images``: how many images this pass will see over all its runs (a training run's train,
    validation and test images). The engine is chosen once, on the first run, for all of them, so
    a first run over a few images (the sample an estimate is timed on) must not decide that an
    export does not pay. Default: each run's own count.
    """

    def __init__(
        self, split: Split, data_config: Any, *, engine: str = "auto", images: int | None = None
    ) -> None:
        self.split, self.data_config, self.requested = split, data_config, engine
        self.images = images
        self.net = _TrunkAndFeatures(split).eval()
        self.session: Any = None
        self.engine = ""
        self.timing: dict[str, float] = {}
        self.setup_seconds = 0.0  # spent choosing the engine (exporting, timing)
        self.pending = 0  # images the engine will serve (a small job is not worth an export)

    def _eager(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.split.tail.eval()
        with torch.inference_mode():
            acts, feats = self.net(x)
        return acts, feats.float()

    def _onnx(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xs = x.numpy()
        outs = [self.session.run(None, {"pixels": xs[i : i + _MICRO]}) for i in range(0, len(xs), _MICRO)]
        acts = np.concatenate([o[0] for o in outs])
        feats = np.concatenate([o[1] for o in outs])
        return torch.from_numpy(acts), torch.from_numpy(feats).float()

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 ``(B, 3, S, S)`` → (acts, features); the first call chooses the engine."""
        if not self.engine:
            t = time.perf_counter()
            self.engine, self.session, self.timing = frozen_engine(self, x)
            self.setup_seconds = time.perf_counter() - t
        return self._onnx(x) if self.engine == "onnx" else self._eager(x)

    def run(
        self,
        paths: Sequence[str | Path],
        *,
        progress: ProgressCallback | None = None,
        phase: str = "features",
    ) -> Frozen:
        """Decode (ahead, in threads) and pass every readable image of ``paths``."""
        start, setup = time.perf_counter(), self.setup_seconds
        failed: list[tuple[str, str]] = []
        kept: list[int] = []
        acts: list[torch.Tensor] = []
        feats: list[torch.Tensor] = []
        ticker = Ticker(progress, phase, total=len(paths))
        self.pending = max(len(paths), self.images or 0)
        for idx, pixels in stream_eval(paths, self.data_config, failed=failed):
            a, f = self(pixels)
            kept += idx
            acts.append(a.to(torch.float16))
            feats.append(f)
            ticker.advance(len(idx))
        seconds = time.perf_counter() - start - (self.setup_seconds - setup)  # without choosing the engine
        if not kept:
            return Frozen(torch.zeros(0), torch.zeros(0), [], failed, seconds)
        return Frozen(torch.cat(acts), torch.cat(feats), kept, failed, seconds)


def _onnx_key(net: _TrunkAndFeatures, side: int) -> str:
    """Digest of what the graph computes: versions, input size and the weights it uses (not the
    classifier, which the features do not pass through, so every run of a model shares one graph)."""
    import onnxruntime

    digest = hashlib.sha256(f"{torch.__version__}|{onnxruntime.__version__}|{side}|v1".encode())
    for name, tensor in net.state_dict(keep_vars=True).items():
        if id(tensor) in net.classifier_ids:
            continue
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()[:24]


def _onnx_path(net: _TrunkAndFeatures, side: int) -> Path:
    from sortsight.fileops import cache_dir

    return cache_dir() / "onnx" / f"frozen-{_onnx_key(net, side)}.onnx"


def _onnx_session(net: _TrunkAndFeatures, side: int) -> Any:
    """An ONNX Runtime session for ``net`` (exported once per weights and size, then cached)."""
    from sortsight.ort import ort_session

    path = _onnx_path(net, side)
    if not path.is_file():
        buffer = io.BytesIO()
        with torch.no_grad():
            torch.onnx.export(  # the TorchScript exporter: seconds, where torch.export takes ~30 s here
                net,
                (torch.zeros(2, 3, side, side, dtype=torch.uint8),),
                buffer,  # type: ignore[arg-type]
                dynamo=False,
                opset_version=17,
                input_names=["pixels"],
                output_names=["acts", "features"],
                dynamic_axes={"pixels": {0: "batch"}, "acts": {0: "batch"}, "features": {0: "batch"}},
            )
        atomic_write(path, lambda fh: fh.write(buffer.getvalue()))
    return ort_session(path)


def frozen_engine(frozen: FrozenPass, x: torch.Tensor) -> tuple[str, Any, dict[str, float]]:
    """Time eager PyTorch and ONNX Runtime on the images ``x`` (a first batch); return the faster
    (``"onnx"`` only when its outputs match eager's), its session and the seconds per image.

    With ``"auto"``, a pass that eager PyTorch would finish in less than
    :data:`EXPORT_FLOOR_SECONDS` (a few small images) runs eager unless a graph was made before:
    the export alone would cost more than the whole pass."""
    import warnings

    sample = x[: max(_MICRO, min(len(x), 8))]

    def per_image(fn: Any) -> float:
        fn(sample[:_MICRO])  # warm-up: allocation and kernel selection
        t = time.perf_counter()
        fn(sample)
        return (time.perf_counter() - t) / len(sample)

    timing = {"eager_seconds_per_image": per_image(frozen._eager)}
    if frozen.requested == "eager":
        return "eager", None, timing
    eager_pass = timing["eager_seconds_per_image"] * frozen.pending
    small = frozen.requested == "auto" and eager_pass < EXPORT_FLOOR_SECONDS
    if small and not _onnx_path(frozen.net, int(x.shape[-1])).is_file():  # a graph made before is used
        timing["eager_pass_seconds"] = eager_pass  # an export could not be won back
        return "eager", None, timing
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = time.perf_counter()
            frozen.session = _onnx_session(frozen.net, int(x.shape[-1]))
            timing["onnx_setup_seconds"] = time.perf_counter() - t
        timing["onnx_seconds_per_image"] = per_image(frozen._onnx)
        ref, got = frozen._eager(sample[:2])[1], frozen._onnx(sample[:2])[1]
        if not torch.allclose(ref, got, atol=1e-3 * (1 + float(ref.abs().max()))):
            raise ValueError("ONNX features differ from eager PyTorch's")
    except Exception as exc:  # export or runtime trouble: eager always works
        log.info(
            "ONNX Runtime not used for the frozen pass: %s", str(exc).splitlines()[0] if str(exc) else exc
        )
        return "eager", None, timing
    if frozen.requested == "onnx" or timing["onnx_seconds_per_image"] < timing["eager_seconds_per_image"]:
        return "onnx", frozen.session, timing
    return "eager", None, timing
