"""``sortsight index``, ``similar`` and ``map``: start from an unlabelled pile of images.

Thin: parse → :mod:`sortsight.index` / :mod:`sortsight.similar` / :mod:`sortsight.collection_map` → render.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from sortsight.cli._options import config_options, given
from sortsight.cli._render import ProgressView, output_console
from sortsight.config import IndexConfig

__all__ = ["index", "map_command", "similar"]


@click.command()
@click.argument("pile", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--out", "-o", type=click.Path(path_type=Path), default=None, help="Index folder (default: PILE.index)."
)
@config_options(IndexConfig, names={"num_workers": ("--workers",)})  # listed after --out
def index(pile: Path, out: Path | None, **options: Any) -> None:
    """Embed every image under PILE into an index (for `similar`, `map` and the studio's labelling).

    Re-running embeds only new or changed files; an interrupted run resumes where it stopped.
    Unreadable files are skipped and listed.

    \b
    Example:
      sortsight index scans/ --out scans.index
    """
    from sortsight.index import build_index

    folder = pile.expanduser().absolute()
    target = out or folder.with_name(folder.name + ".index")  # beside the pile, never inside it
    with ProgressView(Console(stderr=True)) as progress:  # build_index checks the options first
        summary = build_index(pile, target, **given(options), progress=progress)
    console = output_console()
    rate = f" at {summary.images_per_second:.1f} images/s ({summary.engine})" if summary.embedded else ""
    console.print(
        f"Indexed {summary.total} files with {summary.backbone}: {summary.embedded} embedded{rate}, "
        f"{summary.already} unchanged, {summary.removed} gone."
    )
    if summary.skipped:
        console.print(f"Skipped {len(summary.skipped)} unreadable file(s):")
        for path, reason in summary.skipped[:20]:
            console.print(f"  {path}: {reason}")
        if len(summary.skipped) > 20:
            console.print(f"  … and {len(summary.skipped) - 20} more (status=unreadable in files.csv)")
    console.print(f"Index: {summary.output}")


@click.command()
@click.argument("index_dir", metavar="INDEX", type=click.Path(file_okay=False, path_type=Path))
@click.argument("query", type=click.Path(path_type=Path))
@click.option(
    "--top", default=20, show_default=True, type=click.IntRange(1, 10_000), help="How many results."
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON (path, score) for scripts.")
@click.option(
    "--sheet", type=click.Path(path_type=Path), default=None, help="Write a contact-sheet PNG of the results."
)
def similar(index_dir: Path, query: Path, top: int, as_json: bool, sheet: Path | None) -> None:
    """Find the images of INDEX most similar to QUERY (an image of the pile or any other image).

    \b
    Examples:
      sortsight similar scans.index scans/box3/0042.jpg --top 20 --sheet similar.png
      sortsight similar scans.index photo.jpg --json
    """
    from sortsight.index import load_index
    from sortsight.similar import results_sheet, search

    found = search(load_index(index_dir), query, top=top)
    written = results_sheet(found, query, sheet) if sheet is not None else None
    console = output_console()
    if as_json:
        click.echo(
            json.dumps({"query": str(query), "results": [m.to_dict() for m in found]}, ensure_ascii=False)
        )
        return
    for m in found:
        console.print(f"{m.rank:>4}  {m.score:.4f}  {m.path}")
    if written is not None:
        console.print(f"Contact sheet: {written}")


@click.command("map")
@click.argument("index_dir", metavar="INDEX", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    default=Path("map.html"),
    show_default=True,
    help="The map page to write (HTML, opens offline).",
)
@click.option(
    "--method",
    type=click.Choice(["auto", "umap", "tsne"]),
    default="auto",
    show_default=True,
    help="Projection: UMAP (umap-learn) or PCA + t-SNE; auto takes UMAP when installed.",
)
@click.option(
    "--clusters",
    type=click.IntRange(1, 500),
    default=None,
    help="Number of clusters (default: about √(N/2)).",
)
@click.option(
    "--labels",
    "labels_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A labels file (image,label) to colour by label.",
)
@click.option(
    "--predictions",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A predictions.csv of 'sortsight predict' to colour by prediction.",
)
@click.option(
    "--max-thumbs",
    default=5000,
    show_default=True,
    type=click.IntRange(0, 1_000_000),
    help="Thumbnails embedded in the page at most (the other images show their path).",
)
def map_command(
    index_dir: Path,
    out: Path,
    method: str,
    clusters: int | None,
    labels_file: Path | None,
    predictions: Path | None,
    max_thumbs: int,
) -> None:
    """Write an interactive 2-D map of INDEX as one standalone HTML file.

    Hover shows thumbnails; colour by cluster, label or prediction; drag a lasso (or click a
    cluster) and "Label these" to download a labels CSV.

    \b
    Example:
      sortsight map scans.index --out scans-map.html
    """
    from sortsight.collection_map import compute_map, map_payload, per_image, write_map_html
    from sortsight.index import load_index

    idx = load_index(index_dir)
    cmap = compute_map(idx, method=method, clusters=clusters)
    labels = per_image(idx, labels_file, "label") if labels_file else None
    guesses = per_image(idx, predictions, "label") if predictions else None
    payload = map_payload(idx, cmap, labels=labels, predictions=guesses, max_thumbs=max_thumbs)
    written = write_map_html(payload, out, title=f"Map of {idx.root.name}")
    output_console().print(f"Map of {len(idx)} images ({cmap.method}): {written}")
