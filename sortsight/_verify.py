"""Check that images open, in threads, remembering the answers per file between runs.

``sortsight check`` followed by ``sortsight train`` should decode a large collection once, not
twice: results are kept in ``<cache>/verify/<key>.json`` keyed by path, size and modification
time, so a file that changes is checked again.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import PIL

from sortsight import images
from sortsight.errors import ImageError
from sortsight.fileops import atomic_write_text, cache_dir
from sortsight.progress import ProgressCallback, Ticker

__all__ = ["VerifyCache", "verify_images"]

# Reasons that can change without the file changing (a plugin installed, permissions fixed).
_TRANSIENT = frozenset({"needs pillow-heif", "permission denied", "not found", "unsupported format"})


class VerifyCache:
    """Results of earlier checks, keyed by path + size + mtime, so ``check`` then ``train`` decodes once.

    Stored as JSON in ``<cache>/verify/``; any problem reading or writing it just means re-checking.
    """

    version = 1

    def __init__(self, root: Path, max_pixels: int | None) -> None:
        tag = f"{root.resolve()}|{max_pixels}|{self.version}|{PIL.__version__}"  # a new Pillow may read more
        key = hashlib.sha256(tag.encode()).hexdigest()[:20]
        self.file = cache_dir() / "verify" / f"{key}.json"
        self.entries: dict[str, list[Any]] = {}
        self.changed = False
        try:
            self.entries = json.loads(self.file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.entries = {}

    @staticmethod
    def _stamp(path: Path) -> list[int] | None:
        try:
            stat = path.stat()
        except OSError:
            return None
        return [stat.st_size, stat.st_mtime_ns]

    def get(self, path: Path) -> tuple[int, int] | str | None:
        entry = self.entries.get(str(path))
        if not entry or entry[:2] != self._stamp(path):
            return None
        return entry[2] if isinstance(entry[2], str) else (int(entry[2][0]), int(entry[2][1]))

    def put(self, path: Path, result: tuple[int, int] | str) -> None:
        if isinstance(result, str) and result in _TRANSIENT:
            return
        stamp = self._stamp(path)
        if stamp is not None:
            self.entries[str(path)] = [*stamp, result if isinstance(result, str) else list(result)]
            self.changed = True

    def keep_only(self, paths: Sequence[Path]) -> None:
        """Forget files that are no longer part of the data."""
        wanted = {str(p) for p in paths}
        if any(key not in wanted for key in self.entries):
            self.entries = {k: v for k, v in self.entries.items() if k in wanted}
            self.changed = True

    def save(self) -> None:
        if not self.changed:
            return
        try:
            atomic_write_text(self.file, json.dumps(self.entries))
        except OSError:  # a read-only cache only costs time
            pass


def verify_images(
    paths: Sequence[Path], root: Path, max_pixels: int | None, progress: ProgressCallback | None
) -> dict[Path, tuple[int, int] | str]:
    """Decode every image (threads: Pillow releases the GIL); ``{path: (w, h) or reason}``."""
    ticker = Ticker(progress, "verify", total=len(paths))
    cache = VerifyCache(root, max_pixels)

    def check(path: Path) -> tuple[int, int] | str:
        try:
            info = images.inspect_image(path, max_pixels=max_pixels)
        except ImageError as exc:
            return exc.reason
        return (info.width, info.height)

    results: dict[Path, tuple[int, int] | str] = {}
    todo: list[Path] = []
    for path in paths:
        known = cache.get(path)
        if known is None:
            todo.append(path)
        else:
            results[path] = known
    if results:
        ticker.advance(len(results))
    pool = ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1)))
    try:
        for path, result in zip(todo, pool.map(check, todo), strict=True):
            results[path] = result
            cache.put(path, result)
            ticker.advance()
        cache.keep_only(paths)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # Ctrl-C must not wait for the whole queue
        cache.save()  # an interrupted check keeps what it learnt
    return results
