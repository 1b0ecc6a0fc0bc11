"""A 2-D map of an indexed pile: ``sortsight map pile.index --out map.html``.

:func:`compute_map` projects the index's vectors to 2-D and groups them into clusters:

- ``method="umap"``: UMAP (``umap-learn``, cosine metric) — the optional ``index`` extra;
- ``method="tsne"``: PCA to 50 dimensions, then scikit-learn's t-SNE (always available);
- ``method="auto"``: t-SNE up to :data:`AUTO_UMAP_ABOVE` images, UMAP above when installed
  (UMAP's numba code compiles on first use: minutes on a small laptop).
  ``benchmarks/labelling.py`` measures both (seconds, and how many of each image's 10 nearest
  neighbours on the map share its class);
  see docs/index.md for the figures behind this choice.

Clusters are k-means on the PCA-reduced vectors (about √(N/2) of them, 2 to 40). The map is
cached beside the index (``map-<method>.npz``) until the index changes.

:func:`write_map_html` writes one standalone HTML file: a canvas with pan and zoom, thumbnails
on hover, colour by cluster / label / prediction, lasso selection (drag) or a click on a
legend entry to select, and "label these" (download a labels CSV of the selection, or, in the
studio, label them in the session). Thumbnails are embedded as small JPEGs for up to
``max_thumbs`` images (others show their path), so the file works with no server.
"""

from __future__ import annotations

import base64
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sortsight.errors import ConfigError, DataError
from sortsight.fileops import atomic_write, atomic_write_text
from sortsight.index import EmbeddingIndex

__all__ = [
    "MAP_METHODS",
    "CollectionMap",
    "compute_map",
    "map_payload",
    "per_image",
    "render_map_html",
    "write_map_html",
]

MAP_METHODS = ("auto", "umap", "tsne")
#: ``auto`` takes t-SNE up to this many images (UMAP's first run compiles for minutes), UMAP above.
AUTO_UMAP_ABOVE = 5000
_TEMPLATE = Path(__file__).parent / "templates" / "map.html"


@dataclass(frozen=True)
class CollectionMap:
    """2-D coordinates ``(N, 2)`` (scaled to 0..1) and a cluster number per image, in index order."""

    xy: np.ndarray
    clusters: np.ndarray
    method: str


def _has_umap() -> bool:
    import importlib.util

    return importlib.util.find_spec("umap") is not None


def _pca(x: np.ndarray, dims: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    k = min(dims, x.shape[0], x.shape[1])
    return PCA(n_components=k, random_state=0).fit_transform(x)  # type: ignore[no-any-return]


def _project(x: np.ndarray, method: str, seed: int) -> np.ndarray:
    n = len(x)
    if n < 4:
        return np.pad(_pca(x, 2), ((0, 0), (0, max(0, 2 - min(2, n, x.shape[1])))))
    if method == "umap":
        import umap

        reducer = umap.UMAP(n_neighbors=min(15, n - 1), metric="cosine", random_state=seed, n_jobs=1)
        return np.asarray(reducer.fit_transform(x), dtype=np.float32)
    from sklearn.manifold import TSNE

    reduced = _pca(x, 50)
    perplexity = float(min(30, max(2, (n - 1) // 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(reduced)  # type: ignore[no-any-return]


def _scale(xy: np.ndarray) -> np.ndarray:
    low, high = xy.min(axis=0), xy.max(axis=0)
    return ((xy - low) / np.maximum(high - low, 1e-9)).astype(np.float32)  # type: ignore[no-any-return]


def compute_map(
    index: EmbeddingIndex, *, method: str = "auto", clusters: int | None = None, seed: int = 0
) -> CollectionMap:
    """Project the index to 2-D and cluster it (cached beside the index until it changes).

    Raises:
        ConfigError: unknown method, or ``umap`` asked for without ``umap-learn`` installed.
    """
    from sklearn.cluster import KMeans

    if method not in MAP_METHODS:
        raise ConfigError(f"Unknown map method '{method}'; choose one of: {', '.join(MAP_METHODS)}.")
    if method == "umap" and not _has_umap():
        raise ConfigError(
            "The umap method needs umap-learn: pip install 'sortsight[index]' (or use --method tsne)."
        )
    n = len(index)
    chosen = method if method != "auto" else ("umap" if _has_umap() and n > AUTO_UMAP_ABOVE else "tsne")
    k = int(clusters or min(40, max(2, round((n / 2) ** 0.5))))
    k = max(1, min(k, n))
    cache = index.folder / f"map-{chosen}.npz"
    stamp = f"{index.signature()}|{k}|{seed}"
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as saved:
            if str(saved["stamp"]) == stamp:
                return CollectionMap(saved["xy"], saved["clusters"], chosen)
    x = index.vectors()
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)  # (N, D)
    xy = _scale(_project(x, chosen, seed))
    groups = (
        KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(_pca(x, 50)) if k > 1 else np.zeros(n)
    )
    result = CollectionMap(xy, groups.astype(np.int32), chosen)
    stamped = np.array(stamp)
    atomic_write(cache, lambda fh: np.savez(fh, xy=result.xy, clusters=result.clusters, stamp=stamped))
    return result


def _thumb(path: Path, size: int) -> str:
    from sortsight.images import try_open_image

    image, _ = try_open_image(path, draft=(size, size))
    if image is None:
        return ""
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=70)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def map_payload(
    index: EmbeddingIndex,
    cmap: CollectionMap,
    *,
    labels: list[str] | None = None,
    predictions: list[str] | None = None,
    thumbs: bool = True,
    thumb_size: int = 64,
    max_thumbs: int = 5000,
) -> dict[str, Any]:
    """The JSON the map page draws: one point per image with path, x, y, cluster, label, prediction."""
    rel = index.relative_paths
    points = []
    for i, path in enumerate(rel):
        point: dict[str, Any] = {
            "p": path,
            "x": round(float(cmap.xy[i, 0]), 5),
            "y": round(float(cmap.xy[i, 1]), 5),
            "c": int(cmap.clusters[i]),
            "l": labels[i] if labels else "",
            "g": predictions[i] if predictions else "",
        }
        if thumbs and i < max_thumbs:
            point["t"] = _thumb(index.root / path, thumb_size)
        points.append(point)
    return {"root": str(index.root), "method": cmap.method, "backbone": index.backbone_id, "points": points}


def write_map_html(
    payload: dict[str, Any], out: str | os.PathLike, *, title: str = "Collection map", label_url: str = ""
) -> Path:
    """Write the standalone map page (the payload inlined); ``label_url`` enables studio labelling."""
    html = render_map_html(payload, title=title, label_url=label_url)
    target = Path(out)
    atomic_write_text(target, html)
    return target


def render_map_html(payload: dict[str, Any], *, title: str = "Collection map", label_url: str = "") -> str:
    """The map page as a string (the studio serves it)."""
    data = json.dumps(payload, ensure_ascii=False).replace("</", "<\\/")
    return (
        _TEMPLATE.read_text(encoding="utf-8")
        .replace("__TITLE__", title.replace("<", "&lt;"))
        .replace("__LABEL_URL__", json.dumps(label_url))
        .replace("__DATA__", data)
    )


def per_image(index: EmbeddingIndex, table: str | os.PathLike, column: str = "label") -> list[str]:
    """A column of a labels file or predictions.csv, aligned with the index ("" for images it lacks).

    The table is read as labels files are (CSV, TSV, JSON Lines; :func:`sortsight.labelfile.read_rows`);
    paths are relative to its folder (absolute paths work too).

    Raises:
        DataError: the file is missing or has no image / ``column`` column.
    """
    from sortsight.labelfile import IMAGE_COLUMNS, pick_column, read_rows

    file = Path(table)
    if not file.is_file():
        raise DataError(f"'{table}' not found. Give a labels file (image,label) or a predictions.csv.")
    out = [""] * len(index)
    columns, rows = read_rows(file)
    image_col = pick_column(columns, None, IMAGE_COLUMNS, "image", f"'{file.name}'", "an 'image' column")
    value_col = pick_column(columns, column, (column,), column, f"'{file.name}'", f"a '{column}' column")
    for row in rows:
        name = Path(str(row.get(image_col) or "").strip())
        pos = index.position(name if name.is_absolute() else file.parent / name)
        if pos is not None:
            out[pos] = str(row.get(value_col) or "")
    return out
