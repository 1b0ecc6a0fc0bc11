"""The one exception family of sortsight.

Every error a user can cause is a :class:`SortsightError` whose message is one line:
what was found, and what to do about it. Front-ends print ``Error: <message>`` and exit
non-zero; anything that is not a ``SortsightError`` is a bug and keeps its traceback.

    SortsightError
    ├── ConfigError        bad or unknown option, bad config file
    ├── DataError          no images, one class, missing files, bad columns, ...
    │   └── ImageError     one image cannot be used (carries ``reason``)
    ├── ModelError         unknown model, weights not available offline, bad model folder
    ├── TrainError         training cannot start or continue (out of memory, output exists, ...)
    ├── PredictError       prediction / sorting problems
    └── ExportError        export, Space folder, hub push
"""

from __future__ import annotations

import difflib

__all__ = [
    "ConfigError",
    "DataError",
    "ExportError",
    "ImageError",
    "ModelError",
    "PredictError",
    "SortsightError",
    "TrainError",
    "closest",
    "first_line",
]


class SortsightError(Exception):
    """Base class: a problem the user can fix. ``str(err)`` is a one-line message."""


class ConfigError(SortsightError):
    """An option or config file is wrong."""


class DataError(SortsightError):
    """The data cannot be used as given."""


class ImageError(DataError):
    """One image cannot be opened; ``reason`` is a short machine-friendly phrase."""

    def __init__(self, message: str, *, reason: str, path: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.path = path


class ModelError(SortsightError):
    """A model cannot be created, loaded or found."""


class TrainError(SortsightError):
    """Training cannot start or go on."""


class PredictError(SortsightError):
    """Prediction or sorting cannot go on."""


class ExportError(SortsightError):
    """An export or upload failed."""


def closest(name: str, choices: list[str] | tuple[str, ...], *, cutoff: float = 0.5) -> str | None:
    """The valid name closest to ``name`` (for a message's "did you mean"), or None when nothing is close."""
    found = difflib.get_close_matches(name, list(choices), n=1, cutoff=cutoff)
    return found[0] if found else None


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (a library's can run to many), or its class name when it
    has none: what a one-line error quotes of the cause."""
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__
