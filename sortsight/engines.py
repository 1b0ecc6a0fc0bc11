"""Inference engines: the same network run by eager PyTorch, a frozen TorchScript graph, or ONNX Runtime.

An engine maps a batch of preprocessed images, a ``(B, 3, H, W)`` float32 tensor, to
``(B, num_labels)`` float32 logits as a NumPy array. :func:`build_engine` picks one by name;
``"auto"`` takes the fastest that works here. Measured on a 2-core AVX2 machine
(EfficientNet-Lite0, batch 32, 224 px): ONNX Runtime ~80 img/s, ``torch.jit.freeze`` ~47,
eager ~30; on a 2-core AVX512 Xeon, end to end with decoding, 84 / 27 / 27 — so ``auto`` tries
ONNX Runtime, then jit, then eager.

Except for a small job: exporting a model's first ONNX graph costs seconds (11.2 s for Lite0 at
224 px on a 2-core AMD EPYC, AVX512, against ONNX Runtime's 138 img/s and eager's 38.5 img/s
there: it pays from ~600 images), so when the caller says how many images will be seen and there
are fewer than :data:`ONNX_PAYS_FROM` (scaled by the input's pixels: a smaller image saves less
per image), ``auto`` runs eager PyTorch and exports nothing. A later, bigger job exports then.

ONNX graphs are exported once per model and cached (``$SORTSIGHT_CACHE/onnx`` or
``~/.cache/sortsight/onnx``); a ``model.onnx`` written by ``sortsight export --onnx`` next to the
weights is used directly when it was made from those weights. Exported files carry the labels
and the preprocessing in their ``metadata_props``, so an ``.onnx`` file alone is enough to predict.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from sortsight import __version__
from sortsight.errors import ModelError, first_line
from sortsight.fileops import cache_dir as _cache_root
from sortsight.model_folder import LoadedModel
from sortsight.models import DataConfig

logger = logging.getLogger(__name__)

__all__ = [
    "ENGINE_NAMES",
    "ONNX_PAYS_FROM",
    "EagerEngine",
    "Engine",
    "FlipTTA",
    "JitEngine",
    "OnnxEngine",
    "build_engine",
    "export_onnx",
    "find_current_onnx",
    "onnx_cache_dir",
    "read_onnx_metadata",
    "source_digest",
]

ENGINE_NAMES = ("auto", "onnx", "jit", "eager")
_AUTO_ORDER = ("onnx", "jit", "eager")  # fastest first, as measured (see the module docstring)
#: at 224 px, the fewest images for which ``auto`` exports a first ONNX graph (measured break-even ~600)
ONNX_PAYS_FROM = 500
_META_PREFIX = "sortsight."


class Engine(Protocol):
    """``engine(pixels) -> logits``: ``(B, 3, H, W)`` float32 tensor → ``(B, C)`` float32 array."""

    name: str

    def __call__(self, pixels: Any) -> np.ndarray: ...


def _default_threads() -> int:
    import torch

    return max(1, torch.get_num_threads())


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


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Hide the exporters' deprecation chatter and progress lines (the library never prints)."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


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
            with _quiet(), torch.inference_mode(False), torch.no_grad():
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


class OnnxEngine:
    """An ONNX graph run by ONNX Runtime's CPU provider.

    Two settings differ from ONNX Runtime's defaults, for decoding and compute to share the
    cores: a batch is run ``micro_batch`` images at a time, and idle threads sleep instead of
    busy-waiting (``spin=False``), so the processes decoding the next batch get the cores
    between the small runs. ``benchmarks/predict_speed.py`` compares them end to end; on a
    2-core Xeon (AVX512, Lite0) its medians were 69.3 img/s with the defaults, 72.1 without
    spinning alone, and 84.3 with both. An image's logits do not depend on its batch.
    """

    name = "onnx"

    def __init__(
        self,
        model: str | Path | bytes,
        *,
        threads: int | None = None,
        micro_batch: int = 4,
        spin: bool = False,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ModelError("The onnx engine needs onnxruntime. Run: pip install onnxruntime") from exc
        self.micro_batch = max(1, int(micro_batch))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or _default_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        options.log_severity_level = 3
        source = model if isinstance(model, bytes) else str(model)
        try:
            self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            first = first_line(exc)
            raise ModelError(
                f"ONNX Runtime cannot load this model: {first}. Re-export it with "
                f"'sortsight export MODEL --onnx'."
            ) from exc
        self.input_name = self.session.get_inputs()[0].name
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)

    def __call__(self, pixels: Any) -> np.ndarray:
        x = pixels.numpy() if hasattr(pixels, "numpy") else np.asarray(pixels)
        x = np.ascontiguousarray(x, dtype=np.float32)  # (B, 3, H, W)
        step = self.micro_batch
        chunks = [x[i : i + step] for i in range(0, len(x), step)] or [x]
        outs = [self.session.run(None, {self.input_name: chunk})[0] for chunk in chunks]
        return np.concatenate(outs).astype(np.float32, copy=False)


# --------------------------------------------------------------------------- ONNX export


def source_digest(model_dir: str | Path) -> str:
    """SHA-256 of what an exported graph is made from: a model folder's weights, config, processor."""
    digest = hashlib.sha256()
    folder = Path(model_dir)
    weights = sorted(p.name for p in folder.glob("*.safetensors"))
    if not weights:
        raise ModelError(f"No .safetensors weights in '{folder}'. Give an HF model folder.")
    for name in [*weights, "config.json", "preprocessor_config.json"]:
        if not (folder / name).is_file():
            continue
        digest.update(name.encode())
        with open(folder / name, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def onnx_cache_dir() -> Path:
    """Where exported graphs are cached: ``$SORTSIGHT_CACHE/onnx`` or ``~/.cache/sortsight/onnx``."""
    return _cache_root() / "onnx"


def _metadata(labels: Sequence[str], data_config: DataConfig, name: str, digest: str) -> dict[str, str]:
    dc = asdict(data_config)
    return {
        "labels": json.dumps(list(labels), ensure_ascii=False),
        "id2label": json.dumps({str(i): label for i, label in enumerate(labels)}, ensure_ascii=False),
        "input_size": str(dc["input_size"]),
        "mean": json.dumps(list(dc["mean"])),
        "std": json.dumps(list(dc["std"])),
        "interpolation": str(dc["interpolation"]),
        "crop_pct": str(dc["crop_pct"]),
        "crop_mode": str(dc["crop_mode"]),
        "input_layout": "NCHW float32, RGB, normalised with mean/std after resize+centre crop",
        "model_name": name,
        _META_PREFIX + "source_sha256": digest,
        _META_PREFIX + "version": __version__,
    }


def _export_proto(module: Any, input_size: int) -> Any:
    """The module as an ONNX ``ModelProto`` with a dynamic batch axis.

    The torch.export-based exporter makes a graph ONNX Runtime runs faster (measured ~1.5x on
    Lite0); the legacy TorchScript exporter is the fallback for models it cannot capture.
    """
    import onnx
    import torch

    module = module.eval()
    example = (torch.zeros(2, 3, input_size, input_size),)  # (B, 3, H, W)
    try:
        with _quiet():
            program = torch.onnx.export(
                module,
                example,
                None,
                dynamo=True,
                verbose=False,
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                input_names=["pixel_values"],
                output_names=["logits"],
            )
        if program is not None:
            return program.model_proto
    except Exception as exc:  # fall back to the legacy exporter
        logger.info("torch.export-based ONNX export failed (%s); using the TorchScript exporter", exc)
    buffer = io.BytesIO()
    try:
        with _quiet():
            torch.onnx.export(
                module,
                example,
                buffer,  # type: ignore[arg-type]
                dynamo=False,
                opset_version=17,
                dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"}},
                input_names=["pixel_values"],
                output_names=["logits"],
            )
    except Exception as exc:
        raise ModelError(
            f"This model cannot be exported to ONNX ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); use --engine jit or eager."
        ) from exc
    return onnx.load_from_string(buffer.getvalue())


def _write_proto(proto: Any, out: Path) -> None:
    from sortsight.fileops import atomic_write

    data = proto.SerializeToString()
    atomic_write(out, lambda fh: fh.write(data))  # a unique temporary name: concurrent exports are safe


def export_onnx(loaded: LoadedModel, out: str | Path | None = None) -> Path:
    """Export a loaded model folder to ONNX, with labels and preprocessing in ``metadata_props``.

    Args:
        loaded: from :func:`sortsight.model_folder.load_model_folder`.
        out: the ``.onnx`` file to write (default: ``model.onnx`` in the model folder).

    Returns:
        The path written (atomically: a temporary file, then a rename).

    Raises:
        ModelError: the model cannot be exported.

    Example:
        >>> from sortsight.model_folder import load_model_folder
        >>> export_onnx(load_model_folder("runs/covers"))  # doctest: +SKIP
        PosixPath('runs/covers/model/model.onnx')
    """
    import onnx

    target = Path(out) if out is not None else Path(loaded.path) / "model.onnx"
    proto = _export_proto(loaded.module, loaded.data_config.input_size)
    meta = _metadata(loaded.labels, loaded.data_config, loaded.name, source_digest(loaded.path))
    _check_parity(proto, loaded)
    from sortsight.multilabel import with_sigmoid_output

    proto, meta = with_sigmoid_output(proto, meta, loaded.path)  # multi-label: + "scores" output
    onnx.helper.set_model_props(proto, meta)
    _write_proto(proto, target)
    return target


def _check_parity(proto: Any, loaded: LoadedModel, tolerance: float = 1e-3) -> None:
    """Refuse an exported graph whose logits differ from PyTorch's on a random batch."""
    import torch

    size = loaded.data_config.input_size
    x = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(0))  # (B, 3, H, W)
    with torch.inference_mode():
        expected = loaded.module.eval()(x).float().numpy()
    got = OnnxEngine(proto.SerializeToString(), threads=1)(x)
    diff = float(np.abs(expected - got).max())
    if not diff <= tolerance:
        raise ModelError(
            f"The ONNX export of this model differs from PyTorch (max logit difference {diff:.2g}); "
            f"use --engine jit or eager."
        )


def read_onnx_metadata(path: str | Path) -> tuple[list[str], DataConfig, str, dict[str, str]]:
    """Labels, preprocessing and model name stored in an exported ``.onnx`` file.

    Raises:
        ModelError: the file is missing or was not exported with this metadata.
    """
    import onnx

    p = Path(path)
    if not p.is_file():
        raise ModelError(f"ONNX file '{p}' not found. Export one with 'sortsight export MODEL --onnx'.")
    try:
        proto = onnx.load(str(p), load_external_data=False)
    except Exception as exc:  # protobuf decode errors
        raise ModelError(
            f"'{p}' is not a readable ONNX file. Export one with 'sortsight export MODEL --onnx'."
        ) from exc
    meta = {prop.key: prop.value for prop in proto.metadata_props}
    if "labels" not in meta or "input_size" not in meta:
        raise ModelError(
            f"'{p}' has no labels/preprocessing metadata. Export it with 'sortsight export "
            f"MODEL --onnx', or give the model folder instead."
        )
    data_config = DataConfig(
        input_size=int(meta["input_size"]),
        mean=tuple(json.loads(meta.get("mean", "[0.5, 0.5, 0.5]"))),  # type: ignore[arg-type]
        std=tuple(json.loads(meta.get("std", "[0.5, 0.5, 0.5]"))),  # type: ignore[arg-type]
        interpolation=meta.get("interpolation", "bicubic"),
        crop_pct=float(meta.get("crop_pct", "1.0")),
        crop_mode=meta.get("crop_mode", "center"),
    )
    return list(json.loads(meta["labels"])), data_config, meta.get("model_name", p.stem), meta


def _cache_file(digest: str, cache_dir: Path | None) -> Path:
    return (cache_dir or onnx_cache_dir()) / f"{digest[:32]}-{__version__}.onnx"


def find_current_onnx(model_dir: str | Path, cache_dir: str | Path | None = None) -> Path | None:
    """An ONNX graph made from exactly this folder's files: its own ``model.onnx`` or a cached export.

    Needs no model load, so a cached model starts fast and light.
    """
    folder = Path(model_dir)
    digest = source_digest(folder)
    beside = folder / "model.onnx"
    if beside.is_file():
        try:
            if read_onnx_metadata(beside)[3].get(_META_PREFIX + "source_sha256") == digest:
                return beside
        except ModelError:
            pass
    cached = _cache_file(digest, Path(cache_dir) if cache_dir is not None else None)
    return cached if cached.is_file() else None


def _onnx_for(loaded: LoadedModel, cache_dir: Path | None, found: Path | None = None) -> Path:
    """A current ONNX file for ``loaded``: the folder's own ``model.onnx``, the cache, or a new export
    (``found``: a current file the caller has already looked up)."""
    found = found if found is not None else find_current_onnx(loaded.path, cache_dir)
    if found is not None:
        return found
    return export_onnx(loaded, _cache_file(source_digest(loaded.path), cache_dir))


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
    current = None
    if engine == "auto" and not export_pays(images, loaded.data_config.input_size):
        current = find_current_onnx(loaded.path, cache)  # used as it is; not exported for a small job
        if current is None:
            order = ("eager",)
    last: Exception | None = None
    for name in order:
        try:
            if name == "onnx":
                return OnnxEngine(_onnx_for(loaded, cache, current), threads=threads)
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
