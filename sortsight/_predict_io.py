"""The inputs of ``sortsight predict``: image files, folders and lists of paths (``.csv``,
``.tsv``, ``.txt``, ``.jsonl``) as one sorted list of absolute paths.

Re-exported by :mod:`sortsight.predict`; its output file is owned by :mod:`sortsight.predictions`.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from sortsight.errors import PredictError
from sortsight.images import SUPPORTED_EXTENSIONS, is_image_path, iter_image_files

__all__ = ["collect_paths"]

_LIST_SUFFIXES = (".csv", ".tsv", ".txt", ".jsonl")
_PATH_COLUMNS = ("path", "image", "file", "filepath", "filename")


def _paths_from_list(file: Path) -> Iterator[Path]:
    base = file.parent
    text = file.read_text(encoding="utf-8-sig", errors="surrogateescape")
    if file.suffix.lower() == ".txt":
        names: Iterable[str] = (line.strip() for line in text.splitlines())
    elif file.suffix.lower() == ".jsonl":
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        key = next((c for c in _PATH_COLUMNS if rows and c in rows[0]), None)
        if key is None:
            raise PredictError(f"'{file}' has no path column; name one of: {', '.join(_PATH_COLUMNS)}.")
        names = (str(r.get(key, "")) for r in rows)
    else:
        dialect = "excel-tab" if file.suffix.lower() == ".tsv" else "excel"
        reader = csv.reader(io.StringIO(text), dialect=dialect)
        header = next(reader, [])
        lowered = [h.strip().lower() for h in header]
        column = next((lowered.index(c) for c in _PATH_COLUMNS if c in lowered), None)
        if column is None:
            if header and is_image_path(header[0]):  # no header: first column holds paths
                rows_iter: Iterable[list[str]] = [header, *reader]
                column = 0
            else:
                raise PredictError(f"'{file}' has no path column; name one of: {', '.join(_PATH_COLUMNS)}.")
        else:
            rows_iter = reader
        names = (row[column].strip() for row in rows_iter if len(row) > column)
    for name in names:
        if name:
            p = Path(name).expanduser()
            yield p if p.is_absolute() else base / p


def collect_paths(
    inputs: Sequence[str | Path], *, exclude: Sequence[str | Path] = (), follow_links: bool = False
) -> list[Path]:
    """Absolute image paths from files, folders (recursively) and CSV/TSV/TXT/JSONL lists of paths.

    Order is kept (folders sorted the same on every OS); duplicates and files under (or equal
    to) ``exclude`` are dropped. Files listed in a CSV are kept even when missing, to be
    reported as unreadable. Folders reached through a symbolic link are searched only with
    ``follow_links`` (a linked file inside a folder is always read).

    Raises:
        PredictError: an input does not exist, or nothing to predict was found.
    """
    if not inputs:
        raise PredictError("No images given. Name image files, folders, or a CSV with a 'path' column.")
    skip_files = {os.path.abspath(e) for e in exclude}  # a set: an in-place sort excludes many files
    skip = [e + os.sep for e in skip_files if os.path.isdir(e)]
    seen: set[str] = set()
    out: list[Path] = []

    def add(p: Path) -> None:
        key = os.path.abspath(p)
        if key in seen or key in skip_files or any(key.startswith(s) for s in skip):
            return
        seen.add(key)
        out.append(Path(key))

    for raw in inputs:
        p = Path(raw).expanduser()
        if p.is_dir():
            for f in iter_image_files(p, follow_links=follow_links):
                add(f)
        elif p.is_file() and p.suffix.lower() in _LIST_SUFFIXES:
            for f in _paths_from_list(p):
                add(f)
        elif p.is_file():
            add(p)  # any file: one that is not an image is reported as unreadable
        else:
            raise PredictError(f"'{raw}' not found. Give image files, folders, or a CSV list of paths.")
    if not out:
        raise PredictError(
            f"No images found in {', '.join(map(str, inputs))}. Supported extensions: "
            f"{', '.join(SUPPORTED_EXTENSIONS)} (any case)."
        )
    return out
