"""Where the library's log records and the warnings of other libraries go during a command.

Normal output shows only what sortsight says: its own warnings (``Warning: …`` on stderr).
Everything else (sortsight's info lines, warnings from torch, timm, transformers, PIL, …) is
appended to one log file, ``$SORTSIGHT_LOG`` or ``<cache>/sortsight.log``, so nothing is lost
but nothing scares a newcomer either; ``sortsight --verbose CMD`` also shows them on stderr.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any, TextIO

from sortsight.fileops import cache_dir

__all__ = ["capture_library_output", "log_path"]

_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"


def log_path() -> Path:
    """The command-line log file: ``$SORTSIGHT_LOG``, else ``sortsight.log`` in the cache folder."""
    return Path(os.environ.get("SORTSIGHT_LOG") or cache_dir() / "sortsight.log").expanduser()


class _OwnWarnings(logging.Filter):
    """Pass sortsight's own warnings (meant for the user) to the terminal, nothing else."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name.split(".")[0] == "sortsight" and record.levelno >= logging.WARNING


def _file_handler(path: Path) -> logging.Handler | None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = RotatingFileHandler(path, maxBytes=2_000_000, backupCount=1, delay=True, encoding="utf-8")
    except OSError:  # a read-only home must not stop the command
        return None
    handler.setFormatter(logging.Formatter(_FORMAT))
    return handler


@contextlib.contextmanager
def capture_library_output(command: str, *, verbose: bool = False) -> Iterator[Path]:
    """Route log records and Python warnings to the log file while ``command`` runs.

    Restores the logging and warnings state afterwards (commands also run in-process, e.g. in
    tests). Yields the log file's path.
    """
    path = log_path()
    root = logging.getLogger()
    own = logging.getLogger("sortsight")
    terminal = logging.StreamHandler(sys.stderr)
    terminal.setFormatter(logging.Formatter("%(message)s" if verbose else "Warning: %(message)s"))
    if not verbose:
        terminal.addFilter(_OwnWarnings())
    handlers = [h for h in (_file_handler(path), terminal) if h is not None]
    old_root, old_own = root.level, own.level
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(min(old_root, logging.WARNING))
    own.setLevel(logging.INFO)
    log = logging.getLogger("py.warnings")

    def show(message: Any, category: Any, filename: str, lineno: int, file: TextIO | None = None,
             line: str | None = None) -> None:
        log.warning("%s", warnings.formatwarning(message, category, filename, lineno, line).rstrip())

    try:
        with warnings.catch_warnings():
            warnings.showwarning = show
            own.info("sortsight %s", command)
            yield path
    finally:
        for handler in handlers:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(old_root)
        own.setLevel(old_own)
