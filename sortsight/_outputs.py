"""Where sortsight writes: check output folders and files up front, and make room for a run.

Re-exported by :mod:`sortsight.fileops`. Every problem is a one-line :class:`SortsightError`
("what was found — what to do") instead of an ``OSError`` traceback halfway through a job.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

from sortsight.errors import SortsightError, TrainError

__all__ = [
    "OWN_RUN_ENTRIES",
    "STAGED_NAME",
    "cache_dir",
    "clear_for_overwrite",
    "ensure_output_dir",
    "ensure_output_file",
    "output_error",
    "repair_tail",
]

logger = logging.getLogger(__name__)

#: The temporary names of :mod:`sortsight._atomic` (``.NAME.tmp-<pid>-<8 hex>``, ``.NAME.old-…``):
#: what a killed process left half-written, which ``--overwrite`` removes with the run's own entries.
STAGED_NAME = re.compile(r"^\.(?P<name>.+)\.(?:tmp|old)-(?P<pid>\d+)-[0-9a-f]{8}$")

#: What a training run writes at the top of its folder; ``--overwrite`` removes only these.
OWN_RUN_ENTRIES = (
    "model",
    "model.tmp",
    "checkpoints",
    "candidates",
    "tensorboard",
    "sortsight.json",
    "metrics.jsonl",
    "events.jsonl",
    "leaderboard.csv",
    "skipped.txt",
    "skipped.csv",
    "report.html",
    "evaluation.json",
    "train.log",
)


def output_error(path: str | os.PathLike, exc: OSError, what: str = "output") -> SortsightError:
    """An ``OSError`` met while writing ``path`` as a one-line error saying what to do."""
    p = Path(path)
    if isinstance(exc, IsADirectoryError):
        return SortsightError(f"{what} '{p}' is a folder; give a file name (e.g. {p / 'out.csv'}).")
    if isinstance(exc, (NotADirectoryError, FileExistsError)):
        return SortsightError(f"{what} '{p}' is (inside) a file, not a folder; choose another path.")
    if isinstance(exc, PermissionError):
        return SortsightError(f"{what} '{p}' cannot be written (permission denied); choose a writable place.")
    return SortsightError(f"{what} '{p}' cannot be written ({exc.strerror or exc}); choose another place.")


def _probe(folder: Path) -> None:
    probe = folder / f".sortsight-probe-{os.getpid()}-{secrets.token_hex(4)}"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    probe.unlink()


def ensure_output_dir(path: str | os.PathLike, *, what: str = "output folder") -> Path:
    """Create ``path`` (with parents) and check that files can be written in it.

    Raises:
        SortsightError: it is a file, lies under a file, or cannot be written.
    """
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise SortsightError(f"{what} '{p}' is a file, not a folder; choose another path.")
    try:
        p.mkdir(parents=True, exist_ok=True)
        _probe(p)
    except OSError as exc:
        raise output_error(p, exc, what) from exc
    return p


def ensure_output_file(path: str | os.PathLike, *, what: str = "output file") -> Path:
    """Check that ``path`` can be written as a file (its folder is created).

    Raises:
        SortsightError: it is a folder, its folder cannot be made, or it cannot be written.
    """
    p = Path(path).expanduser()
    if p.is_dir():
        raise SortsightError(f"{what} '{p}' is a folder; give a file name inside it instead.")
    ensure_output_dir(p.parent if str(p.parent) else Path("."), what=f"folder of {what}")
    if p.exists() and not os.access(p, os.W_OK):
        raise SortsightError(f"{what} '{p}' is read-only; choose another file.")
    return p


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def _holds_images(entry: Path) -> bool:
    from sortsight.images import SUPPORTED_EXTENSIONS as _IMAGE_SUFFIXES

    if entry.is_symlink():
        return True  # a link is never ours: keep it (and what it points to)
    if entry.is_file():
        return entry.suffix.lower() in _IMAGE_SUFFIXES
    for _dirpath, _dirs, files in os.walk(entry):
        if any(Path(f).suffix.lower() in _IMAGE_SUFFIXES for f in files):
            return True
    return False


def clear_for_overwrite(
    folder: str | os.PathLike, *, inputs: Iterable[str | os.PathLike | None]
) -> Path | None:
    """Make room for a new run in ``folder`` (``--overwrite``), removing nothing sortsight did not write.

    Refuses when any input (the data, a labels file, a config) lies inside ``folder``. Otherwise
    the old folder is first renamed aside (``NAME.replaced-<time>``, beside it, in one atomic
    step), so the new run starts empty and nothing of the old one can mix in; then only the
    entries a run writes (:data:`OWN_RUN_ENTRIES`, and none holding image files) are deleted
    from the aside folder. When nothing else was in it, it is removed; otherwise it stays, with
    the user's files, and its path is returned (and logged) so the caller can say so.

    Args:
        folder: the run folder to replace (a sortsight run: it holds ``sortsight.json``).
        inputs: paths the new run will read (None entries are ignored).

    Returns:
        The folder kept aside with files sortsight did not write, or None.

    Raises:
        TrainError: an input lies inside ``folder``, ``folder`` is not a run folder, or it
            cannot be renamed.
    """
    run = Path(folder).expanduser()
    if not run.exists() and not run.is_symlink():
        return None
    if not run.is_dir():
        raise TrainError(f"'{run}' is a file, not a run folder; choose another --out.")
    real = run.resolve()
    for item in inputs:
        if item is None or str(item) == "":
            continue
        path = Path(item).expanduser()
        if _inside(path.resolve(), real) or _inside(path.absolute(), run.absolute()):
            raise TrainError(
                f"'{item}' lies inside '{run}', which --overwrite would replace. Move the data out "
                f"of the run folder or choose another --out; nothing was changed."
            )
    if not any(run.iterdir()):
        return None
    if not (run / "sortsight.json").is_file():
        raise TrainError(
            f"'{run}' is not a sortsight run folder (no sortsight.json); sortsight will not "
            f"replace it even with --overwrite. Choose another --out."
        )
    aside = run.with_name(f"{run.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}")
    try:
        os.rename(run, aside)
    except OSError as exc:
        raise TrainError(
            f"Cannot replace '{run}' ({exc.strerror or exc}); choose another --out or remove it yourself."
        ) from exc
    leftovers = [p for p in aside.iterdir() if STAGED_NAME.match(p.name)]  # from a killed run
    for entry in [*(aside / name for name in OWN_RUN_ENTRIES), *leftovers]:
        if not (entry.exists() or entry.is_symlink()) or _holds_images(entry):
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    try:
        aside.rmdir()
        return None
    except OSError:  # something the user put there: keep it
        left = sorted(p.name for p in aside.iterdir())
        logger.warning(
            "kept %d file(s) sortsight did not write from the old run in '%s': %s",
            len(left),
            aside,
            ", ".join(left[:5]),
        )
        return aside


def repair_tail(path: Path) -> None:
    """Cut a torn last line (a process killed mid-write) so appending starts on a fresh line."""
    with open(path, "rb+") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        if size == 0:
            return
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return
        block = min(size, 1 << 16)
        fh.seek(size - block)
        tail = fh.read(block)
        cut = tail.rfind(b"\n")
        fh.truncate(size - block + cut + 1 if cut >= 0 else 0)


def cache_dir() -> Path:
    """Where sortsight caches derived data: ``$SORTSIGHT_CACHE`` or ``~/.cache/sortsight``."""
    return Path(os.environ.get("SORTSIGHT_CACHE") or Path.home() / ".cache" / "sortsight").expanduser()
