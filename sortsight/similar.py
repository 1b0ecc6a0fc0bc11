"""Similarity search over an index: ``sortsight similar pile.index QUERY.jpg --top 20``.

Scores are cosine similarities of the backbone's pooled features (1.0: the same picture).
Up to :data:`ANN_THRESHOLD` vectors the search is exact: NumPy multiplies the query with each
shard in turn (memory-mapped, so memory stays flat), about 0.1 s per 100,000 vectors of 1280
dimensions on one core. Above it, when the optional ``faiss-cpu`` package is installed
(``pip install 'sortsight[index]'``), an HNSW graph (``faiss.IndexHNSWFlat``, inner product on
normalised vectors) is built once, saved beside the index as ``vectors.faiss`` and used
instead: approximate, but milliseconds per query. Without FAISS the exact search still works.

A query is an image of the pile (its stored vector is used) or any other image (embedded by
the index's own backbone).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sortsight.errors import DataError
from sortsight.fileops import atomic_write, atomic_write_text
from sortsight.index import EmbeddingIndex

__all__ = ["ANN_THRESHOLD", "Match", "query_vector", "results_sheet", "search"]

#: Above this many vectors FAISS (when installed) replaces the exact NumPy search.
ANN_THRESHOLD = 1_000_000
_FAISS_FILE = "vectors.faiss"


@dataclass(frozen=True)
class Match:
    """One result: the image, its cosine similarity to the query, and its rank (1 = best)."""

    rank: int
    path: Path
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "path": str(self.path), "score": round(self.score, 6)}


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)  # type: ignore[no-any-return]


def query_vector(index: EmbeddingIndex, query: str | os.PathLike, *, engine: str = "auto") -> np.ndarray:
    """The ``(D,)`` vector of ``query``: stored when it is in the pile, else embedded by the backbone.

    Raises:
        DataError: the query file does not exist or cannot be read.
    """
    pos = index.position(query)
    if pos is not None:
        shard, row = int(index.rows[pos]["shard"]), int(index.rows[pos]["row"])
        data = np.load(index.folder / "shards" / f"{shard:06d}.npy", mmap_mode="r", allow_pickle=False)
        return np.asarray(data[row], dtype=np.float32)
    if not Path(query).is_file():
        raise DataError(f"Query image '{query}' not found. Give an image file (in the pile or not).")
    return index.embedder(engine).embed([Path(query)])[0]


def _exact(index: EmbeddingIndex, q: np.ndarray, top: int) -> list[tuple[int, float]]:
    best_pos = np.zeros(0, dtype=np.int64)
    best_score = np.zeros(0, dtype=np.float32)
    for positions, block in index.blocks():
        scores = _normalise(block) @ q  # (n,)
        best_pos = np.concatenate([best_pos, positions])
        best_score = np.concatenate([best_score, scores.astype(np.float32)])
        if len(best_score) > top:
            keep = np.argpartition(-best_score, top - 1)[:top]
            best_pos, best_score = best_pos[keep], best_score[keep]
    order = np.lexsort((best_pos, -best_score))  # best first; ties by position
    return [(int(best_pos[i]), float(best_score[i])) for i in order[:top]]


def _faiss_index(index: EmbeddingIndex) -> Any:
    import faiss

    path = index.folder / _FAISS_FILE
    stamp = index.folder / f"{_FAISS_FILE}.json"
    try:
        if json.loads(stamp.read_text(encoding="utf-8")).get("signature") == index.signature():
            return faiss.read_index(str(path))
    except (OSError, json.JSONDecodeError):
        pass
    graph = faiss.IndexIDMap(faiss.IndexHNSWFlat(index.dim, 32, faiss.METRIC_INNER_PRODUCT))
    for positions, block in index.blocks():  # ids are positions in the index's order
        graph.add_with_ids(np.ascontiguousarray(_normalise(block), dtype=np.float32), positions)
    data = faiss.serialize_index(graph).tobytes()
    atomic_write(path, lambda fh: fh.write(data))
    atomic_write_text(stamp, json.dumps({"signature": index.signature()}))
    return graph


def _use_faiss(index: EmbeddingIndex, threshold: int) -> bool:
    if len(index) <= threshold:
        return False
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def search(
    index: EmbeddingIndex,
    query: str | os.PathLike | np.ndarray,
    *,
    top: int = 20,
    include_self: bool = False,
    engine: str = "auto",
    ann_threshold: int = ANN_THRESHOLD,
) -> list[Match]:
    """The ``top`` images of the index most similar to ``query``, best first.

    Args:
        index: from :func:`sortsight.index.load_index`.
        query: an image path (of the pile or not) or a ``(D,)`` vector.
        top: how many results.
        include_self: keep the query image itself when it is in the pile.
        engine: engine for embedding a query from outside the pile.
        ann_threshold: index size above which FAISS is used when installed.

    Raises:
        DataError: ``top`` below 1, or an unreadable query.
    """
    if top < 1:
        raise DataError(f"--top must be at least 1, got {top}.")
    own = None if isinstance(query, np.ndarray) else index.position(query)
    vector = query if isinstance(query, np.ndarray) else query_vector(index, query, engine=engine)
    q = _normalise(np.asarray(vector, dtype=np.float32).reshape(-1))
    want = top + (1 if own is not None and not include_self else 0)
    if _use_faiss(index, ann_threshold):
        scores, ids = _faiss_index(index).search(q[None, :], want)
        found = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
    else:
        found = _exact(index, q, min(want, len(index)))
    if own is not None and not include_self:
        found = [(p, s) for p, s in found if p != own]
    return [Match(rank, index.root / index.rows[p]["path"], s) for rank, (p, s) in enumerate(found[:top], 1)]


def results_sheet(matches: list[Match], query: str | os.PathLike | None, out: str | os.PathLike) -> Path:
    """A contact-sheet PNG of ``matches`` (the query first when given) with scores as captions."""
    from sortsight.sheets import contact_sheet

    entries: list[tuple[Any, str]] = []
    if query is not None:
        entries.append((Path(query), "query"))
    entries += [(m.path, f"{m.score:.3f} {m.path.name}") for m in matches]
    title = f"{len(matches)} most similar to {Path(query).name}" if query is not None else ""
    sheet = contact_sheet(entries, columns=min(6, len(entries)), thumb=128, title=title)
    target = Path(out)
    atomic_write(target, lambda fh: sheet.save(fh, "PNG"))
    return target
