"""``sortsight check`` for multi-label data: tag counts, frequent pairs, images with no tag, rare tags."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from sortsight.cli._render import ProgressView

__all__ = ["check_tags", "render_tag_summary"]


def check_tags(
    data_path: str,
    out: Console,
    err: Console,
    image_column: str | None,
    target_column: str | None,
    separator: str,
    verify: bool,
    as_json: bool,
    options: dict[str, Any],
) -> None:
    """Load, split and summarise tagged data; print tables (or JSON)."""
    from sortsight.tagdata import load_tag_dataset, summarize_tags

    with ProgressView(err) as progress:
        ds = load_tag_dataset(
            data_path,
            image_column=image_column,
            target_column=target_column,
            separator=separator,
            verify=verify,
            progress=progress,
            **options,
        )
    summary = summarize_tags(ds)
    summary["split"] = {k: options[k] for k in ("valid_split", "test_split", "seed")}
    if as_json:
        click.echo(json.dumps(summary, indent=2, ensure_ascii=False))
        return
    render_tag_summary(out, summary)


def render_tag_summary(console: Console, summary: dict[str, Any]) -> None:
    """Print a :func:`sortsight.tagdata.summarize_tags` dict as tables and warnings."""
    totals = summary["totals"]
    per = summary["tags_per_image"]
    console.print(
        f"[bold]{summary['root']}[/bold] ({summary['source']}, multi-label): {totals['total']} images, "
        f"{len(summary['tags'])} tags, {per['mean']} tags per image on average (at most {per['max']}), "
        f"fingerprint {summary['fingerprint']}"
    )
    table = Table(show_footer=True)
    table.add_column("tag", footer="images")
    for split in summary["splits"]:
        table.add_column(split, justify="right", footer=str(totals[split]))
    table.add_column("total", justify="right", footer=str(totals["total"]))
    for tag, row in summary["counts"].items():
        table.add_row(tag, *(str(row[s]) for s in summary["splits"]), str(row["total"]))
    table.add_row(
        "[dim](no tag)[/dim]",
        *(str(summary["no_tag"][s]) for s in summary["splits"]),
        str(summary["no_tag"]["total"]),
    )
    console.print(table)
    if summary["cooccurrence"]:
        pairs = Table(title="Tags seen together most often", title_justify="left")
        pairs.add_column("tags")
        pairs.add_column("images", justify="right")
        for pair in summary["cooccurrence"]:
            pairs.add_row(" + ".join(pair["tags"]), str(pair["images"]))
        console.print(pairs)
    for warning in summary["warnings"]:
        console.print(f"[yellow]Warning:[/yellow] {warning['message']}", highlight=False)
    if not summary["warnings"]:
        console.print("[green]No problems found.[/green]")
