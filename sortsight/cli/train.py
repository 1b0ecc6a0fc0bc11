"""``sortsight train DATA``: train a classifier and write a run folder.

Thin: flags (or an AutoTrain YAML via ``--config``) → :class:`TrainConfig` →
:func:`sortsight.train.train` → render (progress bars, time estimate, leaderboard).
"""

from __future__ import annotations

import json
from shlex import quote
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from sortsight.cli._options import config_options, given
from sortsight.cli._render import ProgressView, output_console, print_next
from sortsight.config import TrainConfig, config_from_dict, load_train_config

__all__ = ["train"]

_DATA_HELP = (
    "DATA is a folder with one subfolder of images per class (photos/cats/*.jpg), a folder of "
    "train/ and validation/ split folders, a CSV/TSV/JSONL labels file or a Hugging Face dataset folder."
)
_NO_DATA = f"Missing DATA. {_DATA_HELP} Try: sortsight train photos/ --out runs/photos"
_EPILOG = "Every option can also be set in the --config file (AutoTrain names); flags typed here win."


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
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def train(
    data: str | None, config_file: str | None, as_json: bool, estimate_only: bool, **flags: Any
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
    """
    values = given(flags)
    if data is None and not config_file and not values.get("resume"):
        raise click.UsageError(_NO_DATA)  # before the (slow) import of the training code
    from sortsight.train import train as run_training

    if data is not None:
        values["data_path"] = data
    if config_file:
        config = load_train_config(config_file, **values)
    else:
        config = config_from_dict(TrainConfig, values, what="training option")
    console = Console(stderr=True)
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
                    f"({row['precision']})"
                )
            click.echo(
                f"Training {estimate.n_train} + {estimate.n_valid} images would take {estimate.human}."
            )
            print_next(output_console(), "run the same command without --estimate-only to train.")
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
    if len(result.candidates) > 1:
        _leaderboard(out, result.leaderboard)
    m = result.metrics
    out.print(
        f"Kept {result.best.model} ({'fine-tuned' if result.best.chosen == 'finetune' else 'head only'}): "
        f"validation accuracy {m['accuracy']:.3f}, macro F1 {m['f1_macro']:.3f} "
        f"in {result.seconds:.0f} s ({result.best.stopped.replace('_', ' ')})."
    )
    out.print(f"Model: {result.model_dir}")
    print_next(out, f"sortsight evaluate {quote(str(result.run_dir))}  (a report of the mistakes to review)")
