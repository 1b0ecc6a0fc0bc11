"""``sortsight train DATA``: train a classifier and write a run folder.

Thin: flags (or an AutoTrain YAML via ``--config``) → :class:`TrainConfig` →
:func:`sortsight.train.train` → render (progress bars, time estimate, leaderboard).
"""

from __future__ import annotations

import json
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from sortsight.cli._render import ProgressView, output_console, render_run_skipped
from sortsight.config import (
    AUGMENTATIONS,
    LOGGERS,
    OPTIMIZERS,
    PRECISIONS,
    SCHEDULERS,
    STRATEGIES,
    TAG_SEPARATORS,
    TASKS,
    TrainConfig,
    config_from_dict,
    load_train_config,
)

__all__ = ["train"]


def _leaderboard(console: Console, rows: list[dict[str, Any]]) -> None:
    table = Table(title="Leaderboard (validation)")
    for col in ("#", "model", "px", "kept", "acc", "F1", "loss", "head acc", "time"):
        table.add_column(col, no_wrap=True)
    for r in rows:
        table.add_row(
            str(r["rank"]),
            r["model"],
            str(r["image_size"]),
            r["chosen"],
            f"{r['val_accuracy']:.3f}",
            f"{r['val_f1_macro']:.3f}",
            f"{r['val_loss']:.4f}",
            f"{r['head_accuracy']:.3f}",
            f"{r['seconds']:.0f} s",
        )
    console.print(table)


@click.command("train")
@click.argument("data", required=False)
@click.option(
    "--config", "config_file", type=click.Path(dir_okay=False), help="AutoTrain-style YAML or JSON config."
)
@click.option("--out", help="Run folder to write (default runs/<project-name>).")
@click.option("--project-name", help="Run name when --out is not given.")
@click.option("--model", help="Bundled efficientnet_lite0/1/2 (offline) or a timm model name.")
@click.option("--models", help="Candidates to compare, comma-separated; name@size for a size (lite0@160).")
@click.option("--candidates", type=int, help="Try the first K default candidates and keep the best.")
@click.option("--epochs", type=int)
@click.option("--lr", type=float)
@click.option("--batch-size", type=int)
@click.option("--image-size", type=int, help="Input side in pixels (default: the model's own).")
@click.option("--augmentation", type=click.Choice(AUGMENTATIONS), help="documents: never flip or rotate.")
@click.option("--strategy", type=click.Choice(STRATEGIES), help="auto (default), head only, or finetune.")
@click.option("--time-budget", help="Stop with the best model so far after e.g. 90s, 10m, 1h.")
@click.option("--valid-split", help="Validation fraction (0.2) when the data has no validation folder.")
@click.option("--test-split", type=float)
@click.option("--seed", type=int)
@click.option("--max-samples", type=int)
@click.option("--warmup-ratio", type=float)
@click.option("--gradient-accumulation", type=int)
@click.option("--optimizer", type=click.Choice(OPTIMIZERS))
@click.option("--scheduler", type=click.Choice(SCHEDULERS))
@click.option("--weight-decay", type=float)
@click.option("--early-stopping-patience", type=int)
@click.option(
    "--mixed-precision", type=click.Choice(PRECISIONS), help="auto: measured at run time (default)."
)
@click.option(
    "--auto-find-batch-size", is_flag=True, default=None, help="Halve the batch size if out of memory."
)
@click.option("--log", type=click.Choice(LOGGERS))
@click.option(
    "--task",
    type=click.Choice(TASKS),
    help="single_label or multi_label (several tags); auto: from the data.",
)
@click.option(
    "--tag-separator",
    type=click.Choice(TAG_SEPARATORS),
    help="What separates tags in a cell (auto: '|' or ';').",
)
@click.option(
    "--refit/--no-refit",
    default=None,
    help="Fit the final head again on train + validation (default: on).",
)
@click.option("--resume", is_flag=True, default=None, help="Continue an interrupted run in --out.")
@click.option("--overwrite", is_flag=True, default=None, help="Replace an existing run folder.")
@click.option(
    "--estimate-only", is_flag=True, help="Measure and print how long training would take; train nothing."
)
@click.option(
    "--lr-find",
    is_flag=True,
    help="Learning-rate range test (fastai's lr_find) on the cached activations: print the suggested "
    "--lr and save lr_find.png here; train nothing.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def train(
    data: str | None,
    config_file: str | None,
    as_json: bool,
    estimate_only: bool,
    lr_find: bool,
    **flags: Any,
) -> None:
    """Train an image classifier on DATA (a folder of class subfolders, split folders or a CSV).

    \b
    Examples:
      sortsight train photos/ --out runs/photos
      sortsight train photos/ --candidates 3 --time-budget 10m
      sortsight train --config autotrain.yml
      sortsight train --out runs/photos --resume
      sortsight train photos/ --estimate-only
      sortsight train photos/ --lr-find
    """
    from sortsight.train import train as run_training

    values = {k: v for k, v in flags.items() if v is not None}
    if data is not None:
        values["data_path"] = data
    if config_file:
        config = load_train_config(config_file, **values)
    else:
        config = config_from_dict(TrainConfig, values, what="training option")
    console = Console(stderr=True)
    if lr_find:
        from sortsight.training.lr_find import lr_find as run_lr_find

        with ProgressView(console) as bar:
            found = run_lr_find(config, progress=bar)
        if as_json:
            output_console().print_json(
                data={
                    "suggested": found.suggested,
                    "valley": found.valley,
                    "steep": found.steep,
                    "plot": found.plot,
                }
            )
            return
        output_console().print(
            f"Suggested learning rate: {found.suggested:.1e} (valley; steepest at {found.steep:.1e}). "
            f"Plot: {found.plot}. Next: sortsight train {config.data_path} --lr {found.suggested:.1e}"
        )
        return
    if estimate_only:
        from sortsight.estimate import estimate_training

        with ProgressView(console) as bar:
            estimate = estimate_training(config, progress=bar)
        if as_json:
            click.echo(json.dumps(estimate.to_dict(), indent=2))
        else:
            for row in estimate.candidates:
                click.echo(
                    f"{row['model']} at {row['image_size']} px: about {row['seconds']:.0f} s "
                    f"(first model after about {row['first_model_seconds']:.0f} s; {row['engine']} features)"
                )
            extra = (
                f", plus up to {estimate.finetune_seconds:.0f} s if fine-tuning pays"
                if estimate.finetune_seconds and config.strategy == "auto"
                else ""
            )
            click.echo(
                f"Training {estimate.n_train} + {estimate.n_valid} images would take {estimate.human}{extra}."
            )
        return
    with ProgressView(console) as bar:
        result = run_training(config, progress=bar)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "run_dir": str(result.run_dir),
                    "model_dir": str(result.model_dir),
                    "metrics": result.metrics,
                    "leaderboard": result.leaderboard,
                },
                indent=2,
            )
        )
        return
    out = output_console()
    render_run_skipped(out, result.run_dir)
    if len(result.candidates) > 1:
        _leaderboard(out, result.leaderboard)
    m = result.metrics
    if "f1_micro" in m:  # a multi-label tagger
        out.print(
            f"Kept {result.best.model} (tag head): validation micro-F1 {m['f1_micro']:.3f}, macro F1 "
            f"{m['f1_macro']:.3f}, mAP {m['map']:.3f} in {result.seconds:.0f} s."
        )
        out.print(f"Model: {result.model_dir}  (next: sortsight evaluate {result.run_dir})")
        return
    kept = {"finetune": "fine-tuned", "wise": "fine-tuned, WiSE-FT mix"}.get(result.best.chosen, "head only")
    note = " (before the refit on train + validation)" if result.best.refit.get("applied") else ""
    out.print(
        f"Kept {result.best.model} ({kept}): validation accuracy {m['accuracy']:.3f}{note}, "
        f"macro F1 {m['f1_macro']:.3f} in {result.seconds:.0f} s ({result.best.stopped.replace('_', ' ')})."
    )
    if result.test_metrics:
        t = result.test_metrics
        out.print(
            f"Test accuracy {t['accuracy']:.3f}, macro F1 {t['f1_macro']:.3f} on the held-out test images."
        )
    out.print(f"Model: {result.model_dir}  (next: sortsight evaluate {result.run_dir} DATA)")
