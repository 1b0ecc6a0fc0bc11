"""``sortsight check`` for multi-label data: tag counts, frequent pairs, images with no tag, rare tags."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sortsight.cli._render import ProgressView, counts_table

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
    *,
    doctor: bool = False,
    doctor_out: Path | None = None,
    model_run: Path | None = None,
) -> None:
    """Load, split and summarise tagged data; print tables (or JSON). ``doctor``: also look for
    likely missing or wrong tags and duplicates with different tag sets (:mod:`sortsight.tagdoctor`),
    with ``model_run``'s backbone when given."""
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
    report: dict[str, Any] | None = None
    if doctor:
        from sortsight.cli._doctor import default_doctor_dir
        from sortsight.doctor import run_backbone
        from sortsight.tagdoctor import save_tag_report, tag_doctor

        backbone: dict[str, Any] = {}
        if model_run is not None:
            model, size = run_backbone(model_run)
            backbone = {"model": model, "image_size": size}
        with ProgressView(err) as progress:
            report = tag_doctor(ds, seed=options["seed"], progress=progress, **backbone)
        saved = save_tag_report(report, doctor_out or default_doctor_dir(data_path))
        summary["doctor"] = {"json": str(saved), "report": report}
    if as_json:
        click.echo(json.dumps(summary, indent=2, ensure_ascii=False))
        return
    render_tag_summary(out, summary)
    if report is not None:
        render_tag_doctor(out, report, summary["doctor"]["json"])


def render_tag_doctor(console: Console, report: dict[str, Any], saved: str, *, max_rows: int = 15) -> None:
    """Print a :func:`sortsight.tagdoctor.tag_doctor` report: tag issues, then duplicates."""
    root = Path(report["root"])

    def rel(path: str) -> str:
        try:
            return escape(Path(path).relative_to(root).as_posix())
        except ValueError:
            return escape(path)

    issues, dupes = report["tag_issues"], report["duplicates"]
    conflicts = [g for g in dupes if g["tag_conflict"]]
    console.print(
        f"\n[bold]Doctor[/bold]: {len(issues)} image(s) with likely missing or wrong tags, "
        f"{len(dupes)} duplicate group(s) ({len(conflicts)} with different tag sets), "
        f"{len(report['unreadable'])} unreadable."
    )
    for note in report["notes"]:
        console.print(f"[yellow]Note:[/yellow] {escape(note)}", highlight=False)
    if issues:
        table = Table(title="Likely missing or wrong tags (most likely first)", title_justify="left")
        for name in ("#", "file", "tags", "likely missing", "likely wrong"):
            table.add_column(name, justify="right" if name == "#" else "left", overflow="fold")
        for issue in issues[:max_rows]:
            table.add_row(
                str(issue["rank"]),
                rel(issue["path"]),
                escape("|".join(issue["tags"]) or "(none)"),
                escape(", ".join(issue["likely_missing"])),
                escape(", ".join(issue["likely_wrong"])),
            )
        console.print(table)
        if len(issues) > max_rows:
            console.print(f"… and {len(issues) - max_rows} more (see {escape(saved)}).")
    if dupes:
        table = Table(title="Duplicates", title_justify="left")
        for name in ("kind", "problem", "files (tags)"):
            table.add_column(name, overflow="fold")
        for group in dupes[:max_rows]:
            members = "\n".join(
                f"{rel(p)} ({escape('|'.join(t) or 'no tag')})"
                for p, t in zip(group["paths"], group["tags"], strict=True)
            )
            table.add_row(group["kind"], "different tags" if group["tag_conflict"] else "-", members)
        console.print(table)
    for bad in report["unreadable"][:max_rows]:
        console.print(f"[yellow]Unreadable, skipped:[/yellow] {rel(bad['path'])}: {escape(bad['reason'])}")
    console.print(f"Doctor report: {escape(saved)}", highlight=False)


def render_tag_summary(console: Console, summary: dict[str, Any]) -> None:
    """Print a :func:`sortsight.tagdata.summarize_tags` dict as tables and warnings."""
    totals = summary["totals"]
    per = summary["tags_per_image"]
    console.print(
        f"[bold]{summary['root']}[/bold] ({summary['source']}, multi-label): {totals['total']} images, "
        f"{len(summary['tags'])} tags, {per['mean']} tags per image on average (at most {per['max']}), "
        f"fingerprint {summary['fingerprint']}"
    )
    table = counts_table("tag", "images", summary)
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
