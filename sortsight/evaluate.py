"""Evaluate a model on labelled images: metrics, confusion, top losses, calibration.

:func:`evaluate` works on a sortsight run folder (its held-out test split by default, falling
back to the validation split with a note) and on any Hugging Face image-classification model
folder (for example one saved by a transformers ``Trainer``) given labelled data — a folder of
class subfolders, split folders (the ``test/`` split is used when present) or a labels CSV.

Metrics come from scikit-learn: accuracy; for two classes F1, precision, recall and ROC AUC of
the second label; for more, macro/micro/weighted F1, precision and recall, and a per-class
table. Also the confusion matrix, the most-confused pairs, the top losses (fastai's
``top_losses(items=True)``) and calibration (reliability bins and expected calibration error).
:meth:`Evaluation.save` writes ``evaluation.json``, two PNG figures and ``report.html``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from sortsight._callable import make_module_callable
from sortsight.config import DEFAULT_BATCH_SIZE, DEFAULT_TOP_LOSSES
from sortsight.errors import DataError
from sortsight.predict import Classifier, score_paths
from sortsight.progress import ProgressCallback
from sortsight.runs import EVALUATION, RunFolder, held_out_split

__all__ = ["Evaluation", "calibration_bins", "compute_metrics", "evaluate", "held_out_items"]


@dataclass
class Evaluation:
    """Everything :func:`evaluate` measured; ``to_dict()`` is what ``evaluation.json`` holds."""

    model: str
    data: str
    split: str
    note: str
    labels: list[str]
    metrics: dict[str, float]
    per_class: list[dict[str, Any]]
    confusion: list[list[int]]
    most_confused: list[dict[str, Any]]
    top_losses: list[dict[str, Any]]
    calibration: dict[str, Any]
    predictions: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    engine: str = ""

    @property
    def accuracy(self) -> float:
        return float(self.metrics["accuracy"])

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["confusion_matrix"] = out.pop("confusion")
        return out

    def save(self, out_dir: str | Path, *, thumbnails: bool = True) -> dict[str, Path]:
        """Write ``evaluation.json``, ``confusion_matrix.png``, ``reliability.png`` and ``report.html``.

        Returns:
            The written files by kind (``json``, ``confusion``, ``reliability``, ``report``).
        """
        from sortsight.fileops import atomic_write_text
        from sortsight.report import confusion_png, reliability_png, write_report

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {
            "json": out / EVALUATION,
            "confusion": out / "confusion_matrix.png",
            "reliability": out / "reliability.png",
            "report": out / "report.html",
        }
        atomic_write_text(paths["json"], json.dumps(self.to_dict(), indent=2, ensure_ascii=False))
        paths["confusion"].write_bytes(confusion_png(self))
        paths["reliability"].write_bytes(reliability_png(self))
        write_report(self, paths["report"], thumbnails=thumbnails)
        return paths


def calibration_bins(probs: np.ndarray, y_true: np.ndarray, n_bins: int = 10) -> dict[str, Any]:
    """Reliability bins of the top-1 confidence and the expected calibration error (ECE).

    ECE = Σ_b (n_b / N) · |accuracy_b − mean confidence_b| over equal-width confidence bins.

    Example:
        >>> p = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
        >>> round(calibration_bins(p, np.array([0, 1, 1, 0]), n_bins=5)["ece"], 3)
        0.25
    """
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(float)
    from sortsight.tagmetrics import reliability

    bins, ece = reliability(correct, confidence, n_bins, ("accuracy", "confidence"))
    return {"bins": bins, "ece": float(ece), "n_bins": n_bins}


def compute_metrics(y_true: np.ndarray, probs: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy and the binary or multiclass scores, per-class table and confusion matrix.

    Returns:
        ``{"metrics": {...}, "per_class": [...], "confusion": [[...]]}``.
    """
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        log_loss,
        precision_recall_fscore_support,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    k = len(labels)
    classes = list(range(k))
    y_pred = probs.argmax(axis=1)
    metrics: dict[str, Any] = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "n_images": len(y_true),
    }
    present = sorted(set(y_true.tolist()))
    if k == 2:
        metrics.update(
            {
                "positive_label": labels[1],
                "f1": float(f1_score(y_true, y_pred, pos_label=1, zero_division=0)),
                "precision": float(precision_score(y_true, y_pred, pos_label=1, zero_division=0)),
                "recall": float(recall_score(y_true, y_pred, pos_label=1, zero_division=0)),
            }
        )
        if len(present) == 2:
            metrics["roc_auc"] = float(roc_auc_score(y_true, probs[:, 1]))
    else:
        for avg in ("macro", "micro", "weighted"):
            p, r, f, _ = precision_recall_fscore_support(
                y_true, y_pred, labels=present, average=avg, zero_division=0
            )
            metrics.update({f"precision_{avg}": float(p), f"recall_{avg}": float(r), f"f1_{avg}": float(f)})
        if len(present) == k:
            metrics["roc_auc_ovr_macro"] = float(
                roc_auc_score(y_true, probs, multi_class="ovr", labels=classes)
            )
    if len(y_true):
        clipped = np.clip(probs, 1e-15, 1.0)
        metrics["log_loss"] = float(
            log_loss(y_true, clipped / clipped.sum(axis=1, keepdims=True), labels=classes)
        )
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=classes, zero_division=0)
    per_class = [
        {
            "label": labels[i],
            "precision": float(p[i]),
            "recall": float(r[i]),
            "f1": float(f[i]),
            "support": int(s[i]),
        }
        for i in classes
    ]
    confusion = confusion_matrix(y_true, y_pred, labels=classes).tolist()
    return {"metrics": metrics, "per_class": per_class, "confusion": confusion}


def _most_confused(
    confusion: list[list[int]], labels: Sequence[str], limit: int = 20
) -> list[dict[str, Any]]:
    pairs: list[dict[str, Any]] = [
        {"true": labels[i], "predicted": labels[j], "count": int(confusion[i][j])}
        for i in range(len(labels))
        for j in range(len(labels))
        if i != j and confusion[i][j] > 0
    ]
    pairs.sort(key=lambda d: (-d["count"], d["true"], d["predicted"]))
    return pairs[:limit]


# --------------------------------------------------------------------------- data selection


def _held_out_count(run: tuple[Path, dict[str, Any]]) -> int | None:
    """How many images evaluating a run's own held-out split will see (None: not recorded)."""
    splits = (run[1].get("data") or {}).get("splits")
    return len(held_out_split(splits, "")[1]) if isinstance(splits, dict) else None


def _items_ahead(
    data: str | Path, split: str | None
) -> tuple[tuple[list[tuple[Path, str]], str] | None, tuple[list[Any], str] | None, int | None]:
    """``(labelled items, tagged items, count)`` of ``data``, read before the model loads so that a
    small evaluation skips a first ONNX export that would not pay; the items (each ``(items, split
    name)`` or None) are used after the load. Tagged data is read by :mod:`sortsight.tageval`'s
    reader; data neither reader takes gives ``(None, None, None)``, and its error is raised again
    after the load, by the reader the model's task chooses."""
    try:
        found = _data_items(data, split)
        return found, None, len(found[0])
    except DataError:
        pass
    from sortsight.tageval import data_tag_items

    try:
        tagged = data_tag_items(data, split)
        return None, tagged, len(tagged[0])
    except DataError:
        return None, None, None


def held_out_items(run_dir: Path, info: dict[str, Any]) -> tuple[list[tuple[Path, str]], str, str, str]:
    """The run's test images (or validation images, with a note): ``(items, data, split, note)``.

    Raises:
        DataError: the run records no split lists or its data folder is gone.
    """
    from sortsight.data import scan

    data = info.get("data") or {}
    splits = data.get("splits") or {}
    source = data.get("path")
    if not source or not splits:
        raise DataError(
            f"Run '{run_dir}' does not record its data splits. Give the data to evaluate on: "
            f"sortsight evaluate {run_dir} DATA."
        )
    split, wanted, note = held_out_split(
        splits,
        "No test split was held out for this run, so these are the validation images, which also "
        "chose the best epoch: expect the numbers to be a little optimistic. Train with test_split "
        "(e.g. 0.1) for an unbiased estimate.",
    )
    if not Path(source).exists():
        raise DataError(
            f"The data of run '{run_dir}' ('{source}') is not there any more. Give the data to "
            f"evaluate on: sortsight evaluate {run_dir} DATA."
        )
    ds = scan(source, verify=False)
    by_relative = {ds.relative(item.path): item for item in ds.items}
    items = [(by_relative[r].path, by_relative[r].label) for r in wanted if r in by_relative]
    if not items:
        raise DataError(
            f"None of the {split} images of run '{run_dir}' were found in '{source}'. Give the data "
            f"to evaluate on: sortsight evaluate {run_dir} DATA."
        )
    return items, str(source), split, note


def _data_items(data: str | Path, split: str | None) -> tuple[list[tuple[Path, str]], str]:
    from sortsight.data import scan

    ds = scan(data, verify=False)
    splits = {item.split for item in ds.items}
    if split is None:
        split = "test" if "test" in splits else ""
    if split:
        chosen = [item for item in ds.items if item.split == split]
        if not chosen:
            raise DataError(
                f"'{data}' has no '{split}' split (it has: {', '.join(sorted(splits)) or 'none'}). "
                f"Choose another --split."
            )
    else:
        chosen = list(ds.items)
    return [(item.path, item.label) for item in chosen], split or "all"


# --------------------------------------------------------------------------- evaluate


def evaluate(
    model: str | Path | Classifier,
    data: str | Path | None = None,
    *,
    split: str | None = None,
    engine: str = "auto",
    batch_size: int = DEFAULT_BATCH_SIZE,
    num_workers: int | None = None,
    top_losses: int = DEFAULT_TOP_LOSSES,
    progress: ProgressCallback | None = None,
    tta: bool = False,
) -> Evaluation:
    """Measure a model on labelled images.

    Args:
        model: a run folder, an HF model folder, an ``.onnx`` file, or a loaded :class:`Classifier`.
        data: labelled images (folder, split folders, labels CSV). None: the run's held-out test
            split (or its validation split, with a note).
        split: which split of ``data`` to use (default: ``test`` when it has one, else every image).
        engine: inference engine (see :mod:`sortsight.engines`).
        batch_size: images per forward pass.
        num_workers: image-decoding processes.
        top_losses: how many of the worst mistakes to keep.
        progress: receives ``ProgressEvent(phase="evaluate", ...)``.
        tta: flip test-time augmentation (each image averaged with its mirror image).

    Returns:
        An :class:`Evaluation`; ``.save(dir)`` writes the report.

    Raises:
        DataError: no data to evaluate on, or classes the model does not know.
        ModelError: the model cannot be loaded.

    Example:
        >>> ev = evaluate("runs/covers")  # doctest: +SKIP
        >>> round(ev.accuracy, 3), ev.split  # doctest: +SKIP
        (0.962, 'test')
    """
    model_path = Path(model.source if isinstance(model, Classifier) else model)
    found = RunFolder.find(model_path) if model_path.is_dir() else None
    run = (found.run_dir, found.info()) if found is not None and found.run_dir else None
    if data is None and run is None:  # checked before the (slow) model load
        raise DataError(
            f"'{model_path}' is not a sortsight run folder, so it has no held-out split. Give "
            f"labelled data: sortsight evaluate {model_path} DATA."
        )
    same_data = False
    if data is not None and run is not None:
        recorded = (run[1].get("data") or {}).get("path")
        same_data = bool(recorded) and os.path.abspath(str(recorded)) == os.path.abspath(str(data))
    held_out = run is not None and (data is None or (same_data and split is None))
    ahead = tagged = None  # the given data's items, read before the load and used after it
    if held_out and run is not None:
        count = _held_out_count(run)
    elif data is not None:
        ahead, tagged, count = _items_ahead(data, split)
    else:
        count = None
    clf = (
        model
        if isinstance(model, Classifier)
        else Classifier.load(model, engine=engine, batch_size=batch_size, tta=tta, images=count)
    )
    if clf.task == "multi_label":  # sigmoid scores and per-tag thresholds
        from sortsight.tageval import evaluate_tags

        return evaluate_tags(
            clf, data, split=split, num_workers=num_workers, worst=top_losses, progress=progress, read=tagged
        )  # type: ignore[return-value]
    note = ""
    if held_out and run is not None:
        items, data_name, split_name, note = held_out_items(*run)
    else:
        assert data is not None
        items, split_name = ahead or _data_items(data, split)
        data_name = str(data)
    known = set(clf.labels)
    unknown = sorted({label for _, label in items} - known)
    if unknown:
        raise DataError(
            f"The data has classes the model does not know: {', '.join(unknown[:5])}. The model "
            f"knows: {', '.join(clf.labels[:10])}. Evaluate on data with the model's classes."
        )
    index = {label: i for i, label in enumerate(clf.labels)}
    paths = [p for p, _ in items]
    y_all = np.array([index[label] for _, label in items], dtype=np.int64)
    probs_all, kept, skipped = score_paths(
        clf, paths, what=data_name, progress=progress, num_workers=num_workers
    )
    y_true, probs = y_all[kept], probs_all[kept]
    result = compute_metrics(y_true, probs, clf.labels)
    y_pred = probs.argmax(axis=1)
    p_true = probs[np.arange(len(kept)), y_true]
    losses = -np.log(np.clip(p_true, 1e-15, 1.0))
    predictions = [
        {
            "path": str(paths[k]),
            "true": clf.labels[t],
            "predicted": clf.labels[p],
            "probability": round(float(probs[n, p]), 6),
            "probability_true": round(float(p_true[n]), 6),
            "loss": round(float(losses[n]), 6),
        }
        for n, (k, t, p) in enumerate(zip(kept, y_true, y_pred, strict=True))
    ]
    worst = [predictions[n] for n in np.argsort(-losses, kind="stable")[:top_losses]]
    return Evaluation(
        model=clf.source,
        data=data_name,
        split=split_name,
        note=note,
        labels=list(clf.labels),
        metrics=result["metrics"],
        per_class=result["per_class"],
        confusion=result["confusion"],
        most_confused=_most_confused(result["confusion"], clf.labels),
        top_losses=worst,
        calibration=calibration_bins(probs, y_true),
        predictions=predictions,
        skipped=skipped,
        engine=clf.engine.name,
    )


make_module_callable(__name__, evaluate)  # sortsight.evaluate(...) works in every import order
