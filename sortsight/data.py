"""Datasets: find labelled images, check them, and split them — deterministically.

Sources :func:`scan` understands:

* a folder of class subfolders: ``photos/cats/*.jpg``, ``photos/dogs/*.jpg``;
* a folder of split folders: ``train/``, ``validation/`` (or ``valid/``, ``val/``) and an optional
  ``test/``, each holding class subfolders — these splits are kept as they are;
* a CSV / TSV / JSONL labels file with an image column and a label column (``image``/``target``
  by default as in AutoTrain, or ``file``/``label`` as in fastai's ``from_csv``); paths are
  relative to the labels file; optional ``split`` or ``is_valid`` column;
* a Hugging Face ``datasets`` folder written by ``save_to_disk``, or parquet files (see
  :mod:`sortsight.hfdata`); their images are written once into a cache folder so everything
  downstream works with file paths.

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
import json
import os
import random
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from PIL import Image

from sortsight import images
from sortsight.errors import ConfigError, DataError, ImageError
from sortsight.labelfile import read_labels_file
from sortsight.progress import ProgressCallback, Ticker

__all__ = [
    "SPLITS",
    "TINY_SIDE",
    "ImageDataset",
    "Item",
    "Skipped",
    "load_dataset",
    "sample_grid",
    "scan",
    "split_dataset",
    "summarize",
]

#: Split names, in display order.
SPLITS: tuple[str, ...] = ("train", "validation", "test")
#: Images whose shorter side is below this many pixels are reported as tiny.
TINY_SIDE = 32
SPLIT_ALIASES: dict[str, str] = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "test": "test",
    "testing": "test",
}
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
            digest.update(line.encode("utf-8"))
        return digest.hexdigest()[:16]


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


# --------------------------------------------------------------------------- scanning


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


def _scan_class_folders(root: Path, split: str) -> tuple[list[Item], list[Skipped]]:
    items: list[Item] = []
    skipped: list[Skipped] = []
    for path in images.walk_files(root):
        rel = path.relative_to(root)
        suffix = path.suffix.lower()
        if len(rel.parts) < 2:
            if suffix in images.SUPPORTED_EXTENSIONS:
                skipped.append(Skipped(path, "not in a class folder"))
            continue
        if suffix not in images.SUPPORTED_EXTENSIONS:
            skipped.append(Skipped(path, f"unsupported file type '{path.suffix or path.name}'"))
            continue
        items.append(Item(path, _nfc(rel.parts[0]), split))
    return items, skipped


def _labels_file_in(root: Path) -> Path | None:
    candidates = [
        p
        for p in sorted(root.iterdir(), key=images.sort_key)
        if p.is_file() and p.suffix.lower() in (".csv", ".tsv", ".jsonl", ".ndjson") and not images.is_junk(p)
    ]
    return candidates[0] if len(candidates) == 1 else None


def _gather(
    source: Path, image_column: str | None, target_column: str | None, progress: ProgressCallback | None
) -> tuple[Path, list[Item], list[Skipped], str]:
    """Find (root, items, skipped, kind) for any supported source, before verification."""
    from sortsight import hfdata

    if not source.exists():
        raise DataError(f"'{source}' does not exist. Give a folder of class subfolders or a labels file.")
    if hfdata.is_hf_source(source):
        root, hf_rows, hf_skipped, kind = hfdata.materialize(
            source, image_column=image_column, target_column=target_column, progress=progress
        )
        return root, [Item(*row) for row in hf_rows], [Skipped(*row) for row in hf_skipped], kind
    if source.is_file():
        root, rows, skipped_rows = read_labels_file(
            source, image_column=image_column, target_column=target_column
        )
        return root, [Item(*row) for row in rows], [Skipped(*row) for row in skipped_rows], "labels-file"
    splits = _split_folders(source)
    if splits:
        items: list[Item] = []
        skipped: list[Skipped] = []
        for split, folder in splits.items():
            got, bad = _scan_class_folders(folder, split)
            items += got
            skipped += bad
        return source, items, skipped, "split-folders"
    items, skipped = _scan_class_folders(source, "")
    if len({item.label for item in items}) < 2:  # e.g. labels.csv beside an images/ folder
        labels_file = _labels_file_in(source)
        if labels_file is not None:
            return _gather(labels_file, image_column, target_column, progress)
    return source, items, skipped, "folder"


class _VerifyCache:
    """Results of earlier checks, keyed by path + size + mtime, so ``check`` then ``train`` decodes once.

    Stored as JSON in ``<cache>/verify/``; any problem reading or writing it just means re-checking.
    """

    version = 1

    def __init__(self, root: Path, max_pixels: int | None) -> None:
        from sortsight.hfdata import cache_dir

        key = hashlib.sha256(f"{root.resolve()}|{max_pixels}|{self.version}".encode()).hexdigest()[:20]
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
            self.file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.file.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(self.entries), encoding="utf-8")
            os.replace(tmp, self.file)
        except OSError:  # a read-only cache only costs time
            pass


def _verify(
    paths: Sequence[Path], root: Path, max_pixels: int | None, progress: ProgressCallback | None
) -> dict[Path, tuple[int, int] | str]:
    """Decode every image (threads: Pillow releases the GIL); ``{path: (w, h) or reason}``."""
    ticker = Ticker(progress, "verify", total=len(paths))
    cache = _VerifyCache(root, max_pixels)

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
    workers = max(1, min(4, os.cpu_count() or 1))
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for path, result in zip(todo, pool.map(check, todo), strict=True):
                results[path] = result
                cache.put(path, result)
                ticker.advance()
        cache.keep_only(paths)
    finally:
        cache.save()  # an interrupted check keeps what it learnt
    return results


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
    source = Path(source).expanduser()
    root, found, skipped, kind = _gather(source, image_column, target_column, progress)
    sizes: dict[Path, tuple[int, int]] = {}
    items: list[Item] = []
    if verify:
        results = _verify([item.path for item in found], root, max_pixels, progress)
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


def _fair_share(sizes: Mapping[str, int], total: int) -> dict[str, int]:
    """Split ``total`` as evenly as possible over groups no bigger than ``sizes`` (water-filling)."""
    alloc: dict[str, int] = {}
    remaining = total
    order = sorted(sizes, key=lambda k: (sizes[k], k))
    for i, key in enumerate(order):
        share = remaining // (len(order) - i)
        alloc[key] = min(sizes[key], share)
        remaining -= alloc[key]
    return alloc


def _proportional(sizes: Mapping[str, int], total: int) -> dict[str, int]:
    """Split ``total`` over groups in proportion to ``sizes`` (largest remainder, ties by name)."""
    whole = sum(sizes.values())
    if whole == 0:
        return dict.fromkeys(sizes, 0)
    exact = {k: total * n / whole for k, n in sizes.items()}
    alloc = {k: int(v) for k, v in exact.items()}
    left = total - sum(alloc.values())
    for key in sorted(sizes, key=lambda k: (-(exact[k] - alloc[k]), k))[:left]:
        alloc[key] += 1
    return alloc


def _shuffled(items: Iterable[Item], rng: random.Random) -> list[Item]:
    ordered = sorted(items, key=lambda it: images.sort_key(it.path))
    rng.shuffle(ordered)
    return ordered


def _balanced_sample(items: Sequence[Item], max_samples: int, seed: int) -> list[Item]:
    by_class: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        by_class[item.label].append(item)
    if max_samples < len(by_class):
        raise ConfigError(
            f"max_samples={max_samples} is less than the number of classes ({len(by_class)}); "
            f"use at least {len(by_class)}."
        )
    quota = _fair_share({k: len(v) for k, v in by_class.items()}, max_samples)
    chosen: list[Item] = []
    for label in sorted(by_class):
        groups: dict[str, list[Item]] = defaultdict(list)
        for item in by_class[label]:
            groups[item.split].append(item)
        per_split = _proportional({s: len(g) for s, g in groups.items()}, quota[label])
        for split in sorted(groups):
            rng = random.Random(f"{seed}:sample:{label}:{split}")
            chosen += _shuffled(groups[split], rng)[: per_split[split]]
    return chosen


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"{name}={value} must be a fraction between 0 and 1 (e.g. 0.2).")


def split_dataset(
    ds: ImageDataset,
    *,
    valid_split: float = 0.2,
    test_split: float = 0.0,
    seed: int = 42,
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
        items = _balanced_sample(items, max_samples, seed)
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
        pool = _shuffled(
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
    valid_split: float = 0.2,
    test_split: float = 0.0,
    seed: int = 42,
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
    ``tiny_images`` (path, width, height), ``warnings`` (kind, message).
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
                "message": f"{len(tiny)} image(s) are smaller than {tiny_side} px on their short side "
                f"(e.g. {tiny[0]['path']}, {tiny[0]['width']}x{tiny[0]['height']}); "
                "they carry little detail.",
            }
        )
    by_reason = Counter(s.reason for s in ds.skipped)
    if ds.skipped:
        top = ", ".join(f"{n} {r}" for r, n in by_reason.most_common(4))
        warnings.append({"kind": "skipped", "message": f"{len(ds.skipped)} file(s) skipped ({top})."})
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
        "warnings": warnings,
    }


def sample_grid(
    ds: ImageDataset,
    *,
    per_class: int = 6,
    max_classes: int = 24,
    thumb: int = 128,
    seed: int = 42,
    split: str | None = None,
) -> Image.Image:
    """A labelled grid of sample images, one row per class (fastai's ``show_batch``).

    Args:
        ds: the dataset.
        per_class: images per row.
        max_classes: rows at most (the first classes in sorted order).
        thumb: thumbnail size in pixels.
        seed: which samples are shown.
        split: only items of this split (default: all).
    """
    entries: list[tuple[images.ImageSource | None, str]] = []
    pool = ds.items if split is None else tuple(ds.by_split(split))
    for label in ds.classes[:max_classes]:
        members = [it for it in pool if it.label == label]
        chosen = _shuffled(members, random.Random(f"{seed}:grid:{label}"))[:per_class]
        entries += [(it.path, label) for it in chosen]
        entries += [(None, "")] * (per_class - len(chosen))
    more = len(ds.classes) - max_classes
    title = f"{len(ds.items)} images, {len(ds.classes)} classes" + (
        f" (first {max_classes} shown)" if more > 0 else ""
    )
    return images.contact_sheet(entries, columns=per_class, thumb=thumb, title=title)
