"""Safe uploads: size-limited request bodies and zip archives checked before anything is written.

* :class:`BodyLimit` is an ASGI middleware that refuses a request body over the limit, by its
  ``Content-Length`` or, when that is missing, while it streams in (nothing over the limit is
  ever held in memory or on disk).
* :func:`safe_extract_zip` refuses archives with entries that are absolute, contain ``..``,
  are symlinks, or that would unpack to too much data or at a suspicious compression ratio
  (zip bombs) — checked on the directory and again while decompressing, since a forged header
  can lie about sizes.
"""

from __future__ import annotations

import re
import shutil
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from sortsight.errors import DataError

__all__ = [
    "BodyLimit",
    "Extracted",
    "UploadLimits",
    "UploadTooLarge",
    "copy_limited",
    "safe_extract_zip",
    "safe_name",
]

_JUNK_PARTS = {"__MACOSX", ".DS_Store", "Thumbs.db", "desktop.ini"}


@dataclass(frozen=True)
class UploadLimits:
    """Caps on what the studio accepts.

    Attributes:
        max_request_bytes: largest request body (an upload of many files or one zip).
        max_unzipped_bytes: largest total size a zip may unpack to.
        max_zip_entries: most entries in a zip.
        max_ratio: largest compression ratio of an entry (unpacked / packed) above 1 MB.
    """

    max_request_bytes: int = 2 * 1024**3
    max_unzipped_bytes: int = 8 * 1024**3
    max_zip_entries: int = 200_000
    max_ratio: float = 200.0


@dataclass
class Extracted:
    """What :func:`safe_extract_zip` unpacked.

    Attributes:
        files: the files written.
        skipped: (entry name, reason) for entries left out: a repeat of an earlier entry with the
            same name and content.
        renamed: (entry name, name written) for entries whose name an earlier entry had, but whose
            content differs: both are kept, the later one under a numbered name.
    """

    files: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    renamed: list[tuple[str, str]] = field(default_factory=list)


class UploadTooLarge(Exception):
    """Raised inside the request when the body passes the limit."""


class BodyLimit:
    """ASGI middleware: answer 413 to requests whose body is larger than ``max_bytes``."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await _too_large(send, self.max_bytes)
            return
        seen = 0
        exceeded = False
        answered = False

        async def limited_receive() -> dict:
            nonlocal seen, exceeded
            if exceeded:
                raise UploadTooLarge
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    exceeded = True
                    raise UploadTooLarge
            return message

        async def guarded_send(message: dict) -> None:
            # the framework may turn our exception into its own error page: answer 413 instead
            nonlocal answered
            if exceeded:
                if not answered:
                    answered = True
                    await _too_large(send, self.max_bytes)
                return
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except UploadTooLarge:
            if not answered:
                answered = True
                await _too_large(send, self.max_bytes)


async def _too_large(send: Any, limit: int) -> None:
    body = (
        f"The upload is larger than the studio's limit of {limit // 1024**2} MB. "
        "Upload fewer files at a time, or start the studio with a larger --max-upload-mb."
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def safe_name(name: str, *, what: str = "name") -> str:
    """A single, safe path component (a class or file name) or a :class:`DataError`.

    Example:
        >>> safe_name("old maps")
        'old maps'
    """
    cleaned = name.strip()
    if (
        not cleaned
        or cleaned in (".", "..")
        or cleaned.startswith(".")
        or re.search(r"[/\\\x00-\x1f]", cleaned)
        or len(cleaned) > 120
    ):
        raise DataError(
            f"'{name}' cannot be used as a {what}. Use letters, digits, spaces, dashes or underscores, "
            "without slashes or a leading dot."
        )
    return cleaned


def copy_limited(src: Any, dest: Path, max_bytes: int) -> int:
    """Copy the file object ``src`` to ``dest`` in chunks, refusing more than ``max_bytes``."""
    written = 0
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "wb") as out:
        while True:
            chunk = src.read(1 << 20)
            if not chunk:
                break
            written += len(chunk)
            if written > max_bytes:
                out.close()
                dest.unlink()
                raise DataError(f"'{dest.name}' is larger than the limit of {max_bytes // 1024**2} MB.")
            out.write(chunk)
    return written


def _check_member(info: zipfile.ZipInfo) -> PurePosixPath | None:
    """The entry's relative path, None for folders and OS junk; DataError when unsafe."""
    name = info.filename.replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise DataError(f"The zip holds an entry with an absolute path ('{info.filename}'); it was refused.")
    path = PurePosixPath(name)
    if ".." in path.parts:
        raise DataError(
            f"The zip holds an entry that points outside its folder ('{info.filename}'); it was refused."
        )
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise DataError(
            f"The zip holds a symbolic link ('{info.filename}'); links are refused. Zip the files themselves."
        )
    if info.is_dir() or any(part in _JUNK_PARTS or part.startswith("._") for part in path.parts):
        return None
    return path


def _dedupe(
    members: list[tuple[zipfile.ZipInfo, PurePosixPath]], result: Extracted
) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """Entries with distinct target paths: a zip may hold one name twice (appended archives,
    tools that add instead of replace), and unpacking would let the later silently replace the
    earlier. A repeat with the same content is left out; one with other content gets a number."""
    seen: dict[str, list[zipfile.ZipInfo]] = {}
    taken = {rel.as_posix().casefold() for _, rel in members}
    out = []
    for info, rel in members:
        key = rel.as_posix().casefold()  # one name on a case-insensitive disk too
        earlier = seen.setdefault(key, [])
        if any((e.CRC, e.file_size) == (info.CRC, info.file_size) for e in earlier):
            result.skipped.append(
                (info.filename, "a repeat of an earlier entry with the same name and content")
            )
            continue
        if earlier:
            number = len(earlier) + 1
            while True:
                new = rel.with_name(f"{rel.stem} ({number}){rel.suffix}")
                if new.as_posix().casefold() not in taken:
                    break
                number += 1
            taken.add(new.as_posix().casefold())
            result.renamed.append((info.filename, new.as_posix()))
            earlier.append(info)
            out.append((info, new))
            continue
        earlier.append(info)
        out.append((info, rel))
    return out


def safe_extract_zip(zip_path: str | Path, dest: str | Path, limits: UploadLimits | None = None) -> Extracted:
    """Check every entry of a zip, then unpack its files under ``dest``; say what was written.

    Entries that share a name are all kept (see :class:`Extracted`); nothing is overwritten.

    Raises:
        DataError: not a zip, or an entry that is unsafe, or a zip bomb (too many entries, too
            large unpacked, or too high a compression ratio). Nothing is left in ``dest`` then.
    """
    limits = limits or UploadLimits()
    dest = Path(dest)
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(
            "The upload is not a readable zip file. Make the archive again and upload it."
        ) from exc
    with archive:
        infos = archive.infolist()
        if len(infos) > limits.max_zip_entries:
            raise DataError(
                f"The zip has {len(infos)} entries, more than the limit of {limits.max_zip_entries}."
            )
        total = 0
        members: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
        for info in infos:
            rel = _check_member(info)
            if rel is None:
                continue
            total += info.file_size
            if info.file_size > 1024**2 and info.file_size > limits.max_ratio * max(info.compress_size, 1):
                ratio = info.file_size // max(info.compress_size, 1)
                raise DataError(
                    f"The zip entry '{info.filename}' expands {ratio} times; "
                    "it looks like a zip bomb and was refused."
                )
            members.append((info, rel))
        if total > limits.max_unzipped_bytes:
            raise _bomb(limits)
        result = Extracted()
        members = _dedupe(members, result)
        written = result.files
        budget = limits.max_unzipped_bytes
        try:
            for info, rel in members:
                target = dest.joinpath(*rel.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src, open(target, "wb") as out:
                    left = info.file_size  # a forged header cannot make us write more than it claims
                    while True:
                        chunk = src.read(1 << 20)
                        if not chunk:
                            break
                        left -= len(chunk)
                        budget -= len(chunk)
                        if left < 0 or budget < 0:
                            raise _bomb(limits)
                        out.write(chunk)
                written.append(target)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            shutil.rmtree(dest, ignore_errors=True)
            raise DataError(f"The zip is damaged ({exc}). Make the archive again and upload it.") from exc
        except DataError:
            shutil.rmtree(dest, ignore_errors=True)
            raise
    return result


def _bomb(limits: UploadLimits) -> DataError:
    return DataError(
        f"The zip unpacks to more than {limits.max_unzipped_bytes // 1024**2} MB; "
        "it was refused. Upload it in smaller parts."
    )
