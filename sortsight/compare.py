"""What transfer learning buys: the same network trained from pretrained and from random weights.

:func:`compare_pretrained` runs :func:`sortsight.train.train` twice inside one time budget —
``RUN/pretrained`` (every option as given) and ``RUN/random`` (``pretrained: false``, the whole
network trained) — on the same split (same seed), then writes ``RUN/comparison.json``,
``RUN/comparison.png`` (accuracy and wall time side by side) and ``RUN/comparison.html`` (the
table, the plot and links to both model cards). The pretrained run gets at most half the budget;
the random-weights run gets whatever is left, so the two together stay within it.

The figures compared are the test split's when the data has one (``test_split`` or a ``test/``
folder), else the validation split's.
"""

from __future__ import annotations

import html
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sortsight.config import TrainConfig
from sortsight.errors import ConfigError
from sortsight.fileops import atomic_write, atomic_write_text
from sortsight.progress import ProgressCallback, ProgressEvent, emit

__all__ = ["DEFAULT_BUDGET", "Comparison", "compare_pretrained"]

DEFAULT_BUDGET = 600.0  # seconds, when the config sets no time_budget
MIN_RANDOM_SECONDS = 30.0  # the random-weights run gets at least this long, even past the budget
FILES = ("comparison.json", "comparison.png", "comparison.html")


@dataclass(frozen=True)
class Comparison:
    """Both runs' figures: ``rows[0]`` pretrained, ``rows[1]`` random weights."""

    run_dir: Path
    rows: list[dict[str, Any]]
    split: str  # "test" or "validation": where the accuracies come from
    budget: float

    @property
    def gain(self) -> float:
        """Accuracy of pretrained minus random weights (points of 1.0)."""
        return float(self.rows[0]["accuracy"] - self.rows[1]["accuracy"])


def compare_pretrained(config: TrainConfig, *, progress: ProgressCallback | None = None) -> Comparison:
    """Train ``config`` from pretrained and from random weights within one budget; write the comparison.

    Args:
        config: the training options; ``time_budget`` is shared by both runs (default
            :data:`DEFAULT_BUDGET`), ``out`` is the comparison folder.
        progress: receives both runs' events, and one ``compare`` event per finished run.

    Raises:
        ConfigError: ``pretrained`` is already false, or the folder holds a comparison and
            ``overwrite`` is not set.
    """
    from sortsight.train import train
    from sortsight.training.plan import is_multilabel

    if not config.pretrained:
        raise ConfigError("compare-pretrained trains both ways itself: leave pretrained on.")
    if is_multilabel(config):  # before the first run, not after it
        raise ConfigError(
            "compare-pretrained needs single-label data: multi-label tags are learnt on pretrained "
            "features only. Compare on a class-folder dataset."
        )
    run_dir = config.run_dir
    if any((run_dir / f).exists() for f in FILES) and not (config.overwrite or config.resume):
        raise ConfigError(
            f"'{run_dir}' already holds a comparison. Choose another --out, or add --overwrite to replace it."
        )
    budget = config.time_budget or DEFAULT_BUDGET
    start = time.perf_counter()
    rows = []
    for weights, changes in (
        ("pretrained", {"time_budget": budget / 2}),
        ("random", {"pretrained": False, "strategy": "auto"}),
    ):
        if weights == "random":
            changes["time_budget"] = max(MIN_RANDOM_SECONDS, budget - (time.perf_counter() - start))
        result = train(replace(config, out=str(run_dir / weights), **changes), progress=progress)
        best = result.best
        split = "test" if result.test_metrics else "validation"
        shown = result.test_metrics or result.metrics
        rows.append(
            {
                "weights": weights,
                "accuracy": float(shown["accuracy"]),
                "f1_macro": float(shown.get("f1_macro", float("nan"))),
                "split": split,
                "seconds": round(result.seconds, 1),
                "first_model_seconds": round(best.first_model_seconds, 1),
                "chosen": best.chosen,
                "epochs": best.epochs,
                "stopped": best.stopped,
                "run_dir": str(result.run_dir),
                "model_dir": str(result.model_dir),
            }
        )
        emit(
            progress,
            ProgressEvent(
                "compare",
                len(rows),
                2,
                dict(rows[-1]),
                None,
                f"{weights} weights: {split} accuracy {rows[-1]['accuracy']:.3f} in {result.seconds:.0f} s",
            ),
        )
    split = "test" if all(r["split"] == "test" for r in rows) else "validation"
    comparison = Comparison(run_dir, rows, split, budget)
    _write(comparison)
    return comparison


def _write(c: Comparison) -> None:
    payload = {"split": c.split, "time_budget": c.budget, "gain": c.gain, "rows": c.rows}
    atomic_write_text(c.run_dir / "comparison.json", json.dumps(payload, indent=2) + "\n")
    png = _plot(c)
    atomic_write(c.run_dir / "comparison.png", lambda f: f.write(png))
    atomic_write_text(c.run_dir / "comparison.html", _html(c))


def _plot(c: Comparison) -> bytes:
    from matplotlib.figure import Figure

    from sortsight.report import figure_png

    fig = Figure(figsize=(7.0, 2.8))
    names = [f"{r['weights']} weights" for r in c.rows]
    colours = ["#2f6db5", "#b5562f"]
    left, right = fig.subplots(1, 2)
    left.bar(names, [r["accuracy"] for r in c.rows], color=colours)
    left.set_ylim(0, 1)
    left.set_title(f"{c.split} accuracy")
    for i, r in enumerate(c.rows):
        left.text(i, r["accuracy"] + 0.02, f"{r['accuracy']:.3f}", ha="center")
    right.bar(names, [r["seconds"] for r in c.rows], color=colours)
    right.set_title("training time (s)")
    for i, r in enumerate(c.rows):
        right.text(i, r["seconds"], f"{r['seconds']:.0f} s", ha="center", va="bottom")
    return figure_png(fig)


def _html(c: Comparison) -> str:
    e = html.escape
    rows = "\n".join(
        f"<tr><td>{e(r['weights'])}</td><td>{r['accuracy']:.3f}</td><td>{r['f1_macro']:.3f}</td>"
        f"<td>{r['seconds']:.0f} s</td><td>{r['epochs']}</td><td>{e(str(r['chosen']))}</td>"
        f'<td><a href="{e(r["weights"])}/model/README.md">model card</a></td></tr>'
        for r in c.rows
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Pretrained vs. random weights</title>
<style>body{{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}}</style>
</head><body>
<h1>What transfer learning buys</h1>
<p>The same network trained on the same images twice within one time budget of {c.budget:.0f} s:
from pretrained weights and from random weights. Accuracy on the {e(c.split)} images; pretrained
minus random: <strong>{100 * c.gain:+.1f} points</strong>.</p>
<table><tr><th>weights</th><th>accuracy</th><th>macro F1</th><th>time</th><th>epochs</th>
<th>kept</th><th></th></tr>
{rows}
</table>
<p><img src="comparison.png" alt="accuracy and training time, pretrained vs. random weights"></p>
</body></html>
"""
