"""Multi-label data: images with several tags each — reading, checking, splitting.

Where tags come from:

- a labels file (CSV/TSV/JSONL) whose label column (``labels``, ``tags``, ``target``, ``label``,
  ...) holds several tags per cell, separated by ``|`` or ``;`` (found automatically; a space or
  comma only when asked with ``tag_separator``), or a JSON list in JSONL (``"labels": ["a", "b"]``);
- a labels file with one 0/1 column per tag (``image,people,text,product`` / ``a.jpg,1,0,1``);
- the same image on several rows, one tag per row;
- a Hugging Face dataset with a ``Sequence(ClassLabel)`` column.

An empty cell means "no tag" (allowed and counted). :func:`detect_task` tells single- from
multi-label data; :func:`split_tags` makes an iteratively stratified split (see
:mod:`sortsight._stratify`) and leaves out tags that cannot be learnt (on every image, or on
one only), saying so.

Example:
    >>> ds = load_tag_dataset("labels.csv")          # doctest: +SKIP
    >>> ds.tags, len(ds.by_split("validation"))      # doctest: +SKIP
    (('people', 'product', 'text'), 40)
"""

from __future__ import annotations

import hashlib
import os
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from sortsight import hfdata, images
from sortsight._stratify import iterative_split
from sortsight._verify import verify_images
from sortsight.config import DEFAULT_SEED, DEFAULT_VALID_SPLIT
from sortsight.data import Skipped
from sortsight.errors import ConfigError, DataError
from sortsight.labelfile import MixedSeparatorsError, read_tags_file, split_cell
from sortsight.progress import ProgressCallback
from sortsight.sources import SPLITS

__all__ = [
    "MAX_TAGS",
    "SEPARATORS",
    "TASKS",
    "TagDataset",
    "TagItem",
    "detect_task",
    "load_tag_dataset",
    "scan_tags",
    "split_cell",
    "split_tags",
    "summarize_tags",
]

#: ``task`` values: "auto" looks at the data.
TASKS: tuple[str, ...] = ("auto", "single_label", "multi_label")
#: ``tag_separator`` values: "auto" takes ``|`` or ``;`` (whichever the cells use).
SEPARATORS: tuple[str, ...] = ("auto", "|", ";", " ", ",")
#: More distinct tags than this are refused (one sigmoid output per tag; beyond it the labels are
#: more likely free-text descriptions than a vocabulary).
MAX_TAGS = 1000
#: Tags on fewer images than this are warned about as too rare to learn reliably.
RARE_TAG = 10


@dataclass(frozen=True)
class TagItem:
    """One image and its tags (possibly none). ``split`` as in :class:`sortsight.data.Item`."""

    path: Path
    tags: tuple[str, ...]
    split: str = ""


@dataclass(frozen=True)
class TagDataset:
    """Tagged images. ``tags`` is the sorted vocabulary the model learns; ``excluded`` lists tags
    left out of it and why; ``empty_cells`` counts rows whose tag cell was empty."""

    root: Path
    items: tuple[TagItem, ...]
    tags: tuple[str, ...]
    skipped: tuple[Skipped, ...] = ()
    source: str = "labels-file"
    excluded: tuple[tuple[str, str], ...] = ()
    image_sizes: Mapping[Path, tuple[int, int]] = field(default_factory=dict, compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def classes(self) -> tuple[str, ...]:
        """The tags (the name :class:`sortsight.data.ImageDataset` uses for its vocabulary)."""
        return self.tags

    def by_split(self, name: str) -> list[TagItem]:
        return [item for item in self.items if item.split == name]

    def matrix(self, items: Sequence[TagItem] | None = None) -> np.ndarray:
        """The ``(N, T)`` boolean matrix of ``items`` (default: all) over ``tags``."""
        index = {t: i for i, t in enumerate(self.tags)}
        rows = self.items if items is None else items
        y = np.zeros((len(rows), len(self.tags)), dtype=bool)
        for n, item in enumerate(rows):
            for tag in item.tags:
                if tag in index:
                    y[n, index[tag]] = True
        return y

    def counts(self) -> dict[str, dict[str, int]]:
        """``{tag: {split: images}}`` (what the model card and run info record)."""
        table: dict[str, dict[str, int]] = {t: {} for t in self.tags}
        for item in self.items:
            for tag in item.tags:
                if tag in table:
                    table[tag][item.split] = table[tag].get(item.split, 0) + 1
        return table

    def relative(self, path: Path) -> str:
        try:
            return Path(os.path.relpath(path, self.root)).as_posix()
        except ValueError:
            return Path(path).as_posix()

    def fingerprint(self) -> str:
        """A stable hash of relative paths, tag sets and file sizes (not of the split)."""
        lines = []
        for item in self.items:
            size = item.path.stat().st_size if item.path.exists() else -1
            lines.append(f"{self.relative(item.path)}\t{'|'.join(sorted(item.tags))}\t{size}\n")
        return hashlib.sha256("".join(sorted(lines)).encode("utf-8")).hexdigest()[:16]


def _rows(
    source: Path,
    image_column: str | None,
    target_column: str | None,
    separator: str,
    progress: ProgressCallback | None,
) -> tuple[Path, list[tuple[Path, tuple[str, ...], str]], list[tuple[Path, str]], bool, str]:
    if separator not in SEPARATORS:
        raise ConfigError(f"Unknown tag_separator '{separator}'; use one of: auto, '|', ';', ' ', ','.")
    if not source.exists():
        raise DataError(f"'{source}' does not exist. Give a labels file (CSV/TSV/JSONL) or a dataset folder.")
    if hfdata.is_hf_source(source):
        return (
            *hfdata.materialize_tags(source, image_column=image_column, target_column=target_column),
            "hf",
        )
    if source.is_dir():
        from sortsight.sources import _labels_file_in

        found = _labels_file_in(source)
        if found is None:
            raise DataError(
                f"'{source}' has no labels file; multi-label data needs one (CSV/TSV/JSONL with a "
                f"'labels' column, tags separated by '|')."
            )
        source = found
    return (*read_tags_file(source, image_column, target_column, separator), "labels-file")


def detect_task(
    source: str | os.PathLike, *, target_column: str | None = None, separator: str = "auto"
) -> str:
    """``"multi_label"`` when the data evidently has several tags per image, else ``"single_label"``.

    Evidence: a cell holding a separator (``|``/``;``, or ``separator``) or a JSON list, 0/1
    columns per tag, the same image on rows with different labels, a ``Sequence`` column in a
    Hugging Face dataset. Class folders are single-label. Unreadable sources are left to the
    single-label reader to report.
    """
    path = Path(source).expanduser()
    if path.exists() and hfdata.is_hf_source(path):
        try:
            return "multi_label" if hfdata.has_tag_sequence(path, target_column) else "single_label"
        except (DataError, OSError, ValueError, KeyError):
            return "single_label"
    if path.is_dir() and not _looks_like_labels_folder(path):
        return "single_label"
    try:
        evident = _rows(path, None, target_column, separator, None)[3]
    except MixedSeparatorsError:  # several tags per image, evidently: the tag reader says what to fix
        return "multi_label"
    except (DataError, OSError, ValueError, KeyError):
        return "single_label"
    return "multi_label" if evident else "single_label"


def _looks_like_labels_folder(path: Path) -> bool:
    from sortsight.sources import _labels_file_in

    subdirs = [p for p in path.iterdir() if p.is_dir() and not images.is_junk(p)]
    return _labels_file_in(path) is not None and len(subdirs) < 2


def scan_tags(
    source: str | os.PathLike,
    *,
    image_column: str | None = None,
    target_column: str | None = None,
    separator: str = "auto",
    verify: bool = True,
    max_pixels: int | None = images.DEFAULT_MAX_PIXELS,
    progress: ProgressCallback | None = None,
) -> TagDataset:
    """Find the tagged images of ``source`` and check that each opens (unreadable ones are skipped).

    Raises:
        DataError: no images, missing files, mixed separators, more than :data:`MAX_TAGS` tags.
    """
    path = Path(source).expanduser().absolute()
    root, rows, bad, _, kind = _rows(path, image_column, target_column, separator, progress)
    skipped = [Skipped(p, r) for p, r in bad]
    sizes: dict[Path, tuple[int, int]] = {}
    if verify:
        results = verify_images([r[0] for r in rows], root, max_pixels, progress)
        kept = []
        for row in rows:
            result = results[row[0]]
            if isinstance(result, str):
                skipped.append(Skipped(row[0], result))
            else:
                kept.append(row)
                sizes[row[0]] = result
        rows = kept
    if not rows:
        raise DataError(f"No readable images in '{source}'. Run 'sortsight check {source}' to see why.")
    vocabulary = sorted({t for _, tags, _ in rows for t in tags})
    if len(vocabulary) > MAX_TAGS:
        raise DataError(
            f"'{source}' has {len(vocabulary)} distinct tags; sortsight learns at most {MAX_TAGS} "
            "(these look like free-text descriptions) — merge them into a smaller vocabulary."
        )
    items = sorted(
        (TagItem(p, tuple(sorted(tags)), split) for p, tags, split in rows),
        key=lambda it: (SPLITS.index(it.split) if it.split in SPLITS else -1, images.sort_key(it.path)),
    )
    return TagDataset(root, tuple(items), tuple(vocabulary), tuple(skipped), kind, (), sizes)


def split_tags(
    ds: TagDataset,
    *,
    valid_split: float = DEFAULT_VALID_SPLIT,
    test_split: float = 0.0,
    seed: int = DEFAULT_SEED,
    max_samples: int | None = None,
) -> TagDataset:
    """Assign train/validation/test by iterative stratification; leave out unlearnable tags.

    A tag on every image, or on a single one, cannot be learnt: it is left out of ``tags`` and
    listed in ``excluded`` with the reason. Existing splits (a ``split`` column) are kept.

    Raises:
        DataError: fewer than two learnable tags or too few images to split.
    """
    items = list(ds.items)
    if max_samples is not None and len(items) > max_samples:
        chosen = sorted(random.Random(f"{seed}:sample").sample(range(len(items)), max_samples))
        items = [items[i] for i in chosen]
    counts = Counter(t for it in items for t in it.tags)
    excluded = []
    for tag in ds.tags:
        n = counts.get(tag, 0)
        if n == len(items):
            excluded.append((tag, f"on every image ({n}): nothing to tell apart"))
        elif n < 2:
            excluded.append((tag, f"on {n} image only: too few to learn and check"))
    gone = {t for t, _ in excluded}
    tags = tuple(t for t in ds.tags if t not in gone)
    if len(tags) < 1:
        raise DataError(
            f"No learnable tag in '{ds.root}' ({'; '.join(f'{t} {why}' for t, why in excluded[:3])}); "
            "a tag needs at least two images and must be missing from some."
        )
    items = [replace(it, tags=tuple(t for t in it.tags if t not in gone)) for it in items]
    free = [i for i, it in enumerate(items) if it.split not in ("validation", "test")]
    need = {}
    if valid_split > 0 and not any(it.split == "validation" for it in items):
        need["validation"] = valid_split
    if test_split > 0 and not any(it.split == "test" for it in items):
        need["test"] = test_split
    if sum(need.values()) >= 1.0:
        raise ConfigError(f"valid_split + test_split = {sum(need.values()):g} leaves nothing to train on.")
    if len(free) < 2 + len(need):
        raise DataError(f"Only {len(free)} images to split in '{ds.root}'; add more images.")
    probe = replace(ds, tags=tags)
    names = (
        iterative_split(probe.matrix([items[i] for i in free]), need, seed=seed)
        if need
        else ["train"] * len(free)
    )
    for i, name in zip(free, names, strict=True):
        items[i] = replace(items[i], split=name)
    items.sort(key=lambda it: (SPLITS.index(it.split), images.sort_key(it.path)))
    return replace(ds, items=tuple(items), tags=tags, excluded=tuple(ds.excluded) + tuple(excluded))


def load_tag_dataset(
    source: str | os.PathLike,
    *,
    valid_split: float = DEFAULT_VALID_SPLIT,
    test_split: float = 0.0,
    seed: int = DEFAULT_SEED,
    max_samples: int | None = None,
    image_column: str | None = None,
    target_column: str | None = None,
    separator: str = "auto",
    verify: bool = True,
    max_pixels: int | None = images.DEFAULT_MAX_PIXELS,
    progress: ProgressCallback | None = None,
) -> TagDataset:
    """:func:`scan_tags` then :func:`split_tags` — what multi-label training and ``check`` use."""
    ds = scan_tags(
        source,
        image_column=image_column,
        target_column=target_column,
        separator=separator,
        verify=verify,
        max_pixels=max_pixels,
        progress=progress,
    )
    return split_tags(ds, valid_split=valid_split, test_split=test_split, seed=seed, max_samples=max_samples)


def summarize_tags(ds: TagDataset, *, pairs: int = 10, rare: int = RARE_TAG) -> dict[str, Any]:
    """The JSON-ready report of ``sortsight check`` for multi-label data.

    Keys: ``task``, ``source``, ``root``, ``fingerprint``, ``tags``, ``splits``, ``counts``
    (tag → split → n + total), ``totals``, ``no_tag`` (images with no tag, per split + total),
    ``tags_per_image`` (mean, max), ``cooccurrence`` (the most frequent pairs), ``rare_tags``,
    ``excluded`` (tag, reason), ``skipped``, ``warnings`` (kind, message).
    """
    present = [s for s in SPLITS if any(it.split == s for it in ds.items)] or [""]
    label = {s: s or "unsplit" for s in present}
    table = ds.counts()
    counts = {}
    for tag in ds.tags:
        row = {label[s]: table[tag].get(s, 0) for s in present}
        counts[tag] = {**row, "total": sum(row.values())}
    y = ds.matrix()
    n = len(ds.items)
    co = y.T.astype(np.int64) @ y.astype(np.int64)  # (T, T) images with both tags
    top = sorted(
        (
            (int(co[a, b]), ds.tags[a], ds.tags[b])
            for a in range(len(ds.tags))
            for b in range(a + 1, len(ds.tags))
        ),
        key=lambda x: (-x[0], x[1], x[2]),
    )
    no_tag = {label[s]: sum(1 for it in ds.items if it.split == s and not it.tags) for s in present}
    no_tag["total"] = sum(no_tag.values())
    rare_tags = [t for t in ds.tags if counts[t]["total"] < rare]
    warnings = [
        {"kind": "excluded-tag", "message": f"Tag '{t}' is {why}; it is left out of training."}
        for t, why in ds.excluded
    ]
    if rare_tags:
        warnings.append(
            {
                "kind": "rare-tags",
                "message": f"{len(rare_tags)} tag(s) are on fewer than {rare} "
                f"images ({', '.join(rare_tags[:5])}): too rare to learn reliably; aim for 30 or more.",
            }
        )
    if no_tag["total"]:
        warnings.append(
            {
                "kind": "no-tag",
                "message": f"{no_tag['total']} image(s) have no tag (empty cells); "
                "they are kept as examples where every tag is absent.",
            }
        )
    for split in ("validation", "test"):
        if split in present:
            lacking = [t for t in ds.tags if counts[t][split] == 0]
            if lacking:
                warnings.append(
                    {
                        "kind": "missing-in-split",
                        "message": f"No {split} images for "
                        f"{', '.join(lacking[:5])}; their {split} metrics cannot be measured.",
                    }
                )
    if ds.skipped:
        why = Counter(s.reason for s in ds.skipped).most_common(3)
        warnings.append(
            {
                "kind": "skipped",
                "message": f"{len(ds.skipped)} file(s) skipped ({', '.join(f'{k} {r}' for r, k in why)}).",
            }
        )
    per_image = y.sum(1) if n else np.zeros(1)
    return {
        "task": "multi_label",
        "source": ds.source,
        "root": str(ds.root),
        "fingerprint": ds.fingerprint(),
        "tags": list(ds.tags),
        "splits": [label[s] for s in present],
        "counts": counts,
        "totals": {**{label[s]: len(ds.by_split(s)) for s in present}, "total": n},
        "no_tag": no_tag,
        "tags_per_image": {"mean": round(float(per_image.mean()), 2), "max": int(per_image.max())},
        "cooccurrence": [{"tags": [a, b], "images": c} for c, a, b in top[:pairs] if c],
        "rare_tags": rare_tags,
        "excluded": [{"tag": t, "reason": why} for t, why in ds.excluded],
        "skipped": [{"path": ds.relative(s.path), "reason": s.reason} for s in ds.skipped],
        "warnings": warnings,
    }
