"""``sortsight train DATA``: train a classifier and write a run folder.

Thin: flags (or an AutoTrain YAML via ``--config``) → :class:`TrainConfig` →
:func:`sortsight.train.train` → render (progress bars, time estimate, leaderboard).
"""

from __future__ import annotations

import json
import time
from shlex import quote
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from sortsight.autotrain import load_train_config
from sortsight.cli._options import config_options, given
from sortsight.cli._render import ProgressView, output_console, print_next, render_run_skipped
from sortsight.config import TrainConfig, config_from_dict

__all__ = ["train"]

_DATA_HELP = (
    "DATA is a folder with one subfolder of images per class (photos/cats/*.jpg), a folder of "
    "train/ and validation/ split folders, a CSV/TSV/JSONL labels file or a Hugging Face dataset folder."
)
_NO_DATA = f"Missing DATA. {_DATA_HELP} Try: sortsight train photos/ --out runs/photos"
_EPILOG = "Every option can also be set in the --config file (AutoTrain names); flags typed here win."


_STOPPED = {
    "side_by_side": "backbones side by side: the head is the model",
    "no_time_budget": "a tagger fine-tunes only within --time-budget or with --strategy finetune",
}


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


@click.command("train", epilog=_EPILOG)
@config_options(TrainConfig, skip=("data_path",))
@click.argument("data", required=False)
@click.option(
    "--config", "config_file", type=click.Path(dir_okay=False), help="AutoTrain-style YAML or JSON config."
)
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
    """Train an image classifier on DATA and write a run folder (the model and its metrics).

    DATA is a folder with one subfolder of images per class, a folder of train/ and
    validation/ split folders, a CSV/TSV/JSONL labels file or a Hugging Face dataset folder.

    \b
    Examples:
      sortsight train photos/ --out runs/photos
      sortsight train photos/ --candidates 3 --time-budget 10m
      sortsight train --config autotrain.yml
      sortsight train --out runs/photos --resume
      sortsight train photos/ --estimate-only
      sortsight train photos/ --lr-find
    """
    values = given(flags)
    if data is None and not config_file and not values.get("resume"):
        raise click.UsageError(_NO_DATA)
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
        import psutil

        from sortsight.estimate import estimate_training

        # a training command pays the same start-up (interpreter, imports) before training begins
        startup = max(0.0, time.time() - psutil.Process().create_time())
        with ProgressView(console) as bar:
            estimate = estimate_training(config, progress=bar, startup_seconds=startup)
        if as_json:
            click.echo(json.dumps(estimate.to_dict(), indent=2))
        else:
            for row in estimate.candidates:
                click.echo(
                    f"{row['model']} at {row['image_size']} px: about {row['seconds']:.0f} s "
                    f"(first model after about {row['first_model_seconds']:.0f} s; {row['engine']} features; "
                    + ("speeds measured here before)" if row["speeds"] == "remembered" else "measured now)")
                )
            extra = (
                f", plus up to {estimate.finetune_seconds:.0f} s if fine-tuning pays"
                if estimate.finetune_seconds and config.strategy == "auto"
                else ""
            )
            click.echo(
                f"Training {estimate.n_train} + {estimate.n_valid} images would take {estimate.human}{extra}."
            )
            print_next(output_console(), "run the same command without --estimate-only to train.")
        return
    from sortsight.train import train as run_training  # the engine (torch) only when it trains

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
        from sortsight.multilabel import kept_as

        why = _STOPPED.get(result.best.stopped, result.best.stopped.replace("_", " "))
        out.print(
            f"Kept {result.best.model} ({kept_as(result.best)}): validation micro-F1 {m['f1_micro']:.3f}, "
            f"macro F1 {m['f1_macro']:.3f}, mAP {m['map']:.3f} in {result.seconds:.0f} s ({why})."
        )
        out.print(f"Model: {result.model_dir}")
        print_next(out, f"sortsight evaluate {quote(str(result.run_dir))}  (per-tag scores and thresholds)")
        return
    kept = {"finetune": "fine-tuned", "wise": "fine-tuned, WiSE-FT mix"}.get(result.best.chosen, "head only")
    note = " (before the refit on train + validation)" if result.best.refit.get("applied") else ""
    why = _STOPPED.get(result.best.stopped, result.best.stopped.replace("_", " "))
    out.print(
        f"Kept {result.best.model} ({kept}): validation accuracy {m['accuracy']:.3f}{note}, "
        f"macro F1 {m['f1_macro']:.3f} in {result.seconds:.0f} s ({why})."
    )
    if result.test_metrics:
        t = result.test_metrics
        out.print(
            f"Test accuracy {t['accuracy']:.3f}, macro F1 {t['f1_macro']:.3f} on the held-out test images."
        )
    out.print(f"Model: {result.model_dir}")
    print_next(out, f"sortsight evaluate {quote(str(result.run_dir))}  (a report of the mistakes to review)")
