"""Progress reporting: the library never prints, it calls a callback.

Long-running functions (training, predicting, doctoring, fetching) take
``progress: ProgressCallback | None``. Front-ends render the events: the CLI as a rich
progress bar, the studio by streaming them, tests by collecting them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ProgressCallback", "ProgressEvent", "Ticker", "emit"]


@dataclass(frozen=True)
class ProgressEvent:
    """One progress report.

    Attributes:
        phase: what is happening, e.g. ``"features"``, ``"train"``, ``"predict"``.
        step: units done so far in this phase.
        total: units in this phase (0 when unknown).
        metrics: latest numbers worth showing (loss, accuracy, ...).
        eta: seconds left in this phase, when it can be estimated.
        message: an optional human sentence ("Estimated total time: about 6 minutes").
    """

    phase: str
    step: int
    total: int
    metrics: dict[str, Any] = field(default_factory=dict)
    eta: float | None = None
    message: str = ""


ProgressCallback = Callable[[ProgressEvent], None]


def emit(progress: ProgressCallback | None, event: ProgressEvent) -> None:
    """Send ``event`` to ``progress`` if there is one."""
    if progress is not None:
        progress(event)


class Ticker:
    """Counts steps in one phase and reports them with a linear ETA.

    Example:
        >>> events = []
        >>> t = Ticker(events.append, "predict", total=10)
        >>> t.advance(5)
        >>> events[-1].step
        5
    """

    def __init__(self, progress: ProgressCallback | None, phase: str, total: int) -> None:
        self.progress = progress
        self.phase = phase
        self.total = total
        self.step = 0
        self._start = time.perf_counter()

    def advance(self, n: int = 1, **metrics: Any) -> None:
        self.step += n
        elapsed = time.perf_counter() - self._start
        eta = None
        if self.total and self.step:
            eta = max(0.0, elapsed / self.step * (self.total - self.step))
        emit(self.progress, ProgressEvent(self.phase, self.step, self.total, dict(metrics), eta))

    def say(self, message: str) -> None:
        emit(self.progress, ProgressEvent(self.phase, self.step, self.total, message=message))
