"""``sortsight fetch SOURCE --out DIR``: build an image-folder dataset from a URL list or a IIIF manifest.

Thin: parse → :func:`sortsight.fetch.fetch` → render the summary.
"""

from __future__ import annotations

from shlex import quote
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from sortsight.cli._options import config_options, given
from sortsight.cli._render import ProgressView, output_console, print_next
from sortsight.config import FetchConfig
from sortsight.fetch import FetchSummary
from sortsight.fetch import fetch as fetch_images
from sortsight.websearch import DEFAULT_ENDPOINT, fetch_search

__all__ = ["fetch", "render_fetch_summary"]


def render_fetch_summary(console: Console, summary: FetchSummary, *, max_rows: int = 20) -> None:
    """Print what was downloaded, per label, and what failed and why."""
    console.print(
        f"[bold]{summary.out_dir}[/bold]: {summary.downloaded} downloaded, "
        f"{summary.already_done} already there, {len(summary.broken)} broken, "
        f"{len(summary.failed)} failed ({summary.seconds:.1f} s)"
    )
    if summary.by_label:
        table = Table(title="Images per label", title_justify="left")
        table.add_column("label")
        table.add_column("images", justify="right")
        for label, count in summary.by_label.items():
            table.add_row(label, str(count))
        console.print(table)
    if summary.duplicates:
        console.print(
            f"{len(summary.duplicates)} duplicate(s) set aside in {summary.out_dir}/.sortsight-duplicates/ "
            "(see sources.csv)."
        )
    problems = [("broken", e) for e in summary.broken] + [("failed", e) for e in summary.failed]
    if problems:
        table = Table(title=f"Not downloaded ({len(problems)})", title_justify="left")
        for name in ("url", "label", "why"):
            table.add_column(name)
        for kind, entry in problems[:max_rows]:
            table.add_row(entry["url"], entry["label"], f"{kind}: {entry['reason']}")
        console.print(table)
        if len(problems) > max_rows:
            console.print(f"… and {len(problems) - max_rows} more (see {summary.journal}).")
        console.print("Run the same command again to retry the failed ones; finished images are skipped.")


@click.command()
@click.argument("source", required=False)
@click.option(
    "--search",
    "queries",
    multiple=True,
    help="Web image search for a class, e.g. --search duckling --search cygnet (repeatable).",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=150,
    show_default=True,
    help="--search: images asked of the search per query.",
)
@click.option(
    "--search-endpoint",
    default=DEFAULT_ENDPOINT,
    show_default=True,
    help="--search: the search host (DuckDuckGo's protocol).",
)
@click.option(
    "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Dataset folder to build."
)
@click.option(
    "--label",
    "labels",
    multiple=True,
    help="Label (class folder) for every image; with --search: one for all or one per query.",
)
@click.option("--label-field", default=None, help="CSV column or IIIF metadata field holding the label.")
@click.option(
    "--size",
    type=click.IntRange(min=0),
    default=1024,
    show_default=True,
    help="IIIF: longest side to ask for (0: full size).",
)
@config_options(FetchConfig)  # listed after the command's own options
def fetch(
    source: str | None,
    queries: tuple[str, ...],
    limit: int,
    search_endpoint: str,
    out_dir: str,
    labels: tuple[str, ...],
    label_field: str | None,
    size: int,
    **options: Any,
) -> None:
    """Download images into OUT/<label>/ from SOURCE — a CSV with url,label columns, or a IIIF
    Presentation v2/v3 manifest (file or URL) — or from a web image search (--search, one class
    folder per query). Verified, de-duplicated, never overwriting; rerun the same command to resume.

    Examples:

    \b
      sortsight fetch --search duckling --search cygnet --limit 150 --out birds
      sortsight fetch maps.csv --out data/maps
      sortsight fetch https://example.org/iiif/manifest.json --out data --label-field Genre --size 800
    """
    network = given(options)  # checked by FetchConfig in fetch / fetch_search before any request
    err = Console(stderr=True)
    out = output_console()
    if bool(source) == bool(queries):
        raise click.UsageError("Give either SOURCE (a CSV or IIIF manifest) or --search QUERY, not both.")
    if queries:
        with ProgressView(err) as bar:
            summary = fetch_search(
                list(queries),
                out_dir,
                limit=limit,
                labels=list(labels) or None,
                endpoint=search_endpoint,
                progress=bar,
                **network,
            )
        render_fetch_summary(out, summary)
        out.print(f"Sources: {summary.out_dir}/sources.csv. Next: sortsight check {summary.out_dir}")
        return
    if len(labels) > 1:
        raise click.UsageError("Give --label once with a CSV or IIIF source.")
    with ProgressView(err) as bar:
        summary = fetch_images(
            source or "",
            out_dir,
            label=labels[0] if labels else None,
            label_field=label_field,
            size=size or None,
            progress=bar,
            **network,
        )
    render_fetch_summary(out, summary)
    if summary.downloaded or summary.already_done:
        print_next(out, f"sortsight check {quote(str(summary.out_dir))}")
