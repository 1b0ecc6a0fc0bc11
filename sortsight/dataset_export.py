"""Export a labelled image dataset in the Hugging Face ``datasets`` format, and push it to the Hub.

``export_dataset("birds/", "birds-dataset/")`` writes what ``datasets.load_dataset("birds-dataset/")``
reads offline and what a Hub dataset repo shows as it is:

- ``data/<split>-NNNNN-of-NNNNN.parquet``: the image bytes (as they are on disk, not re-encoded) and
  the label as a ``ClassLabel`` — or, for data with several tags per image
  (:func:`sortsight.tagdata.detect_task`), a ``labels`` column of ``Sequence(ClassLabel)``, which
  sortsight reads back as multi-label data — one shard per ``shard_size`` images;
- ``README.md``: a dataset card whose YAML header declares the features and splits, then the classes,
  image counts per split, where the images came from (``sources.csv``, when ``sortsight fetch`` built
  the folder, is copied beside it) and how the export was made.

The source is only read. The data's own splits are kept (split folders, a labels file's split
column); images in no split go to ``train``. ``push_dataset_to_hub`` uploads such a folder as a
private dataset repo with :func:`sortsight.hub.push_to_hub` (token never printed; an offline machine
fails in seconds and the local folder stays).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sortsight import __version__
from sortsight.errors import DataError, ExportError
from sortsight.progress import ProgressCallback, Ticker

__all__ = ["DatasetExport", "export_dataset", "push_dataset_to_hub"]

_SPLIT_ORDER = ("train", "validation", "test")


@dataclass(frozen=True)
class DatasetExport:
    """What :func:`export_dataset` wrote."""

    folder: Path
    classes: tuple[str, ...]  # the tags, for multi-label data
    counts: dict[str, dict[str, int]]  # {split: {class: n}}; multi-label: images with each tag
    files: tuple[Path, ...]
    task: str = "single_label"
    images: dict[str, int] | None = None  # {split: n}

    @property
    def total(self) -> int:
        """Images exported."""
        if self.images is not None:
            return sum(self.images.values())
        return sum(sum(per.values()) for per in self.counts.values())


def _check_out(out: Path, source: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"'{out}' already exists and is not empty. Choose a new folder for the export.")
    try:
        out.resolve().relative_to(source.resolve())
    except ValueError:
        return
    if source.is_dir():
        raise DataError(f"'{out}' is inside the data folder '{source}'. Choose a folder outside it.")


def export_dataset(
    data: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    shard_size: int = 1000,
    image_column: str | None = None,
    target_column: str | None = None,
    progress: ProgressCallback | None = None,
) -> DatasetExport:
    """Write ``data`` (any source sortsight reads) as a Hugging Face dataset folder in ``out_dir``.

    Args:
        data: class folders, split folders, a labels file or an HF dataset, as for training.
        out_dir: a new (or empty) folder.
        shard_size: images per parquet file.
        image_column, target_column: as in :func:`sortsight.data.scan`.
        progress: an ``export`` event per image.

    Returns:
        A :class:`DatasetExport` with the counts per split and class.

    Raises:
        DataError: the data cannot be read, or ``out_dir`` is not new.

    Example:
        >>> export_dataset("birds/", "birds-dataset/")  # doctest: +SKIP
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sortsight.data import scan
    from sortsight.tagdata import detect_task, scan_tags

    source, out = Path(data), Path(out_dir)
    _check_out(out, source)
    by_split: dict[str, list[tuple[Path, Any]]] = {}
    task = detect_task(source, target_column=target_column)
    if task == "multi_label":
        tagged = scan_tags(source, image_column=image_column, target_column=target_column)
        names, fingerprint, column = tagged.tags, tagged.fingerprint(), "labels"
        tag_index = {t: i for i, t in enumerate(names)}
        for tag_item in tagged.items:
            value = sorted(tag_index[t] for t in tag_item.tags if t in tag_index)
            by_split.setdefault(tag_item.split or "train", []).append((tag_item.path, value))
        label_type: Any = pa.list_(pa.int64())
    else:
        ds = scan(source, image_column=image_column, target_column=target_column)
        names, fingerprint, column = tuple(ds.classes), ds.fingerprint(), "label"
        for item in ds.items:
            by_split.setdefault(item.split or "train", []).append((item.path, ds.class_to_index[item.label]))
        label_type = pa.int64()
    splits = [s for s in _SPLIT_ORDER if s in by_split]
    out.mkdir(parents=True, exist_ok=True)
    (out / "data").mkdir(exist_ok=True)
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    # the features as ``datasets`` itself records them in a parquet file: its ``load_dataset`` and
    # sortsight's own reader (:mod:`sortsight.hfdata`) both take the names from here
    label_feature: dict[str, Any] = {"names": list(names), "_type": "ClassLabel"}
    if task == "multi_label":
        label_feature = {"feature": label_feature, "_type": "List"}
    features = {"image": {"_type": "Image"}, column: label_feature}
    schema = pa.schema(
        [("image", image_type), (column, label_type)],
        metadata={"huggingface": json.dumps({"info": {"features": features}})},
    )
    ticker = Ticker(progress, "export", sum(len(rows) for rows in by_split.values()))
    files: list[Path] = []
    sizes = dict.fromkeys(splits, 0)  # image bytes per split, which the card's split info declares
    for split in splits:
        rows = by_split[split]
        shards = max(1, math.ceil(len(rows) / shard_size))
        for k in range(shards):
            chunk = rows[k * shard_size : (k + 1) * shard_size]
            images = [{"bytes": p.read_bytes(), "path": p.name} for p, _ in chunk]
            sizes[split] += sum(len(i["bytes"]) for i in images)
            table = pa.table({"image": images, column: [y for _, y in chunk]}, schema=schema)
            path = out / "data" / f"{split}-{k:05d}-of-{shards:05d}.parquet"
            pq.write_table(table, path)
            files.append(path)
            ticker.advance(len(chunk))

    def has(y: Any, i: int) -> bool:
        return i in y if isinstance(y, list) else bool(y == i)

    counts = {
        split: {name: sum(1 for _, y in by_split[split] if has(y, i)) for i, name in enumerate(names)}
        for split in splits
    }
    sources = source / "sources.csv" if source.is_dir() else None
    if sources is not None and sources.is_file():
        shutil.copy2(sources, out / "sources.csv")
        files.append(out / "sources.csv")
    (out / "README.md").write_text(
        _card(
            source,
            names,
            counts,
            has_sources=sources is not None and sources.is_file(),
            fingerprint=fingerprint,
            images={split: len(rows) for split, rows in by_split.items()},
            sizes=sizes,
            multi_label=task == "multi_label",
        ),
        encoding="utf-8",
    )
    files.append(out / "README.md")
    per_split = {split: len(rows) for split, rows in by_split.items()}
    return DatasetExport(out, tuple(names), counts, tuple(files), task, per_split)


def _card(
    source: Path,
    classes: tuple[str, ...],
    counts: dict[str, dict[str, int]],
    *,
    has_sources: bool,
    fingerprint: str,
    images: dict[str, int],
    sizes: dict[str, int],
    multi_label: bool,
) -> str:
    names = "\n".join(
        f"          '{i}': {json.dumps(name, ensure_ascii=False)}" for i, name in enumerate(classes)
    )
    data_files = "\n".join(f"  - split: {s}\n    path: data/{s}-*.parquet" for s in counts)
    split_info = "\n".join(
        f"  - name: {s}\n    num_bytes: {sizes[s]}\n    num_examples: {images[s]}" for s in counts
    )
    feature = (
        "  - name: labels\n    sequence:\n      class_label:\n        names:\n"
        if multi_label
        else "  - name: label\n    dtype:\n      class_label:\n        names:\n"
    )
    kind, example = ("tag", '"labels": [0, 2]') if multi_label else ("class", '"label": 0')
    total = sum(images.values())
    header = (
        "---\n"
        "task_categories:\n- image-classification\n"
        "configs:\n- config_name: default\n  data_files:\n"
        f"{data_files}\n"
        "dataset_info:\n  features:\n  - name: image\n    dtype: image\n"
        f"{feature}{names}\n"
        f"  splits:\n{split_info}\n"
        "tags:\n- sortsight\n"
        "---\n"
    )
    table = [f"| {kind} | " + " | ".join(counts) + " |", "|---|" + "---:|" * len(counts)]
    for name in classes:
        table.append(f"| {name} | " + " | ".join(str(counts[s][name]) for s in counts) + " |")
    table.append("| **images** | " + " | ".join(str(images[s]) for s in counts) + " |")
    if has_sources:
        provenance = (
            "The images were collected with `sortsight fetch`; `sources.csv` lists for every image the "
            "URL it came from, the search query, the page it was on, what the search said of its source "
            "or licence, and its SHA-256. **Check each image's licence before you publish or reuse it.**"
        )
    else:
        provenance = (
            f"Exported from the local folder `{source.name}`. Add where the images come from and under "
            "which licence before publishing."
        )
    return (
        f"{header}\n# {source.name}\n\n"
        + (
            f"A multi-label image dataset of {total} images with {len(classes)} tags (images per tag "
            "below; an image may have several or none)"
            if multi_label
            else f"An image-classification dataset of {total} images in {len(classes)} classes"
        )
        + f", exported by sortsight {__version__} (data fingerprint `{fingerprint}`).\n\n"
        f"## {'Tags' if multi_label else 'Classes'} and splits\n\n" + "\n".join(table) + "\n\n"
        "## Sources\n\n" + provenance + "\n\n"
        "## Use\n\n```python\nfrom datasets import load_dataset\n\n"
        f'ds = load_dataset("path/or/user/name")\nds["train"][0]  # {{"image": PIL image, {example}}}\n```\n'
    )


def push_dataset_to_hub(
    folder: str | os.PathLike, repo_id: str, *, private: bool = True, token: str | None = None
) -> str:
    """Upload a folder written by :func:`export_dataset` as a dataset repo (private by default).

    Raises:
        ExportError: not an export folder, bad repo id, no token, Hub unreachable or refusing.
    """
    from sortsight.hub import push_to_hub

    folder = Path(folder)
    if not (folder / "README.md").is_file() or not any((folder / "data").glob("*.parquet")):
        raise ExportError(
            f"{folder} is not a dataset export (no README.md and data/*.parquet): "
            "write one with `sortsight export DATA --dataset-out DIR`"
        )
    return push_to_hub(folder, repo_id, repo_type="dataset", private=private, token=token)
