"""An embeddings index of an unlabelled pile of images: ``sortsight index PILE/ --out pile.index``.

The index is a folder (the one owner of this format is this module)::

    pile.index/
      index.json        {"format": "sortsight-index", "version": 1, "root": "/abs/PILE",
                         "backbone": {"id": "efficientnet_lite0@224", "model": ..., "image_size": ...,
                         "dim": 1280}, "files": N, "unreadable": M, "updated": <unix time>}
      files.csv         one row per file: path (relative to root, forward slashes), size,
                        mtime_ns, sha256, backbone, shard, row, status ("ok" or "unreadable"), error
      shards/000001.npy float32 (n, dim) pooled backbone features, not normalised; row ``row``
                        of shard ``shard`` belongs to the files.csv row that names it

Building streams: vectors go to a new shard every ``shard_size`` images (written to a temporary
file, then renamed), and only then are their rows appended to ``files.csv`` (flushed and
fsynced). A process killed at any moment leaves shards that are complete and rows that point
only into them: the next run cuts a torn last line, removes shards no row names, and embeds
only what is missing. For a path listed twice the last row wins; at the end of a run the table
is rewritten (atomically) with one row per file still present. Memory stays flat in the size of
the pile: vectors are never all held (only the table is, about 150 bytes a file).

A re-run embeds only new files and files whose size or modification time changed. Unreadable
files are recorded with ``status=unreadable`` and their reason, and retried only when they
change. An index built with another backbone (model or image size) is refused.

Example:
    >>> summary = build_index("scans/", "scans.index")       # doctest: +SKIP
    >>> index = load_index("scans.index"); len(index)        # doctest: +SKIP
    20000
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sortsight._index_embed import Embedder, default_image_size, iter_embeddings, load_embedder
from sortsight.config import IndexConfig
from sortsight.errors import DataError, ModelError
from sortsight.fileops import atomic_write, atomic_write_text, repair_tail
from sortsight.images import iter_image_files, sort_key
from sortsight.models import resolve_model_name
from sortsight.progress import ProgressCallback, Ticker

__all__ = [
    "INDEX_FORMAT",
    "TABLE_COLUMNS",
    "EmbeddingIndex",
    "IndexSummary",
    "build_index",
    "load_index",
]

INDEX_FORMAT = "sortsight-index"
_VERSION = 1
TABLE_COLUMNS = ("path", "size", "mtime_ns", "sha256", "backbone", "shard", "row", "status", "error")
_META, _TABLE, _SHARDS = "index.json", "files.csv", "shards"


def backbone_id(model: str, image_size: int) -> str:
    """How an index names its backbone: ``"<model>@<image size>"`` (e.g. ``efficientnet_lite0@224``)."""
    return f"{resolve_model_name(model)}@{int(image_size)}"


@dataclass
class IndexSummary:
    """What :func:`build_index` did."""

    output: Path
    backbone: str
    total: int = 0  # image files found under the root
    already: int = 0  # unchanged since an earlier run (not embedded again)
    embedded: int = 0
    unreadable: int = 0  # newly found unreadable (with reasons)
    removed: int = 0  # rows dropped because their file is gone
    seconds: float = 0.0
    engine: str = ""
    reasons: dict[str, int] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) of every unreadable file

    @property
    def images_per_second(self) -> float:
        done = self.embedded + self.unreadable
        return done / self.seconds if self.seconds > 0 else 0.0


# --------------------------------------------------------------------------- the table


def _read_table(path: Path) -> dict[str, dict[str, str]]:
    """``{relative path: row}`` with the last row of each path (a torn last line is cut first)."""
    if not path.is_file():
        return {}
    repair_tail(path)
    rows: dict[str, dict[str, str]] = {}
    with open(path, encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            if row.get("error") is None or not row.get("path"):
                continue  # incomplete
            rows[row["path"]] = row
    return rows


def _write_table(path: Path, rows: list[dict[str, str]]) -> None:
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, TABLE_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, text.getvalue())


def _append_rows(path: Path, rows: list[dict[str, str]]) -> None:
    new = not path.is_file() or path.stat().st_size == 0
    with open(path, "a", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, TABLE_COLUMNS, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerows(rows)
        fh.flush()
        os.fsync(fh.fileno())


def _read_meta(folder: Path) -> dict[str, Any]:
    try:
        meta = json.loads((folder / _META).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(
            f"'{folder}' is not a sortsight index (no readable {_META}). Build one with "
            f"'sortsight index PILE/ --out {folder}'."
        ) from exc
    if not isinstance(meta, dict) or meta.get("format") != INDEX_FORMAT:
        raise DataError(
            f"'{folder}/{_META}' is not a sortsight index file. Give the folder 'sortsight index' wrote."
        )
    if int(meta.get("version", 0)) > _VERSION:
        raise DataError(
            f"'{folder}' was written by a newer sortsight (index version {meta.get('version')}); upgrade."
        )
    return meta


def _shard_path(folder: Path, shard: int) -> Path:
    return folder / _SHARDS / f"{shard:06d}.npy"


def _tidy_shards(folder: Path, rows: dict[str, dict[str, str]]) -> int:
    """Remove temporary files and shards no row names (left by a kill); return the next shard number."""
    named = {int(r["shard"]) for r in rows.values() if r.get("shard")}
    top = max(named, default=0)
    for path in (folder / _SHARDS).glob("*"):
        stem = path.name.split(".")[0]
        if path.name.startswith(".") or not stem.isdigit() or int(stem) not in named:
            path.unlink(missing_ok=True)
        else:
            top = max(top, int(stem))
    return top + 1


# --------------------------------------------------------------------------- building


def _prepare(out: Path, root: Path, bid: str) -> dict[str, Any] | None:
    """The existing index's metadata (None for a new one), or an error when it cannot be reused."""
    if out.exists() and not out.is_dir():
        raise DataError(f"'{out}' is a file; give a folder name for the index (e.g. pile.index).")
    if not (out / _META).is_file():
        if out.is_dir() and any(p for p in out.iterdir() if p.name != _SHARDS):
            raise DataError(f"'{out}' exists and is not a sortsight index; choose another --out.")
        return None
    meta = _read_meta(out)
    built = meta.get("backbone", {}).get("id")
    if built != bid:
        raise ModelError(
            f"'{out}' was built with backbone {built}, not {bid}. Re-run with the same model and image "
            f"size, or write a new index with another --out."
        )
    if Path(meta.get("root", "")) != root:
        raise DataError(
            f"'{out}' indexes '{meta.get('root')}', not '{root}'. Give that folder, or another --out."
        )
    return meta


def _scan(root: Path, known: dict[str, dict[str, str]]) -> tuple[list[str], list[tuple[Path, int, int]], int]:
    """(every relative path under root, files to embed with their size and mtime, how many are unchanged)."""
    present: list[str] = []
    todo: list[tuple[Path, int, int]] = []
    for path in iter_image_files(root):
        rel = path.relative_to(root).as_posix()
        present.append(rel)
        try:
            st = path.stat()
        except OSError:
            continue
        row = known.get(rel)
        if row and row["size"] == str(st.st_size) and row["mtime_ns"] == str(st.st_mtime_ns):
            continue
        todo.append((path, st.st_size, st.st_mtime_ns))
    return present, todo, len(present) - len(todo)


def build_index(
    source: str | os.PathLike,
    out: str | os.PathLike,
    *,
    model: str = IndexConfig.model,
    image_size: int | None = IndexConfig.image_size,
    engine: str = IndexConfig.engine,
    batch_size: int = IndexConfig.batch_size,
    shard_size: int = IndexConfig.shard_size,
    num_workers: int | None = IndexConfig.num_workers,
    progress: ProgressCallback | None = None,
) -> IndexSummary:
    """Embed every image under ``source`` into the index folder ``out`` (incremental, resumable).

    Args:
        source: the pile: a folder searched recursively (junk and hidden files skipped).
        out: the index folder (created; reused when it exists, see the module docstring).
        model: backbone (bundled names need no network; any timm name or HF folder works).
        image_size: square input side (default: the backbone's own, e.g. 224 for Lite0).
        engine: ``"auto"`` (fastest here: onnx → jit → eager), ``"onnx"``, ``"jit"`` or ``"eager"``.
        batch_size: images per forward pass.
        shard_size: vectors per shard file (the most work a kill can lose).
        num_workers: decoding processes (default: one per spare core).
        progress: receives ``phase="index"`` events.

    Returns:
        An :class:`IndexSummary` (``skipped`` lists every unreadable file with its reason).

    Raises:
        ConfigError: a setting is out of range (checked by :class:`~sortsight.config.IndexConfig`).
        DataError: ``source`` is not a folder or holds no images; ``out`` is not an index.
        ModelError: ``out`` was built with another backbone; the model cannot be loaded.
    """
    settings = IndexConfig(
        model=model,
        image_size=image_size,
        engine=engine,
        batch_size=batch_size,
        shard_size=shard_size,
        num_workers=num_workers,
    )
    root = Path(source).expanduser().absolute()
    if not root.is_dir():
        raise DataError(f"'{source}' is not a folder. Give the folder of images to index.")
    folder = Path(out).expanduser().absolute()
    if folder == root or root in folder.parents:
        raise DataError(f"The index '{out}' would be inside the pile '{source}'; write it elsewhere.")
    size = int(settings.image_size or default_image_size(settings.model))
    bid = backbone_id(settings.model, size)
    meta = _prepare(folder, root, bid)
    (folder / _SHARDS).mkdir(parents=True, exist_ok=True)
    table = folder / _TABLE
    known = _read_table(table)
    next_shard = _tidy_shards(folder, known)
    present, todo, unchanged = _scan(root, known)
    if not present:
        raise DataError(f"No images found in '{source}'. Give a folder holding image files.")
    summary = IndexSummary(folder, bid, total=len(present), already=unchanged)
    start = time.perf_counter()
    if todo:
        embedder = load_embedder(settings.model, size, engine=settings.engine)
        summary.engine = embedder.engine.name
        dim = embedder.dim
        if meta is not None and int(meta["backbone"].get("dim", dim)) != dim:
            raise ModelError(f"'{out}' holds {meta['backbone']['dim']}-d vectors, this backbone gives {dim}.")
        if meta is None:
            meta = {"format": INDEX_FORMAT, "version": _VERSION, "root": str(root), "created": time.time()}
        meta["backbone"] = {
            "id": bid,
            "model": resolve_model_name(settings.model),
            "image_size": size,
            "dim": dim,
        }
        atomic_write_text(folder / _META, json.dumps(meta, indent=2, ensure_ascii=False))
        _embed_all(embedder, root, todo, folder, next_shard, summary, settings, progress)
    summary.seconds = time.perf_counter() - start
    _finish(folder, root, present, summary, meta)
    return summary


def _embed_all(
    embedder: Embedder,
    root: Path,
    todo: list[tuple[Path, int, int]],
    folder: Path,
    shard: int,
    summary: IndexSummary,
    settings: IndexConfig,
    progress: ProgressCallback | None,
) -> None:
    table = folder / _TABLE
    ticker = Ticker(progress, "index", len(todo))
    start = time.perf_counter()
    vectors: list[np.ndarray] = []
    rows: list[dict[str, str]] = []

    def flush() -> None:
        nonlocal shard, vectors, rows
        if vectors:
            target = _shard_path(folder, shard)
            block = np.stack(vectors).astype(np.float32)  # (n, D)
            atomic_write(target, lambda fh: np.save(fh, block, allow_pickle=False))
            shard += 1
        if rows:
            _append_rows(table, rows)  # only after the shard they point into is on disk
            ticker.advance(
                len(rows), images_per_second=round(len(rows) / max(1e-9, time.perf_counter() - start), 1)
            )
        vectors, rows = [], []

    files = [path for path, _, _ in todo]
    for i, sha, vector, reason in iter_embeddings(
        embedder, files, batch_size=settings.batch_size, num_workers=settings.num_workers
    ):
        path, size, mtime = todo[i]  # the stat taken before reading: a file changed since is embedded again
        row = {
            "path": path.relative_to(root).as_posix(),
            "size": str(size),
            "mtime_ns": str(mtime),
            "sha256": sha,
            "backbone": summary.backbone,
            "shard": "",
            "row": "",
            "status": "ok",
            "error": "",
        }
        if vector is None:
            row.update(status="unreadable", error=reason)
            summary.unreadable += 1
            summary.reasons[reason] = summary.reasons.get(reason, 0) + 1
        else:
            row.update(shard=str(shard), row=str(len(vectors)))
            vectors.append(vector)
            summary.embedded += 1
        rows.append(row)
        if len(vectors) >= settings.shard_size or len(rows) >= 4 * settings.shard_size:
            flush()
    flush()


def _finish(
    folder: Path, root: Path, present: list[str], summary: IndexSummary, meta: dict[str, Any] | None
) -> None:
    """Rewrite the table with one row per file still present, and the counts in index.json."""
    table = folder / _TABLE
    rows = _read_table(table)
    alive = set(present)
    live = [rows[p] for p in sorted(rows, key=sort_key) if p in alive]
    summary.removed = len(rows) - len(live)
    summary.skipped = [(str(root / r["path"]), r["error"]) for r in live if r["status"] != "ok"]
    _write_table(table, live)
    changed = summary.embedded or summary.unreadable or summary.removed
    if meta is not None and (changed or "updated" not in meta):  # an unchanged pile keeps derived caches
        meta["files"] = sum(1 for r in live if r["status"] == "ok")
        meta["unreadable"] = len(live) - meta["files"]
        meta["updated"] = time.time()
        atomic_write_text(folder / _META, json.dumps(meta, indent=2, ensure_ascii=False))


# --------------------------------------------------------------------------- reading


class EmbeddingIndex:
    """A built index, read-only: paths, their vectors (shard by shard), and its backbone.

    Example:
        >>> index = load_index("scans.index")   # doctest: +SKIP
        >>> index.backbone_id, len(index)       # doctest: +SKIP
        ('efficientnet_lite0@224', 20000)
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder).expanduser().absolute()
        self.meta = _read_meta(self.folder)
        table = self.folder / _TABLE
        rows = _read_table(table) if table.is_file() else {}
        ordered = sorted(rows.values(), key=lambda r: sort_key(r["path"]))
        self.rows = [r for r in ordered if r["status"] == "ok"]
        self.unreadable = [(r["path"], r["error"]) for r in ordered if r["status"] != "ok"]
        self.root = Path(self.meta["root"])
        self._by_path = {r["path"]: i for i, r in enumerate(self.rows)}
        self._paths = [self.root / r["path"] for r in self.rows]
        self._embedder: Embedder | None = None

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def backbone(self) -> dict[str, Any]:
        return dict(self.meta.get("backbone", {}))

    @property
    def backbone_id(self) -> str:
        return str(self.backbone.get("id", ""))

    @property
    def dim(self) -> int:
        return int(self.backbone.get("dim", 0))

    @property
    def relative_paths(self) -> list[str]:
        return [r["path"] for r in self.rows]

    @property
    def paths(self) -> list[Path]:
        """Absolute paths, in the index's order (the order of :meth:`vectors`)."""
        return self._paths

    def position(self, path: str | os.PathLike) -> int | None:
        """The position of an image of the pile (absolute or relative to the root), or None."""
        p = Path(path)
        if p.is_absolute() or p.exists():
            try:
                rel = p.absolute().relative_to(self.root).as_posix()
            except ValueError:
                return None
        else:
            rel = p.as_posix()
        return self._by_path.get(rel)

    def blocks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(positions, vectors (n, D))`` shard by shard (memory-mapped: flat memory)."""
        by_shard: dict[int, list[tuple[int, int]]] = {}
        for pos, r in enumerate(self.rows):
            by_shard.setdefault(int(r["shard"]), []).append((pos, int(r["row"])))
        for shard in sorted(by_shard):
            pairs = by_shard[shard]
            data = np.load(_shard_path(self.folder, shard), mmap_mode="r", allow_pickle=False)
            positions = np.fromiter((p for p, _ in pairs), dtype=np.int64, count=len(pairs))
            rows = np.fromiter((r for _, r in pairs), dtype=np.int64, count=len(pairs))
            yield positions, np.asarray(data[rows], dtype=np.float32)

    def vectors(self) -> np.ndarray:
        """All vectors ``(N, D)`` float32 in :attr:`paths` order (held in memory: ``4·N·D`` bytes)."""
        out = np.zeros((len(self.rows), self.dim), dtype=np.float32)
        for positions, block in self.blocks():
            out[positions] = block
        return out

    def embedder(self, engine: str = "auto") -> Embedder:
        """The index's own backbone, to embed query images the same way."""
        if self._embedder is None:
            b = self.backbone
            self._embedder = load_embedder(str(b["model"]), int(b["image_size"]), engine=engine)
        return self._embedder

    def signature(self) -> str:
        """Changes whenever the indexed files change (for caches derived from the index)."""
        return f"{len(self.rows)}-{self.meta.get('updated', 0)}"


def load_index(folder: str | os.PathLike, *, backbone: str | None = None) -> EmbeddingIndex:
    """Open an index folder written by :func:`build_index`.

    Args:
        folder: the index folder.
        backbone: when given, the backbone id the caller needs (``"efficientnet_lite0@224"``).

    Raises:
        DataError: not an index, or it holds no readable image.
        ModelError: built with another backbone than ``backbone``.
    """
    index = EmbeddingIndex(folder)
    if backbone is not None and index.backbone_id != backbone:
        raise ModelError(
            f"'{folder}' was built with backbone {index.backbone_id}, not {backbone}; rebuild it with "
            f"'sortsight index PILE --out NEW.index --model ...'."
        )
    if not len(index):
        raise DataError(
            f"The index '{folder}' holds no readable image. Run 'sortsight index' on the pile again."
        )
    return index
