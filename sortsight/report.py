"""The evaluation report: one self-contained ``report.html`` (figures and thumbnails embedded).

The page works offline and prints cleanly (controls are hidden on paper). Its top-losses
section lets the reader mark images as *relabel* (to a chosen label) or *delete* and download
those decisions as ``decisions.csv`` (``path,action,new_label``) for ``sortsight fix``; the
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

if TYPE_CHECKING:
    from sortsight.evaluate import Evaluation

logger = logging.getLogger(__name__)

__all__ = ["confusion_png", "reliability_png", "render_report", "thumbnail_data_uri", "write_report"]

_THUMB = 160


def _figure_png(fig: Any) -> bytes:
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
    return _figure_png(fig)


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
    return _figure_png(fig)


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
        metric_rows=_metric_rows(ev.metrics),
        confusion_uri=_png_uri(confusion_png(ev)),
        reliability_uri=_png_uri(reliability_png(ev)),
        losses=losses,
        created=_dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        version=__version__,
    )


def write_report(ev: Evaluation, path: str | Path, *, thumbnails: bool = True) -> Path:
    """Write ``report.html`` atomically and return its path."""
    target = Path(path)
    atomic_write_text(target, render_report(ev, thumbnails=thumbnails))
    return target
