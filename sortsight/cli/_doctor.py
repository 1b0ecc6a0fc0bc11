"""The ``--doctor`` part of ``sortsight check``: run the data doctor, save its files, print its tables.

Kept apart from ``cli/check.py`` so the check command stays short; not a command of its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sortsight.data import ImageDataset
from sortsight.doctor import DoctorReport, doctor, run_backbone, save_report
from sortsight.progress import ProgressCallback

__all__ = ["default_doctor_dir", "render_doctor", "run_doctor"]


def default_doctor_dir(data_path: str | Path) -> Path:
    """``<DATA>-doctor`` beside the data folder (or labels file), so the data itself is not touched."""
    data = Path(data_path).resolve()
    name = data.name if data.is_dir() else data.stem
    return data.parent / f"{name}-doctor"


def run_doctor(
    ds: ImageDataset,
    data_path: str | Path,
    out_dir: Path | None,
    progress: ProgressCallback | None,
    *,
    model_run: Path | None = None,
) -> tuple[DoctorReport, dict[str, Any]]:
    """Run the doctor on ``ds``, write ``doctor.json`` + the contact sheet; return the report and paths.

    ``model_run``: a training run folder whose backbone (and cached features) the doctor uses.
    """
    backbone: dict[str, Any] = {}
    if model_run is not None:
        model, size = run_backbone(model_run)
        backbone = {"model": model, "image_size": size}
    report = doctor(ds, progress=progress, **backbone)
    files = save_report(report, out_dir or default_doctor_dir(data_path))
    return report, {k: str(v) if v else None for k, v in files.items()}


def _rel(ds_root: str, path: str) -> str:
    try:
        shown = Path(path).relative_to(ds_root).as_posix()
    except ValueError:
        shown = path
    return escape(shown)  # a file named [b]x[/].png is a name, not markup


def render_doctor(
    console: Console, report: DoctorReport, files: dict[str, Any], *, max_rows: int = 15
) -> None:
    """Print the doctor's findings as tables, most serious first."""
    s = report.summary()
    console.print(
        f"\n[bold]Doctor[/bold]: {s['exact_duplicate_groups']} exact and {s['near_duplicate_groups']} near "
        f"duplicate groups ({s['leakage']} across splits, {s['label_conflicts']} with conflicting labels), "
        f"{s['label_issues']} likely mislabelled, {s['out_of_place']} out of place, "
        f"{sum(s['quality'].values())} quality flags."
    )
    root = report.root
    if report.duplicates:
        table = Table(title="Duplicates", title_justify="left")
        for name in ("kind", "problem", "files (label/split)"):
            table.add_column(name)
        for group in report.duplicates[:max_rows]:
            problem = ", ".join(
                p for p, on in (("leakage", group.leakage), ("label conflict", group.label_conflict)) if on
            )
            members = "\n".join(
                f"{_rel(root, p)} ({lab}/{sp or '-'})"
                for p, lab, sp in zip(group.paths, group.labels, group.splits, strict=True)
            )
            table.add_row(group.kind, problem or "-", members)
        console.print(table)
        if len(report.duplicates) > max_rows:
            console.print(f"… and {len(report.duplicates) - max_rows} more groups (see doctor.json).")
    if report.label_issues:
        table = Table(title="Likely mislabelled (most likely first)", title_justify="left")
        for name in ("#", "file", "label", "suggested", "score", "p(label)", "p(suggested)", "confident"):
            right = name in ("#", "score") or name.startswith("p(")
            table.add_column(name, justify="right" if right else "left", overflow="fold")
        for issue in report.label_issues[:max_rows]:
            table.add_row(
                str(issue.rank),
                _rel(root, issue.path),
                issue.label,
                issue.suggested_label,
                f"{issue.score:.3f}",
                f"{issue.label_score:.2f}",
                f"{issue.suggested_score:.2f}",
                "yes" if issue.confident else "",
            )
        console.print(table)
        if len(report.label_issues) > max_rows:
            console.print(f"… and {len(report.label_issues) - max_rows} more (see doctor.json).")
    if report.out_of_place:
        table = Table(
            title="Out of place (not label errors: look, then keep or delete)", title_justify="left"
        )
        for name in ("#", "kind", "file", "label", "score", "like"):
            table.add_column(name, justify="right" if name in ("#", "score") else "left", overflow="fold")
        for odd in report.out_of_place[:max_rows]:
            like = f"{_rel(root, odd.other_path)} ({odd.other_label})" if odd.other_path else ""
            kind = "outlier" if odd.kind == "outlier" else "near copy, other label"
            table.add_row(str(odd.rank), kind, _rel(root, odd.path), odd.label, f"{odd.score:.3f}", like)
        console.print(table)
        if len(report.out_of_place) > max_rows:
            console.print(f"… and {len(report.out_of_place) - max_rows} more (see doctor.json).")
    if report.quality:
        table = Table(title="Image quality", title_justify="left")
        for name in ("issue", "images", "examples"):
            table.add_column(name)
        by_issue: dict[str, list[str]] = {}
        for flag in report.quality:
            by_issue.setdefault(flag.issue, []).append(_rel(root, flag.path))
        for name, paths in sorted(by_issue.items()):
            table.add_row(name, str(len(paths)), ", ".join(paths[:3]) + (" …" if len(paths) > 3 else ""))
        console.print(table)
    for note in report.notes:
        console.print(f"[yellow]Note:[/yellow] {note}", highlight=False)
    if not (report.duplicates or report.label_issues or report.out_of_place or report.quality):
        console.print("[green]The doctor found nothing to fix.[/green]")
    console.print(f"Doctor report: {files['json']}")
    if files.get("contact_sheet"):
        console.print(f"Contact sheet of flagged images: {files['contact_sheet']}")
