"""Hugging Face datasets (``save_to_disk`` folders and parquet files) as image files.

A dataset saved with ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` or stored as parquet
(the Hub's layout: ``data/train-00000-of-00001.parquet``) is read with ``pyarrow`` directly — no
``datasets`` import, no network — and its images are written once into a cache folder
(``$SORTSIGHT_CACHE`` or ``~/.cache/sortsight``) keyed by the source files' names, sizes and
times, so every later step works with plain file paths and a second scan is instant.

Columns: the image column is the one typed ``Image`` (or named ``image``, ``img``, ...), the label
column the one typed ``ClassLabel`` (or named ``label``, ``target``, ...); either can be named.
Split names ``train``, ``validation``/``valid``/``val`` and ``test`` are kept.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sortsight.errors import DataError
from sortsight.fileops import cache_dir, staged_folder
from sortsight.labelfile import (
    IMAGE_COLUMNS,
    SPLIT_ALIASES,
    TAG_COLUMNS,
    TARGET_COLUMNS,
    pick_column,
    split_cell,
)
from sortsight.progress import ProgressCallback, Ticker

__all__ = ["cache_dir", "is_hf_source", "materialize", "materialize_tags"]

_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, ".jpg"),
    (b"\x89PNG", 0, ".png"),
    (b"GIF8", 0, ".gif"),
    (b"BM", 0, ".bmp"),
    (b"II*\x00", 0, ".tif"),
    (b"MM\x00*", 0, ".tif"),
    (b"WEBP", 8, ".webp"),
    (b"ftypavif", 4, ".avif"),
    (b"ftyp", 4, ".heic"),
)


def _parquet_files(source: Path) -> list[Path]:
    if source.is_file():
        return [source] if source.suffix.lower() == ".parquet" else []
    found = [
        p for pattern in ("*.parquet", "*/*.parquet", "*/*/*.parquet") for p in sorted(source.glob(pattern))
    ]
    return [p for p in found if not p.name.startswith(".")]


def is_hf_source(source: Path) -> bool:
    """True for a ``save_to_disk`` folder, a parquet file, or a folder of parquet files."""
    if source.is_dir() and (
        (source / "dataset_dict.json").is_file()
        or ((source / "state.json").is_file() and (source / "dataset_info.json").is_file())
    ):
        return True
    return bool(_parquet_files(source))


def _split_name(name: str) -> str:

    return SPLIT_ALIASES.get(name.lower(), "")


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.ipc
        import pyarrow.parquet
    except ImportError as exc:
        raise DataError(
            "Reading Hugging Face datasets needs pyarrow; install it with pip install 'sortsight[datasets]'."
        ) from exc
    return pyarrow


def _shards(source: Path) -> tuple[list[tuple[Path, str, str]], dict[str, Any], str]:
    """``([(file, split, "arrow"|"parquet")], features, kind)`` for a source."""
    pa = _pyarrow()
    if (source / "dataset_dict.json").is_file() or (source / "state.json").is_file():
        subsets: list[tuple[Path, str]] = []
        if (source / "dataset_dict.json").is_file():
            names = json.loads((source / "dataset_dict.json").read_text(encoding="utf-8")).get("splits", [])
            subsets = [(source / name, _split_name(name)) for name in names]
        else:
            state = json.loads((source / "state.json").read_text(encoding="utf-8"))
            subsets = [(source, _split_name(str(state.get("_split") or "")))]
        shards: list[tuple[Path, str, str]] = []
        features: dict[str, Any] = {}
        for folder, split in subsets:
            state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
            info = json.loads((folder / "dataset_info.json").read_text(encoding="utf-8"))
            features = features or info.get("features") or {}
            shards += [(folder / f["filename"], split, "arrow") for f in state.get("_data_files", [])]
        return shards, features, "hf-disk"
    files = _parquet_files(source)
    shards = []
    for file in files:
        stem = file.stem.split("-")[0]
        split = _split_name(stem) or (_split_name(file.parent.name) if file.parent != source else "")
        shards.append((file, split, "parquet"))
    meta = pa.parquet.read_schema(files[0]).metadata or {}
    features = {}
    if b"huggingface" in meta:
        features = json.loads(meta[b"huggingface"]).get("info", {}).get("features", {}) or {}
    return shards, features, "parquet"


def _columns(shard: tuple[Path, str, str]) -> list[str]:
    pa = _pyarrow()
    file, _, fmt = shard
    if fmt == "parquet":
        return list(pa.parquet.read_schema(file).names)
    with pa.memory_map(str(file)) as mm:
        return list(pa.ipc.open_stream(mm).schema.names)


def _batches(shard: tuple[Path, str, str], columns: list[str]) -> Iterator[list[dict[str, Any]]]:
    pa = _pyarrow()
    file, _, fmt = shard
    if fmt == "parquet":
        for batch in pa.parquet.ParquetFile(file).iter_batches(batch_size=256, columns=columns):
            yield batch.to_pylist()
        return
    with pa.memory_map(str(file)) as mm:
        for batch in pa.ipc.open_stream(mm):
            yield batch.select(columns).to_pylist()


def _extension(data: bytes, name: str | None) -> str:
    if name and Path(name).suffix:
        return Path(name).suffix.lower()
    for magic, offset, ext in _MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return ext
    return ".bin"


def _safe(label: str) -> str:
    cleaned = "".join("_" if ch in '/\\:*?"<>|' or ord(ch) < 32 else ch for ch in label).strip(". ")
    return cleaned[:80] or "_"


def _cache_key(source: Path, shards: list[tuple[Path, str, str]], image_col: str, target_col: str) -> str:
    digest = hashlib.sha256(str(source.resolve()).encode())
    for file, split, _ in shards:
        stat = file.stat()
        digest.update(f"{file.name}|{split}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    digest.update(f"{image_col}|{target_col}".encode())
    return digest.hexdigest()[:20]


def materialize(
    source: Path,
    *,
    image_column: str | None = None,
    target_column: str | None = None,
    progress: ProgressCallback | None = None,
) -> tuple[Path, list[tuple[Path, str, str]], list[tuple[Path, str]], str]:
    """Write the dataset's images as files (once) and return ``(root, items, skipped, kind)``.

    ``items`` are ``(path, label, split)``; ``skipped`` are ``(path, reason)`` for rows without
    an image or a label.

    Raises:
        DataError: unknown column (closest suggested), unreadable dataset, pyarrow missing.
    """
    try:
        shards, features, kind = _shards(source)
        columns = _columns(shards[0]) if shards else []
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"'{source}' looks like a Hugging Face dataset but cannot be read ({exc}).") from exc
    if not shards:
        raise DataError(f"'{source}' holds no dataset files (.arrow or .parquet).")
    typed = {name: (spec or {}).get("_type") for name, spec in features.items() if isinstance(spec, dict)}
    where = f"dataset '{source.name}'"
    image_defaults = tuple(n for n in columns if typed.get(n) == "Image") + IMAGE_COLUMNS
    target_defaults = tuple(n for n in columns if typed.get(n) == "ClassLabel") + TARGET_COLUMNS
    image_col = pick_column(columns, image_column, image_defaults, "image", where, "--image-column")
    target_col = pick_column(columns, target_column, target_defaults, "label", where, "--target-column")
    names: list[str] = list((features.get(target_col) or {}).get("names") or [])
    out = cache_dir() / "datasets" / _cache_key(source, shards, image_col, target_col)
    manifest = out / "manifest.json"
    if not manifest.is_file():
        _write(source, shards, out, image_col, target_col, names, progress)
    data = json.loads(manifest.read_text(encoding="utf-8"))
    items = [(out / rel, label, split) for rel, label, split in data["items"]]
    skipped = [(source / rel, reason) for rel, reason in data["skipped"]]
    return out, items, skipped, kind


def image_bytes(value: Any, source: Path) -> tuple[bytes | None, str | None]:
    """The encoded bytes and file name of one ``Image`` cell (bytes, a path, or ``{bytes, path}``)."""
    data, name = None, None
    if isinstance(value, dict):
        data, name = value.get("bytes"), value.get("path")
    elif isinstance(value, (bytes, bytearray)):
        data = bytes(value)
    elif isinstance(value, str):
        name = value
    if not data and name:
        original = Path(name) if Path(name).is_absolute() else source / name
        if original.is_file():
            data = original.read_bytes()
    return data, name


def write_cache_folder(out: Path, files: dict[str, bytes], manifest: dict[str, Any]) -> None:
    """Write ``files`` (relative path → bytes) and ``manifest.json`` into ``out`` atomically."""
    with staged_folder(out, existing="keep") as tmp:  # a reader never sees half a cache folder
        for rel, data in files.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_bytes(data)
        (tmp / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


def _write(
    source: Path,
    shards: list[tuple[Path, str, str]],
    out: Path,
    image_col: str,
    target_col: str,
    names: list[str],
    progress: ProgressCallback | None,
) -> None:
    items: list[tuple[str, str, str]] = []
    skipped: list[tuple[str, str]] = []
    ticker = Ticker(progress, "extract", total=0)
    with staged_folder(out, existing="keep") as tmp:  # a reader never sees half a cache folder
        row = 0
        for shard in shards:
            split = shard[1]
            for batch in _batches(shard, [image_col, target_col]):
                for record in batch:
                    row += 1
                    where = f"{shard[0].name}#row{row}"
                    label = record.get(target_col)
                    if isinstance(label, (list, dict)):
                        raise DataError(
                            f"Column '{target_col}' holds several labels per image; train a tagger with "
                            "--task multi_label, or choose another column with --target-column."
                        )
                    if isinstance(label, int) and names:
                        label = names[label] if 0 <= label < len(names) else None
                    if label is None or str(label).strip() == "":
                        skipped.append((where, "no label"))
                        continue
                    label = str(label).strip()
                    data, name = image_bytes(record.get(image_col), source)
                    if not data:
                        skipped.append((where, "no image data"))
                        continue
                    rel = f"{split or 'all'}/{_safe(label)}/{row:07d}{_extension(data, name)}"
                    target = tmp / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(data)
                    items.append((rel, label, split))
                ticker.advance(len(batch))
        (tmp / "manifest.json").write_text(
            json.dumps({"source": str(source), "items": items, "skipped": skipped}), encoding="utf-8"
        )


def _hf_tag_names(spec: Any) -> list[str] | None:
    """The tag names of a ``Sequence(ClassLabel)`` feature ([] for a sequence of strings), else None."""
    if isinstance(spec, list) and spec:
        inner = spec[0]
    elif isinstance(spec, dict) and spec.get("_type") in ("Sequence", "List", "LargeList"):
        inner = spec.get("feature")
    else:
        return None
    return list(inner.get("names") or []) if isinstance(inner, dict) else []


def materialize_tags(
    source: Path,
    *,
    image_column: str | None = None,
    target_column: str | None = None,
    progress: ProgressCallback | None = None,
) -> tuple[Path, list[tuple[Path, tuple[str, ...], str]], list[tuple[Path, str]], bool]:
    """Like :func:`materialize` for multi-label data: ``(root, [(path, tags, split)], skipped, is
    a sequence column)``. The tag column is the one typed ``Sequence(ClassLabel)`` (or named
    ``labels``/``tags``/...); its integers become the ClassLabel names."""
    shards, features, _ = _shards(source)
    columns = _columns(shards[0])
    sequences = {n: _hf_tag_names(s) for n, s in features.items()}
    typed_images = tuple(n for n in columns if (features.get(n) or {}).get("_type") == "Image")
    where = f"dataset '{source.name}'"
    image_col = pick_column(
        columns, image_column, typed_images + IMAGE_COLUMNS, "image", where, "--image-column"
    )
    seq_cols = tuple(n for n in columns if sequences.get(n) is not None)
    tag_col = pick_column(columns, target_column, seq_cols + TAG_COLUMNS, "labels", where, "--target-column")
    names = sequences.get(tag_col) or []
    out = cache_dir() / "datasets" / (_cache_key(source, shards, image_col, tag_col) + "-tags")
    manifest = out / "manifest.json"
    if not manifest.is_file():
        items: list[tuple[str, list[str], str]] = []
        skipped: list[tuple[str, str]] = []
        files: dict[str, bytes] = {}
        row = 0
        for shard in shards:
            for batch in _batches(shard, [image_col, tag_col]):
                for record in batch:
                    row += 1
                    value = record.get(tag_col)
                    raw = value if isinstance(value, list) else ([] if value is None else [value])
                    tags = [names[v] if isinstance(v, int) and 0 <= v < len(names) else str(v) for v in raw]
                    data, name = image_bytes(record.get(image_col), source)
                    if not data:
                        skipped.append((f"{shard[0].name}#row{row}", "no image data"))
                        continue
                    rel = f"{shard[1] or 'all'}/{row:07d}{_extension(data, name)}"
                    files[rel] = data
                    items.append((rel, tags, shard[1]))
        write_cache_folder(out, files, {"source": str(source), "items": items, "skipped": skipped})
    data = json.loads(manifest.read_text(encoding="utf-8"))
    found = [(out / rel, tuple(split_cell(tags, "")), split) for rel, tags, split in data["items"]]
    return out, found, [(source / r, why) for r, why in data["skipped"]], sequences.get(tag_col) is not None


def has_tag_sequence(source: Path, target_column: str | None = None) -> bool:
    """Whether a HF dataset's label column (``target_column``, else any) is a ``Sequence`` — read
    from its schema only, no image is extracted."""
    _, features, _ = _shards(source)
    sequences = [n for n, spec in features.items() if _hf_tag_names(spec) is not None]
    return target_column in sequences if target_column else bool(sequences)
