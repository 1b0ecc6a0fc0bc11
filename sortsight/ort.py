"""ONNX Runtime sessions, set up the one way sortsight runs every graph (predict's engine and the
training's frozen pass alike)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["ort_session"]


def _default_threads() -> int:
    import torch

    return max(1, torch.get_num_threads())


def ort_session(model: str | Path | bytes, *, threads: int | None = None, spin: bool = False) -> Any:
    """An ONNX Runtime CPU session as sortsight runs every graph: ``threads`` compute threads (default:
    torch's setting), one inter-op thread, all graph optimisations, idle threads that sleep unless
    ``spin``, only errors logged."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or _default_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    options.log_severity_level = 3
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
