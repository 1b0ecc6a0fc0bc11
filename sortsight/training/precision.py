"""Run-time choices for CPU speed: thread count and whether bf16 autocast pays on this CPU.

bf16 is decided by measurement, never hard-coded: on an AVX512_BF16/AMX CPU a bf16 training
step of the tuned layers ran ~2.5x faster than fp32 here, while on an AVX2-only machine bf16
matmul ran ~400x slower. So we look at ``torch.backends.cpu.get_cpu_capability()`` first
(skip the measurement where bf16 cannot be fast) and then time a few real steps both ways, once
per model and machine: later runs reuse that measurement (kept by :mod:`speeds`) unless it was
too close to call.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["Precision", "autocast", "choose_precision", "cpu_capability", "set_threads"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Precision:
    """The decision and the numbers behind it (kept in ``sortsight.json``)."""

    dtype: str  # "fp32" | "bf16"
    reason: str
    fp32_seconds: float | None = None
    bf16_seconds: float | None = None
    remembered: bool = False  # decided from an earlier measurement on this machine

    @property
    def reusable(self) -> bool:
        """Whether a later warm-up of the same model here may decide from these step times."""
        return _clear(self.fp32_seconds or 0.0, self.bf16_seconds or 0.0)

    def still_holds(self, step_seconds: float) -> bool:
        """Whether a step timed now agrees with the remembered one of its precision (0.67-1.5x);
        if not, the machine is not as it was when measured (load, another data size): measure anew."""
        known = self.bf16_seconds if self.dtype == "bf16" else self.fp32_seconds
        return not (self.remembered and known) or 0.67 <= step_seconds / known <= 1.5


def cpu_capability() -> str:
    """What PyTorch's CPU kernels were dispatched for: ``"AVX2"``, ``"AVX512"``, ``"DEFAULT"``, ..."""
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # older torch
        return "unknown"


def _cpu_has_fast_bf16() -> bool:
    """True when the CPU flags promise native bf16 (AVX512_BF16 or AMX); else bf16 is emulated."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = fh.read()
    except OSError:
        return cpu_capability() in ("AVX512", "AMX")  # no cpuinfo (macOS, Windows): let timing decide
    return "avx512_bf16" in flags or "amx_bf16" in flags


def set_threads() -> int:
    """Size torch's intra-op threads to the cores this process may use (divided among local ranks)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    local_procs = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    threads = max(1, cores // max(1, local_procs))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


@contextlib.contextmanager
def autocast(dtype: str) -> Iterator[None]:
    """bf16 autocast on the CPU when ``dtype == "bf16"``; a no-op otherwise."""
    if dtype == "bf16":
        with torch.autocast("cpu", dtype=torch.bfloat16):
            yield
    else:
        yield


def _time_both(step: Callable[[str], None], repeats: int = 3) -> tuple[float, float]:
    """Best-of-``repeats`` seconds per step for fp32 and bf16, interleaved so that load from other
    processes hits both alike."""
    step("fp32")  # warm-up: first calls pay for allocation and kernel selection
    step("bf16")
    best = {"fp32": float("inf"), "bf16": float("inf")}
    for _ in range(repeats):
        for dtype in ("fp32", "bf16"):
            start = time.perf_counter()
            step(dtype)
            best[dtype] = min(best[dtype], time.perf_counter() - start)
    return best["fp32"], best["bf16"]


_MARGIN = 0.75  # bf16 must take under this share of fp32's step time: it also costs a little accuracy
_TRUSTED = (0.6, 0.9)  # a remembered ratio between these is too near the margin to reuse


def _clear(fp32: float, bf16: float) -> bool:
    return fp32 > 0 and bf16 > 0 and not _TRUSTED[0] <= bf16 / fp32 <= _TRUSTED[1]


def choose_precision(
    requested: str, step: Callable[[str], None], remembered: Mapping[str, Any] | None = None
) -> Precision:
    """Pick fp32 or bf16 for training steps.

    Args:
        requested: the config's ``mixed_precision``: ``auto``/``fp16`` (measure), ``bf16``
            (use it if the CPU has native bf16, else fall back with the reason), ``no``/``fp32``.
        step: runs one representative training step under the given dtype (``"fp32"``/``"bf16"``).
        remembered: an earlier measurement of the same steps on this machine (the
            ``fp32_step_seconds`` / ``bf16_step_seconds`` that :mod:`speeds` keeps): its decision is
            reused instead of timing eight steps again, unless its ratio was near the margin.

    Returns:
        The decision, with the measured (or remembered) seconds per step when there were any.
    """
    if requested in ("no", "fp32"):
        return Precision("fp32", "fp32 requested")
    if not _cpu_has_fast_bf16():
        return Precision("fp32", f"no native bf16 on this CPU ({cpu_capability()}); bf16 would be emulated")
    if requested == "bf16":
        return Precision("bf16", "bf16 requested and the CPU has native bf16")
    fp32, bf16 = (float((remembered or {}).get(k) or 0.0) for k in ("fp32_step_seconds", "bf16_step_seconds"))
    known = _clear(fp32, bf16)
    if not known:
        fp32, bf16 = _time_both(step)
        log.info("training step: fp32 %.3fs, bf16 %.3fs", fp32, bf16)
    how = "measured earlier on this machine" if known else "measured"
    if bf16 < _MARGIN * fp32:
        return Precision("bf16", f"bf16 {how} {fp32 / bf16:.1f}x faster", fp32, bf16, known)
    return Precision("fp32", f"bf16 not faster here ({how})", fp32, bf16, known)
