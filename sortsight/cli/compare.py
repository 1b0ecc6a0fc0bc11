"""``sortsight compare-pretrained DATA``: the same network from pretrained and from random weights.

Thin: flags → :class:`TrainConfig` → :func:`sortsight.compare.compare_pretrained` → a table.
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
from sortsight.config import TrainConfig, config_from_dict

__all__ = ["compare_pretrained"]


@click.command("compare-pretrained")
@config_options(TrainConfig, skip=("data_path", "pretrained", "candidates", "models"))
@click.argument("data")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
def compare_pretrained(data: str, as_json: bool, **flags: Any) -> None:
    """Train the same network on DATA from pretrained and from random weights, within one
    --time-budget (default 10m), and compare accuracy and time: what transfer learning buys.

    Writes OUT/pretrained/, OUT/random/ (two ordinary run folders) and OUT/comparison.html,
    comparison.png and comparison.json.

    \b
    Examples:
      sortsight compare-pretrained photos/ --out runs/compare --time-budget 10m
      sortsight compare-pretrained photos/ --test-split 0.2 --epochs 20
    """
    from sortsight.compare import compare_pretrained as run_compare

    values = {**given(flags), "data_path": data}
    if "out" not in values and "project_name" not in values:
        values["project_name"] = "compare-pretrained"
    config = config_from_dict(TrainConfig, values, what="training option")
    with ProgressView(Console(stderr=True)) as bar:
        result = run_compare(config, progress=bar)
    if as_json:
        click.echo(json.dumps({"split": result.split, "gain": result.gain, "rows": result.rows}, indent=2))
        return
    out = output_console()
    table = Table(title=f"Pretrained vs. random weights ({result.split} images)")
    for col in ("weights", "accuracy", "macro F1", "time", "epochs", "kept"):
        table.add_column(col, no_wrap=True)
    for r in result.rows:
        table.add_row(
            r["weights"],
            f"{r['accuracy']:.3f}",
            f"{r['f1_macro']:.3f}",
            f"{r['seconds']:.0f} s",
            str(r["epochs"]),
            str(r["chosen"]),
        )
    out.print(table)
    out.print(f"Pretrained minus random weights: {100 * result.gain:+.1f} accuracy points.")
    print_next(out, f"open {quote(str(result.run_dir / 'comparison.html'))}")
