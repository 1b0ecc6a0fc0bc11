"""``sortsight fix DECISIONS.csv`` and ``sortsight undo LOG``: apply relabel/delete decisions, and undo them.

Thin: parse → :func:`sortsight.fix.apply_decisions` / :func:`sortsight.fix.undo` → render.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from shlex import quote

import click
from rich.table import Table

from sortsight.cli._render import output_console, print_next
from sortsight.data import SPLIT_ALIASES
from sortsight.fix import apply_decisions
from sortsight.fix import undo as undo_actions

__all__ = ["fix", "undo"]


def _default_root(decisions: Path) -> Path:
    """The data folder: the CSV's folder for relative paths, else the folder above the class folders."""
    with open(decisions, encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        key = next((k for k in reader.fieldnames or [] if k.strip().lower() == "path"), None)
        paths = [Path(row[key].strip()) for row in reader if key and (row.get(key) or "").strip()]
    absolute = [p for p in paths if p.is_absolute()]
    if not absolute or len(absolute) < len(paths):
        return decisions.resolve().parent
    tops = [p.parent.parent for p in absolute]  # the folders holding the class folders
    tops = [t.parent if t.name.lower() in SPLIT_ALIASES else t for t in tops]  # .../train/cats/x.jpg
    return Path(os.path.commonpath([str(t) for t in tops]))


@click.command()
@click.argument("decisions", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Data folder the paths are in (default: the CSV's folder for relative paths, "
    "else the folder holding the class folders).",
)
@click.option(
    "--trash",
    "trash_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where deleted images go (default: ROOT/.sortsight-trash).",
)
@click.option(
    "--log",
    "log_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Action log to append to (default: ROOT/sortsight-moves.jsonl).",
)
@click.option("--dry-run", is_flag=True, help="Show what would be done; change nothing.")
def fix(
    decisions: Path, root: Path | None, trash_dir: Path | None, log_path: Path | None, dry_run: bool
) -> None:
    """Apply DECISIONS.csv (columns path,action,new_label; action relabel or delete).

    relabel moves the image into the class folder NEW_LABEL next to its own; delete moves it to
    a trash folder. Nothing is deleted outright, every action is logged, and `sortsight undo LOG`
    puts everything back. Example: sortsight fix decisions.csv --dry-run
    """
    out = output_console()
    if root is None and decisions.is_file():
        root = _default_root(decisions)
    summary = apply_decisions(
        decisions, root=root or Path("."), trash_dir=trash_dir, log=log_path, dry_run=dry_run
    )
    table = Table(title="Planned (dry run)" if dry_run else "Done", title_justify="left")
    for name in ("file", "action", "to"):
        table.add_column(name)
    for r in summary.results:
        what = r.action if r.status in ("done", "planned") else f"{r.action} ({r.status})"
        table.add_row(r.path, what, r.destination or "")
    out.print(table)
    verb = "Would relabel" if dry_run else "Relabelled"
    out.print(
        f"{verb} {summary.relabelled}, {'would move' if dry_run else 'moved'} {summary.deleted} to the trash "
        f"({summary.trash_dir})."
    )
    if dry_run:
        print_next(out, "run the same command without --dry-run to apply these decisions.")
    else:
        out.print(f"Log: {summary.log_path} — undo with: sortsight undo {quote(str(summary.log_path))}")
        print_next(out, f"train again on the corrected data: sortsight train {quote(str(root or '.'))}")


@click.command()
@click.argument("log", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Show what would be restored; change nothing.")
def undo(log: Path, dry_run: bool) -> None:
    """Undo the file actions in LOG (a sortsight-moves.jsonl), newest first.

    Moved, relabelled and trashed images go back where they were; copies are removed.
    Running it twice does nothing the second time. Example: sortsight undo data/sortsight-moves.jsonl
    """
    out = output_console()
    entries = undo_actions(log, dry_run=dry_run)
    for entry in entries:
        out.print(f"{entry['action']}: {entry['destination']} → {entry.get('restored_as', entry['source'])}")
    verb = "Would undo" if dry_run else "Undid"
    out.print(f"{verb} {len(entries)} action(s)." if entries else "Nothing to undo.")
    if entries and dry_run:
        print_next(out, "run the same command without --dry-run to put these files back.")
    elif entries:
        print_next(out, f"see the data as it is now: sortsight check {quote(str(log.parent))}")
