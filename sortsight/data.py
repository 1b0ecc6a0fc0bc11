"""Datasets: find labelled images, check them, and split them — deterministically.

Sources (see :mod:`sortsight.sources`): class folders, split folders (kept as they are), a
CSV/TSV/JSONL labels file, a Hugging Face ``save_to_disk`` folder or parquet files.

Every image is checked with :mod:`sortsight.images`; unreadable files are skipped and reported
with a reason. :func:`split_dataset` makes a stratified, seeded split that is the same on every
OS; :func:`summarize` turns a dataset into the JSON-ready report ``sortsight check`` prints.

Example:
    >>> ds = load_dataset("photos/")                       # doctest: +SKIP
    >>> len(ds.by_split("validation")), ds.classes         # doctest: +SKIP
    (40, ('cats', 'dogs'))
"""

from __future__ import annotations

import hashlib
import os
import random
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sortsight import images, sources
from sortsight._sampling import balanced_sample, shuffled
from sortsight._verify import verify_images
from sortsight.config import DEFAULT_SEED, DEFAULT_VALID_SPLIT
from sortsight.errors import ConfigError, DataError
from sortsight.progress import ProgressCallback
from sortsight.sources import SPLIT_ALIASES, SPLITS

__all__ = [
    "SPLITS",
    "TINY_SIDE",
    "ImageDataset",
    "Item",
    "Skipped",
    "load_dataset",
    "scan",
    "skip_reasons",
    "split_dataset",
    "summarize",
]

#: Images whose shorter side is below this many pixels are reported as tiny.
TINY_SIDE = 32
_LAYOUT_HINT = (
    "Expected a folder of class subfolders (DATA/cats/*.jpg, DATA/dogs/*.jpg), split folders "
    "(DATA/train/<class>/, DATA/validation/<class>/), a CSV/TSV/JSONL labels file, "
    "or a Hugging Face dataset folder / parquet files"
)


@dataclass(frozen=True)
class Item:
    """One labelled image. ``split`` is "train", "validation", "test", or "" before splitting."""

    path: Path
    label: str
    split: str = ""


@dataclass(frozen=True)
class Skipped:
    """A file that was left out, and why (e.g. "truncated", "not an image")."""

    path: Path
    reason: str


@dataclass(frozen=True)
class ImageDataset:
    """Labelled images found by :func:`scan` (and split by :func:`split_dataset`).

    Attributes:
        root: the folder paths are shown relative to (the data folder, the labels file's
            folder, or the cache folder a Hugging Face dataset was written to).
        items: the usable images, in a deterministic order.
        classes: sorted class names (the label vocabulary).
        skipped: files left out, with reasons.
        source: what was read: "folder", "split-folders", "labels-file", "hf-disk" or "parquet".
        image_sizes: (width, height) of each verified image, upright (empty when not verified).
    """

    root: Path
    items: tuple[Item, ...]
    classes: tuple[str, ...]
    skipped: tuple[Skipped, ...] = ()
    source: str = "folder"
    image_sizes: Mapping[Path, tuple[int, int]] = field(default_factory=dict, compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def labels(self) -> list[str]:
        """The label of every item, aligned with ``items`` (class names are ``classes``)."""
        return [item.label for item in self.items]

    @property
    def class_to_index(self) -> dict[str, int]:
        """``{class name: index}`` in ``classes`` order (use it for ``label2id``)."""
        return {name: i for i, name in enumerate(self.classes)}

    def by_split(self, name: str) -> list[Item]:
        """Items of one split ("train", "validation", "test", or "" for unsplit)."""
        return [item for item in self.items if item.split == name]

    def counts(self) -> dict[str, dict[str, int]]:
        """``{class: {split: n}}`` for every class (unsplit items count under "")."""
        table: dict[str, dict[str, int]] = {name: {} for name in self.classes}
        for item in self.items:
            row = table.setdefault(item.label, {})
            row[item.split] = row.get(item.split, 0) + 1
        return table

    def relative(self, path: Path) -> str:
        """``path`` relative to ``root`` with forward slashes (absolute when outside root)."""
        try:
            return Path(os.path.relpath(path, self.root)).as_posix()
        except ValueError:  # another drive on Windows
            return Path(path).as_posix()

    def fingerprint(self) -> str:
        """A stable hash of relative paths, labels and file sizes (not of the split)."""
        digest = hashlib.sha256()
        lines = []
        for item in self.items:
            try:
                size = item.path.stat().st_size
            except OSError:
                size = -1
            lines.append(f"{_nfc(self.relative(item.path))}\t{item.label}\t{size}\n")
        for line in sorted(lines):
            digest.update(line.encode("utf-8", "surrogateescape"))  # names need not be UTF-8 on disk
        return digest.hexdigest()[:16]


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


# --------------------------------------------------------------------------- scanning


def scan(
    source: str | os.PathLike,
    *,
    image_column: str | None = None,
    target_column: str | None = None,
    verify: bool = True,
    max_pixels: int | None = images.DEFAULT_MAX_PIXELS,
    progress: ProgressCallback | None = None,
) -> ImageDataset:
    """Find the labelled images of ``source`` and check that each one opens.

    Args:
        source: a folder (class subfolders or split folders), a CSV/TSV/JSONL labels file, a
            Hugging Face ``save_to_disk`` folder, or a parquet file / folder of parquet files.
        image_column: column holding image paths (labels files, HF datasets); default
            ``image``, ``file``, ``filename``, ``file_name`` or ``path``, whichever exists.
        target_column: column holding labels; default ``target``, ``label`` or ``class``.
        verify: decode every image and skip unreadable ones (otherwise only empty files are).
        max_pixels: refuse images with more pixels than this.
        progress: receives "verify" progress events.

    Returns:
        An :class:`ImageDataset` whose items are not split yet (except split folders/columns).

    Raises:
        DataError: no images found, a labels file naming missing files, an unknown column, ...
    """
    source = Path(source).expanduser().absolute()  # items stay valid if the working directory changes
    root, rows, bad, kind = sources.gather(source, image_column, target_column, progress)
    found = [Item(*row) for row in rows]
    skipped = [Skipped(*entry) for entry in bad]
    sizes: dict[Path, tuple[int, int]] = {}
    items: list[Item] = []
    if verify:
        results = verify_images([item.path for item in found], root, max_pixels, progress)
        for item in found:
            result = results[item.path]
            if isinstance(result, str):
                skipped.append(Skipped(item.path, result))
            else:
                items.append(item)
                sizes[item.path] = result
    else:
        for item in found:
            try:
                empty = item.path.stat().st_size == 0
            except OSError:
                skipped.append(Skipped(item.path, "not found"))
                continue
            if empty:
                skipped.append(Skipped(item.path, "empty file"))
            else:
                items.append(item)
    if not items:
        raise DataError(_no_images_message(source, found, skipped))
    items.sort(
        key=lambda it: (SPLITS.index(it.split) if it.split in SPLITS else -1, images.sort_key(it.path))
    )
    skipped.sort(key=lambda s: images.sort_key(s.path))
    classes = tuple(sorted({item.label for item in items}))
    return ImageDataset(root, tuple(items), classes, tuple(skipped), kind, sizes)


def _no_images_message(source: Path, found: list[Item], skipped: list[Skipped]) -> str:
    if found:  # every candidate was unreadable
        reasons = Counter(s.reason for s in skipped).most_common(3)
        why = ", ".join(f"{n} {r}" for r, n in reasons)
        return f"None of the {len(found)} images in '{source}' could be read ({why}). Check the files."
    extensions = " ".join(images.SUPPORTED_EXTENSIONS)
    loose = sum(1 for s in skipped if s.reason == "not in a class folder")
    if loose:
        return (
            f"Found {loose} images directly in '{source}' but no class subfolders. Put each class's "
            f"images in its own subfolder (DATA/<class>/image.jpg)."
        )
    return f"No images found in '{source}' (supported: {extensions}). {_LAYOUT_HINT}."


# --------------------------------------------------------------------------- splitting


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"{name}={value} must be a fraction between 0 and 1 (e.g. 0.2).")


def split_dataset(
    ds: ImageDataset,
    *,
    valid_split: float = DEFAULT_VALID_SPLIT,
    test_split: float = 0.0,
    seed: int = DEFAULT_SEED,
    max_samples: int | None = None,
) -> ImageDataset:
    """Assign a train / validation / test split to every item: stratified, seeded, deterministic.

    Existing splits (split folders, a split column) are kept; a split that is missing but asked
    for (validation when only ``train/`` and ``test/`` exist, say) is carved out of train.
    The result is the same for the same files and seed on any OS: items are sorted by their
    normalised path before a per-class seeded shuffle.

    Args:
        ds: a scanned dataset.
        valid_split: fraction of each class for validation.
        test_split: fraction of each class for test.
        seed: the random seed.
        max_samples: keep at most this many images in all, as evenly as possible per class
            (for quick trials).

    Returns:
        A new :class:`ImageDataset` with every item's ``split`` set.

    Raises:
        DataError: only one class, or a class too small to split.
    """
    _check_fraction("valid_split", valid_split)
    _check_fraction("test_split", test_split)
    if len(ds.classes) < 2:
        only = ds.classes[0] if ds.classes else "?"
        if only.lower() in SPLIT_ALIASES:
            raise DataError(
                f"Only one folder, '{only}', found in '{ds.root}'. For split folders add validation/ (or "
                f"test/) beside it; for class folders point to '{ds.root / only}'."
            )
        raise DataError(
            f"Only one class found ('{only}', {len(ds.items)} images) in '{ds.root}'; a classifier needs "
            f"at least two. Add a folder per class, or point to the folder that holds the class folders."
        )
    items = list(ds.items)
    if max_samples is not None:
        items = balanced_sample(items, max_samples, seed)
    presplit = any(item.split for item in items)
    need_val = valid_split > 0 and not any(item.split == "validation" for item in items)
    need_test = test_split > 0 and not any(item.split == "test" for item in items)
    if need_val * valid_split + need_test * test_split >= 1.0:
        raise ConfigError(
            f"valid_split + test_split = {valid_split + test_split:g} leaves nothing to train on; "
            "use smaller fractions."
        )
    by_class: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        by_class[item.label].append(item)
    result: list[Item] = []
    for label in sorted(by_class):
        group = by_class[label]
        kept = [it for it in group if it.split in ("validation", "test")]
        pool = shuffled(
            (it for it in group if it.split not in ("validation", "test")), random.Random(f"{seed}:{label}")
        )
        n = len(pool)
        n_test = max(1, round(n * test_split)) if need_test else 0
        n_val = max(1, round(n * valid_split)) if need_val else 0
        if n - n_val - n_test < 1:
            if presplit and n == 0:
                raise DataError(
                    f"Class '{label}' has images in validation/test but none in train; add training "
                    f"images for '{label}' or remove its folders."
                )
            parts = "train/validation/test" if need_test else "train/validation"
            raise DataError(
                f"Class '{label}' has only {n} image{'s' if n != 1 else ''}, too few to split into {parts}; "
                f"add at least {1 + (n_val > 0) + (n_test > 0) - n} more or remove the class."
            )
        result += [replace(it, split="test") for it in pool[:n_test]]
        result += [replace(it, split="validation") for it in pool[n_test : n_test + n_val]]
        result += [replace(it, split="train") for it in pool[n_test + n_val :]]
        result += kept
    result.sort(key=lambda it: (SPLITS.index(it.split), images.sort_key(it.path)))
    classes = tuple(sorted({it.label for it in result}))
    return replace(ds, items=tuple(result), classes=classes)


def load_dataset(
    source: str | os.PathLike,
    *,
    valid_split: float = DEFAULT_VALID_SPLIT,
    test_split: float = 0.0,
    seed: int = DEFAULT_SEED,
    max_samples: int | None = None,
    image_column: str | None = None,
    target_column: str | None = None,
    verify: bool = True,
    max_pixels: int | None = images.DEFAULT_MAX_PIXELS,
    progress: ProgressCallback | None = None,
) -> ImageDataset:
    """:func:`scan` then :func:`split_dataset` — the one call training and ``check`` use.

    Example:
        >>> ds = load_dataset("photos/", valid_split=0.2, seed=42)   # doctest: +SKIP
    """
    ds = scan(
        source,
        image_column=image_column,
        target_column=target_column,
        verify=verify,
        max_pixels=max_pixels,
        progress=progress,
    )
    return split_dataset(
        ds, valid_split=valid_split, test_split=test_split, seed=seed, max_samples=max_samples
    )


# --------------------------------------------------------------------------- reporting


def summarize(
    ds: ImageDataset, *, tiny_side: int = TINY_SIDE, imbalance_ratio: float = 3.0, few_images: int = 10
) -> dict[str, Any]:
    """A JSON-ready summary of ``ds`` for ``sortsight check``, the studio and reports.

    Keys: ``source``, ``root``, ``fingerprint``, ``classes``, ``splits`` (present, in order;
    "unsplit" for items without a split), ``counts`` (class → split → n, plus "total"),
    ``totals`` (split → n, plus "total"), ``skipped`` (path, reason), ``skipped_by_reason``,
    ``tiny_images`` (path, width, height), ``image_sizes`` (median_width, median_height, min_side,
    max_side; None when not verified), ``warnings`` (kind, message).
    """
    name = {s: s for s in SPLITS} | {"": "unsplit"}
    present = [s for s in (*SPLITS, "") if any(it.split == s for it in ds.items)]
    splits = [name[s] for s in present]
    counts: dict[str, dict[str, int]] = {}
    raw = ds.counts()
    for label in ds.classes:
        row = {name[s]: raw.get(label, {}).get(s, 0) for s in present}
        row["total"] = sum(row.values())
        counts[label] = row
    totals = {sp: sum(counts[c][sp] for c in ds.classes) for sp in splits}
    totals["total"] = len(ds.items)
    warnings: list[dict[str, str]] = []
    sizes = {label: counts[label]["total"] for label in ds.classes}
    if len(sizes) >= 2:
        big = max(sizes, key=lambda k: (sizes[k], k))
        small = min(sizes, key=lambda k: (sizes[k], k))
        if sizes[small] and sizes[big] / sizes[small] >= imbalance_ratio:
            warnings.append(
                {
                    "kind": "imbalance",
                    "message": f"Classes are imbalanced: '{big}' has {sizes[big]} images, '{small}' only "
                    f"{sizes[small]} ({sizes[big] / sizes[small]:.1f}x). Add images to the small classes; "
                    "judge the model by macro F1, not accuracy.",
                }
            )
    few = [label for label in ds.classes if sizes[label] < few_images]
    if few:
        warnings.append(
            {
                "kind": "few-images",
                "message": f"{len(few)} class(es) have fewer than {few_images} images "
                f"({', '.join(few[:5])}); results for them will be unreliable. Aim for 30 or more per class.",
            }
        )
    if any(it.split for it in ds.items):
        for split in ("validation", "test"):
            missing = [c for c in ds.classes if split in splits and counts[c].get(split, 0) == 0]
            if missing:
                warnings.append(
                    {
                        "kind": "missing-in-split",
                        "message": f"No {split} images for {', '.join(missing[:5])}; their {split} "
                        "metrics cannot be measured.",
                    }
                )
    tiny = [
        {
            "path": ds.relative(it.path),
            "width": ds.image_sizes[it.path][0],
            "height": ds.image_sizes[it.path][1],
        }
        for it in ds.items
        if it.path in ds.image_sizes and min(ds.image_sizes[it.path]) < tiny_side
    ]
    if tiny:
        warnings.append(
            {
                "kind": "tiny-images",
                "message": ("All " if len(tiny) == len(ds.items) else "")
                + f"{len(tiny)} image(s) are smaller than {tiny_side} px on their short side "
                f"(e.g. {tiny[0]['path']}, {tiny[0]['width']}x{tiny[0]['height']}); "
                "they carry little detail.",
            }
        )
    by_reason = Counter(s.reason for s in ds.skipped)
    if ds.skipped:
        message = f"{len(ds.skipped)} file(s) skipped ({skip_reasons(by_reason)})."
        warnings.append({"kind": "skipped", "message": message})
    return {
        "source": ds.source,
        "root": str(ds.root),
        "fingerprint": ds.fingerprint(),
        "classes": list(ds.classes),
        "splits": splits,
        "counts": counts,
        "totals": totals,
        "skipped": [{"path": ds.relative(s.path), "reason": s.reason} for s in ds.skipped],
        "skipped_by_reason": dict(sorted(by_reason.items())),
        "tiny_images": tiny,
        "image_sizes": _size_stats([ds.image_sizes[it.path] for it in ds.items if it.path in ds.image_sizes]),
        "warnings": warnings,
    }


def skip_reasons(by_reason: Mapping[str, int]) -> str:
    """Every skip reason with its count, most frequent first: ``"3 truncated, 1 empty file"``."""
    return ", ".join(f"{n} {r}" for r, n in sorted(by_reason.items(), key=lambda t: (-t[1], t[0])))


def _size_stats(sizes: list[tuple[int, int]]) -> dict[str, int] | None:
    """Median width/height and the smallest short side of verified images (None if none)."""
    if not sizes:
        return None
    widths = sorted(w for w, _ in sizes)
    heights = sorted(h for _, h in sizes)
    return {
        "median_width": widths[len(widths) // 2],
        "median_height": heights[len(heights) // 2],
        "min_side": min(min(w, h) for w, h in sizes),
        "max_side": max(max(w, h) for w, h in sizes),
    }
