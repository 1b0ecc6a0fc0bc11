"""The evaluation report: one self-contained ``report.html`` (figures and thumbnails embedded).

The page works offline and prints cleanly (controls are hidden on paper). Its top-losses
section lets the reader mark images as *relabel* (to a chosen label) or *delete* and download
those decisions as ``decisions.csv`` (``path,action,new_label``), which ``sortsight fix`` applies; the
few lines of inline JavaScript that do this need no network and no server.
"""

from __future__ import annotations

import base64
import datetime as _dt
import io
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sortsight import __version__
from sortsight.errors import ImageError
from sortsight.fileops import atomic_write_text
from sortsight.images import open_image

if TYPE_CHECKING:  # for the types only: evaluate imports this module when it writes a report
    from sortsight.evaluate import Evaluation

logger = logging.getLogger(__name__)

__all__ = [
    "confusion_png",
    "reliability_png",
    "render_report",
    "report_title",
    "summary_sentence",
    "thumbnail_data_uri",
    "write_report",
]

_THUMB = 160


def figure_png(fig: Any) -> bytes:
    """A matplotlib figure as PNG bytes (the one PNG writer of sortsight's figures)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def confusion_png(ev: Evaluation) -> bytes:
    """The confusion matrix (rows: true label, columns: predicted) as PNG bytes."""
    import numpy as np
    from matplotlib.figure import Figure
    from sklearn.metrics import ConfusionMatrixDisplay

    k = len(ev.labels)
    side = min(14.0, max(4.0, 0.55 * k + 2.5))
    fig = Figure(figsize=(side, side * 0.85))
    ax = fig.subplots()
    display = ConfusionMatrixDisplay(np.array(ev.confusion), display_labels=ev.labels)
    display.plot(
        ax=ax,
        cmap="Blues",
        colorbar=False,
        values_format="d",
        include_values=k <= 30,
        xticks_rotation="vertical" if k > 6 else "horizontal",
    )
    ax.set_title("Confusion matrix")
    return figure_png(fig)


def reliability_png(ev: Evaluation) -> bytes:
    """The reliability diagram: accuracy per confidence bin against the diagonal, as PNG bytes."""
    from matplotlib.figure import Figure

    bins = ev.calibration["bins"]
    fig = Figure(figsize=(4.8, 4.2))
    ax = fig.subplots()
    width = bins[0]["high"] - bins[0]["low"]
    centres = [b["low"] + width / 2 for b in bins if b["count"]]
    accuracy = [b["accuracy"] for b in bins if b["count"]]
    ax.bar(centres, accuracy, width=width * 0.92, color="#4a78c2", edgecolor="#23395d", label="accuracy")
    ax.plot([0, 1], [0, 1], linestyle="--", color="#888", label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top-1 probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability (ECE {ev.calibration['ece']:.3f})")
    ax.legend(loc="upper left", fontsize=8)
    return figure_png(fig)


def thumbnail_data_uri(path: str | Path, size: int = _THUMB) -> str | None:
    """A small JPEG of the image as a ``data:`` URI, or None when it cannot be read."""
    try:
        image = open_image(path, draft=(size, size))
    except ImageError:
        return None
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _metric_rows(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    names = {
        "accuracy": "Accuracy",
        "f1": "F1",
        "precision": "Precision",
        "recall": "Recall",
        "roc_auc": "ROC AUC",
        "f1_macro": "F1 (macro)",
        "f1_micro": "F1 (micro)",
        "f1_weighted": "F1 (weighted)",
        "precision_macro": "Precision (macro)",
        "precision_micro": "Precision (micro)",
        "precision_weighted": "Precision (weighted)",
        "recall_macro": "Recall (macro)",
        "recall_micro": "Recall (micro)",
        "recall_weighted": "Recall (weighted)",
        "roc_auc_ovr_macro": "ROC AUC (one-vs-rest, macro)",
        "log_loss": "Log loss",
        "n_images": "Images",
        "positive_label": "Positive label",
    }
    rows = []
    for key, value in metrics.items():
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        rows.append((names.get(key, key), shown))
    return rows


_GENERIC_PARTS = {"model", "models", "run", "runs", "data", "jobs", "projects", "final", "checkpoints"}


def report_title(model: str) -> str:
    """A short name for a model: the last part of its path that is not a generic folder name.

    Example:
        >>> report_title("/home/me/.sortsight/projects/postcards/jobs/3/run/model")
        'postcards'
        >>> report_title("efficientnet_lite0")
        'efficientnet_lite0'
    """
    parts = [p for p in Path(model).parts if p not in ("/", "") and not p.isdigit()]
    named = [p for p in parts if p.lower() not in _GENERIC_PARTS]
    return named[-1] if named else (parts[-1] if parts else "model")


def summary_sentence(labels: list[str], confusion: list[list[int]], split: str) -> str:
    """One sentence on a confusion matrix, e.g. "99 of 100 test images right (99.0%); most confused:
    t-shirt → pullover (1 image)." (rows of ``confusion``: true labels; columns: predicted).

    Example:
        >>> summary_sentence(["a", "b"], [[5, 0], [2, 3]], "test")
        '8 of 10 test images right (80.0%); most confused: b → a (2 images).'
    """
    total = sum(sum(int(n) for n in row) for row in confusion)
    if not total:
        return ""
    right = sum(int(row[i]) for i, row in enumerate(confusion) if i < len(row))
    text = f"{right} of {total} {split} images right ({100 * right / total:.1f}%)"
    count, true, predicted = max(
        ((int(n), i, j) for i, row in enumerate(confusion) for j, n in enumerate(row) if i != j),
        default=(0, 0, 0),
    )
    if count and max(true, predicted) < len(labels):
        text += (
            f"; most confused: {labels[true]} → {labels[predicted]} ({count} image{'s' if count > 1 else ''})"
        )
    return text + "."


def render_report(ev: Evaluation, *, thumbnails: bool = True) -> str:
    """The report as one HTML string (figures and thumbnails inlined as ``data:`` URIs)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("sortsight", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )
    losses = []
    for row in ev.top_losses:
        thumb = thumbnail_data_uri(row["path"]) if thumbnails else None
        losses.append({**row, "thumb": thumb, "name": Path(row["path"]).name})
    return env.get_template("report.html.j2").render(
        ev=ev,
        title=report_title(ev.model),
        sentence=summary_sentence(ev.labels, ev.confusion, "test" if ev.split == "test" else ev.split),
        metric_rows=_metric_rows(ev.metrics),
        confusion_uri=_png_uri(confusion_png(ev)),
        reliability_uri=_png_uri(reliability_png(ev)),
        losses=losses,
        created=_dt.datetime.now().strftime("%d %b %Y, %H:%M").lstrip("0"),
        version=__version__,
    )


def write_report(ev: Evaluation, path: str | Path, *, thumbnails: bool = True) -> Path:
    """Write ``report.html`` atomically and return its path."""
    target = Path(path)
    atomic_write_text(target, render_report(ev, thumbnails=thumbnails))
    return target
