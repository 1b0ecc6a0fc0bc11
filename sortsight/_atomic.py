"""Atomic output writers: a file or a whole folder appears complete or not at all.

Everything sortsight writes goes through a unique hidden temporary name beside the target
(``.NAME.tmp-<pid>-<random>``, :data:`sortsight._outputs.STAGED_NAME`) and one rename, with the
mode the user's umask gives: :func:`atomic_write` / :func:`atomic_write_text` for bytes and text,
:func:`staged_file` for a library that writes by file name (safetensors), :func:`staged_folder`
for a folder (a model, a checkpoint, a cache entry, a Space). Re-exported by
:mod:`sortsight.fileops`, the module callers import.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from sortsight._outputs import STAGED_NAME

__all__ = [
    "atomic_write",
    "atomic_write_text",
    "file_mode",
    "honour_umask",
    "staged_file",
    "staged_folder",
    "trim_name",
]


def file_mode() -> int:
    """The permission bits a plain ``open()`` would give a new file (0o666 less the umask)."""
    try:  # Linux: read it without touching the process-wide setting
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def honour_umask(*paths: str | Path) -> None:
    """Give files written by libraries that create them private (0600: ``mkstemp``, safetensors)
    the mode an ordinary output file gets, so outputs are as readable as the user's umask says."""
    mode = file_mode()
    for path in paths:
        try:
            os.chmod(path, mode)
        except OSError:  # not ours to change: leave it
            pass


def trim_name(text: str, room: int) -> str:
    """``text`` cut to at most ``room`` bytes on disk (a file name holds 255)."""
    while text and len(os.fsencode(text)) > room:
        text = text[:-1]
    return text


#: bytes of the target's name kept in a temporary name (the rest of a file name's 255 is the tag)
_NAME_ROOM = 180


def _temp_name(path: Path, tag: str = "tmp") -> Path:
    """A hidden name beside ``path`` that no other process or thread picks (pid + random part),
    of the form :data:`sortsight._outputs.STAGED_NAME` matches."""
    return path.with_name(f".{trim_name(path.name, _NAME_ROOM)}.{tag}-{os.getpid()}-{secrets.token_hex(4)}")


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Write a file through a unique temporary file and a rename: never half-written, never two
    writers on the same temporary file. ``write(fh)`` fills the binary file; the mode honours
    the umask (unlike ``tempfile.mkstemp``, which makes files private).

    Raises:
        OSError: the folder cannot be written (callers turn it into a one-line error).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _clear_dead_writers(dest: Path) -> None:
    """Remove what earlier writers of ``dest`` left under :func:`_temp_name` names when they were
    killed: only names of ``dest`` whose process is no longer running on this machine."""
    own = trim_name(dest.name, _NAME_ROOM)
    for entry in dest.parent.glob(f".{glob.escape(own)}.*"):
        found = STAGED_NAME.match(entry.name)
        if found is None or found["name"] != own or _running(int(found["pid"])):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process, or no way to tell: leave its files alone
        return True
    return True


@contextlib.contextmanager
def staged_file(path: str | Path) -> Iterator[Path]:
    """A unique temporary name beside ``path`` for a library that writes by file name (safetensors,
    ONNX): renamed onto ``path`` when the block ends without error, with the mode the umask gives;
    removed when it raises. A reader never finds half a file at ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path)
    try:
        yield tmp
        honour_umask(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def staged_folder(dest: str | Path, *, existing: str = "replace") -> Iterator[Path]:
    """A new empty folder to fill, which becomes ``dest`` in one rename when the block ends without
    error (it is removed when the block raises): a reader finds the old folder or the new one,
    never half of one.

    The folder is made beside ``dest`` under a unique hidden name (``.NAME.tmp-<pid>-<random>``),
    with the mode the umask gives. An empty folder at ``dest`` is always replaced. A non-empty one
    (or a file) is, by ``existing``:

    - ``"replace"``: moved aside, and removed once the new folder is in place (sortsight's own
      outputs: a model folder, a checkpoint);
    - ``"keep"``: kept, and the new folder dropped (another process finished the same work
      first, as with a cache);
    - ``"refuse"``: kept, and ``FileExistsError`` raised (a folder the user named, which something
      filled while this one was being written).

    With ``"replace"``, what earlier writers of ``dest`` left under these temporary names is
    removed first when their process is gone (a run killed while saving its model).

    Raises:
        OSError: ``dest``'s parent cannot be written (callers turn it into a one-line error).
    """
    if existing not in ("replace", "keep", "refuse"):
        raise ValueError(f"existing={existing!r}: use 'replace', 'keep' or 'refuse'")
    dest = Path(os.path.abspath(dest))  # '.' or 'out/' has a name to stage beside
    dest.parent.mkdir(parents=True, exist_ok=True)
    if existing == "replace":
        _clear_dead_writers(dest)
    tmp = _temp_name(dest)
    tmp.mkdir()  # 0o777 less the umask, unlike tempfile.mkdtemp's 0o700
    old: Path | None = None
    try:
        yield tmp
        if existing == "replace" and (dest.exists() or dest.is_symlink()):
            old = _temp_name(dest, "old")
            os.replace(dest, old)
        try:
            os.replace(tmp, dest)  # onto nothing or an empty folder
        except OSError:
            if old is not None:  # put the old folder back
                os.replace(old, dest)
                old = None
            elif existing == "keep" and dest.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
                return
            elif existing == "refuse" and dest.exists():
                raise FileExistsError(f"'{dest}' was filled while sortsight wrote it") from None
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (never half-written).

    Text that UTF-8 cannot hold (lone surrogates: file names that were not UTF-8 on disk) is
    written as ``\\udcXX`` escapes, which a JSON reader turns back into the same string.
    """
    data = text.encode("utf-8", "backslashreplace")
    atomic_write(path, lambda fh: fh.write(data))
