"""Where labelled images come from: class folders, split folders, labels files, HF datasets.

:func:`gather` turns any supported source into plain rows — ``(path, label, split)`` and
``(path, skip reason)`` — before any image is opened; :mod:`sortsight.data` verifies and splits.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

from sortsight import hfdata, images
from sortsight.errors import DataError
from sortsight.labelfile import SPLIT_ALIASES, SPLITS, read_labels_file
from sortsight.progress import ProgressCallback

__all__ = ["SPLITS", "SPLIT_ALIASES", "Bad", "Row", "gather"]

Row = tuple[Path, str, str]  # (image path, label, split)
Bad = tuple[Path, str]  # (path, reason it was skipped)


def _split_folders(root: Path) -> dict[str, Path]:
    """``{split: folder}`` when ``root`` holds split folders (train + validation/test)."""
    found: dict[str, Path] = {}
    for child in sorted(root.iterdir(), key=images.sort_key):
        if child.is_dir() and not images.is_junk(child):
            split = SPLIT_ALIASES.get(child.name.lower())
            if split and split not in found:
                found[split] = child
    if "train" in found and len(found) >= 2:
        return found
    return {}


def _scan_class_folders(root: Path, split: str) -> tuple[list[Row], list[Bad]]:
    items: list[Row] = []
    skipped: list[Bad] = []
    unreadable = lambda folder, reason: skipped.append((folder, reason))  # noqa: E731
    for path in images.walk_files(root, on_error=unreadable):
        rel = path.relative_to(root)
        suffix = path.suffix.lower()
        if len(rel.parts) < 2:
            if suffix in images.SUPPORTED_EXTENSIONS:
                skipped.append((path, "not in a class folder"))
            continue
        if suffix not in images.SUPPORTED_EXTENSIONS:
            skipped.append((path, f"unsupported file type '{path.suffix or path.name}'"))
            continue
        items.append((path, unicodedata.normalize("NFC", rel.parts[0]), split))
    return items, skipped


def _labels_file_in(root: Path) -> Path | None:
    candidates = [
        p
        for p in sorted(root.iterdir(), key=images.sort_key)
        if p.is_file() and p.suffix.lower() in (".csv", ".tsv", ".jsonl", ".ndjson") and not images.is_junk(p)
    ]
    return candidates[0] if len(candidates) == 1 else None


def gather(
    source: Path, image_column: str | None, target_column: str | None, progress: ProgressCallback | None
) -> tuple[Path, list[Row], list[Bad], str]:
    """Find ``(root, [(path, label, split)], [(path, reason)], kind)`` for any source, before verification.

    Raises:
        DataError: the source does not exist, or a labels file / HF dataset cannot be used.
    """
    if not source.exists():
        raise DataError(f"'{source}' does not exist. Give a folder of class subfolders or a labels file.")
    if hfdata.is_hf_source(source):
        return hfdata.materialize(
            source, image_column=image_column, target_column=target_column, progress=progress
        )
    if source.is_file():
        root, rows, skipped_rows = read_labels_file(
            source, image_column=image_column, target_column=target_column
        )
        return root, rows, skipped_rows, "labels-file"
    splits = _split_folders(source)
    if splits:
        items: list[Row] = []
        skipped: list[Bad] = []
        for split, folder in splits.items():
            got, bad = _scan_class_folders(folder, split)
            items += got
            skipped += bad
        return source, items, skipped, "split-folders"
    items, skipped = _scan_class_folders(source, "")
    if len({row[1] for row in items}) < 2:  # e.g. labels.csv beside an images/ folder
        labels_file = _labels_file_in(source)
        if labels_file is not None:
            return gather(labels_file, image_column, target_column, progress)
    return source, items, skipped, "folder"
