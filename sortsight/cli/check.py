"""``sortsight check DATA``: verify the images, count classes × splits, show what is wrong.

The first command a user runs. Thin: parse → :func:`sortsight.data.load_dataset` →
:func:`sortsight.data.summarize` → render (a rich table, or JSON with ``--json``).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from shlex import quote
from typing import Any

import click
from rich.console import Console

from sortsight import data
from sortsight.cli._options import config_options, given
from sortsight.cli._render import ProgressView, counts_table, output_console, print_next, render_skipped
from sortsight.config import TrainConfig
from sortsight.errors import ConfigError
from sortsight.fileops import atomic_write, ensure_output_dir, ensure_output_file, output_error
from sortsight.images import DEFAULT_MAX_PIXELS
from sortsight.sheets import sample_grid

__all__ = ["check", "render_summary", "write_grid"]

_GRID_MARK = "sortsight"


def write_grid(image: Any, path: Path) -> None:
    """Save a sample grid PNG atomically; only a file sortsight wrote itself is replaced."""
    from PIL import Image, PngImagePlugin

    if path.suffix.lower() != ".png":
        raise ConfigError(f"--grid '{path}' must end in .png.")
    if path.exists():
        try:
            with Image.open(path) as old:
                ours = old.format == "PNG" and old.info.get("Software") == _GRID_MARK
        except Exception:
            ours = False
        if not ours:
            raise ConfigError(
                f"'{path}' already exists and was not written by sortsight; choose another name."
            )
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", _GRID_MARK)
    try:
        atomic_write(path, lambda fh: image.save(fh, "PNG", pnginfo=info))
    except OSError as exc:
        raise output_error(path, exc, "--grid") from exc


def render_summary(console: Console, summary: dict[str, Any], *, max_skipped: int = 15) -> None:
    """Print a :func:`sortsight.data.summarize` dict as tables and warnings."""
    totals = summary["totals"]
    console.print(
        f"[bold]{summary['root']}[/bold] ({summary['source']}): {totals['total']} images, "
        f"{len(summary['classes'])} classes, fingerprint {summary['fingerprint']}"
    )
    console.print(counts_table("class", "total", summary))
    sizes = summary.get("image_sizes")
    if sizes:
        console.print(
            f"Image sizes: median {sizes['median_width']}x{sizes['median_height']} px, "
            f"short side from {sizes['min_side']} px, long side up to {sizes['max_side']} px."
        )
    render_skipped(console, summary["skipped"], full_list="--json prints every path", max_rows=max_skipped)
    for warning in summary["warnings"]:
        if warning["kind"] == "skipped":
            continue  # render_skipped printed it
        console.print(f"[yellow]Warning:[/yellow] {warning['message']}", highlight=False)
    if not summary["warnings"]:
        console.print("[green]No problems found.[/green]")


_DATA_OPTIONS = (
    "valid_split",
    "test_split",
    "seed",
    "max_samples",
    "image_column",
    "target_column",
    "task",
    "tag_separator",
)


@click.command()
@config_options(TrainConfig, only=_DATA_OPTIONS)
@click.argument("data_path", metavar="DATA")
@click.option(
    "--max-pixels",
    type=int,
    default=DEFAULT_MAX_PIXELS,
    show_default=True,
    help="Refuse images with more pixels than this.",
)
@click.option("--no-verify", is_flag=True, help="Do not decode every image (faster, misses broken files).")
@click.option(
    "--grid",
    "grid_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write a labelled sample grid PNG here.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary instead of tables.")
@click.option(
    "--doctor",
    "run_doctor",
    is_flag=True,
    help="Also find duplicates, train/test leakage, likely mislabels and quality problems.",
)
@click.option(
    "--doctor-out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for doctor.json and the contact sheet (default: DATA-doctor beside DATA).",
)
@click.option(
    "--model",
    "model_run",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="With --doctor: a training run folder; the doctor uses its backbone and cached features.",
)
def check(
    data_path: str,
    max_pixels: int,
    no_verify: bool,
    grid_path: Path | None,
    as_json: bool,
    run_doctor: bool,
    doctor_out: Path | None,
    model_run: Path | None,
    **options: Any,
) -> None:
    """Check DATA: a folder of class subfolders, split folders, a CSV/TSV/JSONL labels file,
    or a Hugging Face dataset folder / parquet files.

    Shows images per class and split, skipped files and why, and warnings (imbalance, tiny
    images). Example: sortsight check photos/ --grid sample.png
    """
    from sortsight.training.plan import dataset_args

    config = TrainConfig(data_path=data_path, **given(options))  # the options as training reads them
    split = dataset_args(config)
    valid_split, test_split, seed = split["valid_split"], split["test_split"], split["seed"]
    image_column, target_column = split["image_column"], split["target_column"]
    task, tag_separator = config.task, config.tag_separator
    if model_run is not None and not run_doctor:
        raise ConfigError("--model is for the doctor: add --doctor (check DATA --doctor --model RUN).")
    err = Console(stderr=True)
    out = output_console()
    if grid_path is not None:  # before the long scan: a path that cannot be written fails now
        ensure_output_file(grid_path, what="--grid")
    if doctor_out is not None:
        ensure_output_dir(doctor_out, what="--doctor-out")
    from sortsight.tagdata import detect_task

    if task == "multi_label" or (
        task == "auto"
        and detect_task(data_path, target_column=target_column, separator=tag_separator) == "multi_label"
    ):
        from sortsight.cli._tags import check_tags

        check_tags(
            data_path,
            out,
            err,
            image_column,
            target_column,
            tag_separator,
            not no_verify,
            as_json,
            {k: split[k] for k in ("valid_split", "test_split", "seed", "max_samples")},
            doctor=run_doctor,
            doctor_out=doctor_out,
            model_run=model_run,
        )
        return
    # Bad images are reported by reason below; Pillow's own warnings would only repeat them.
    with ProgressView(err) as progress, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = data.load_dataset(
            data_path,
            **split,
            verify=not no_verify,
            max_pixels=max_pixels,
            progress=progress,
        )
    summary = data.summarize(ds)
    summary["split"] = {"valid_split": valid_split, "test_split": test_split, "seed": seed}
    if grid_path is not None:
        write_grid(sample_grid(ds, seed=seed), grid_path)
        summary["grid"] = str(grid_path)
    if run_doctor:
        from sortsight.cli import _doctor

        with ProgressView(err) as doctor_progress:
            report, doctor_files = _doctor.run_doctor(
                ds, data_path, doctor_out, doctor_progress, model_run=model_run
            )
        summary["doctor"] = {**doctor_files, "report": report.to_dict()}
    if as_json:
        click.echo(json.dumps(summary, indent=2, ensure_ascii=False))
        return
    render_summary(out, summary)
    if run_doctor:
        _doctor.render_doctor(out, report, doctor_files)
    if grid_path is not None:
        out.print(f"Sample grid written to {grid_path}")
    name = "".join(c if c.isalnum() or c in "-_." else "-" for c in Path(data_path).resolve().stem) or "model"
    command = f"sortsight train {quote(data_path)} --out {quote('runs/' + name)}"
    if summary["warnings"]:
        print_next(out, f"fix what the warnings say (or train anyway): {command}")
    else:
        print_next(out, command)
