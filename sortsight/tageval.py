"""Evaluate a multi-label tagger: micro/macro/samples F1, mAP, per-tag tables, worst images, calibration.

:func:`sortsight.evaluate.evaluate` hands multi-label models to :func:`evaluate_tags`. On a run
folder it uses the run's held-out test images (or validation, with a note); on given data, its
``test`` split when it has one, else every image. Each tag is cut at its own threshold (saved
with the model). :class:`TagEvaluation` has the attributes the CLI reads from a single-label
:class:`~sortsight.evaluate.Evaluation` (``metrics``, ``per_class``, ``calibration``, ...), and
``save`` writes ``evaluation.json`` and a self-contained ``report.html``.
"""

from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from sortsight.errors import DataError
from sortsight.predict import Classifier, score_paths
from sortsight.progress import ProgressCallback
from sortsight.tagmetrics import tag_calibration, tag_metrics

__all__ = ["TagEvaluation", "evaluate_tags"]


@dataclass
class TagEvaluation:
    """What :func:`evaluate_tags` measured; ``to_dict()`` is ``evaluation.json``."""

    model: str
    data: str
    split: str
    note: str
    labels: list[str]
    thresholds: list[float]
    metrics: dict[str, Any]
    per_class: list[dict[str, Any]]  # one row per tag: label, threshold, precision, recall, f1, support, tp…
    worst: list[dict[str, Any]]  # images with the most wrong tags
    calibration: dict[str, Any]
    predictions: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    engine: str = ""
    task: str = "multi_label"
    most_confused: list[dict[str, Any]] = field(default_factory=list)  # single-label only

    @property
    def accuracy(self) -> float:
        return float(self.metrics["subset_accuracy"])

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "most_confused"}
        out["per_tag"] = out.pop("per_class")
        return out

    def save(self, out_dir: str | Path, *, thumbnails: bool = True) -> dict[str, Path]:
        """Write ``evaluation.json`` and ``report.html``; returns them by kind (``json``, ``report``)."""
        from sortsight.fileops import atomic_write_text
        from sortsight.runs import EVALUATION

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"json": out / EVALUATION, "report": out / "report.html"}
        atomic_write_text(paths["json"], json.dumps(self.to_dict(), indent=2, ensure_ascii=False))
        atomic_write_text(paths["report"], _report_html(self, thumbnails=thumbnails))
        return paths


def _items(
    clf: Classifier, data: str | Path | None, split: str | None, read: tuple[list[Any], str] | None
) -> tuple[list[Any], str, str, str]:
    """``(tag items, data name, split name, note)`` to evaluate on; ``read`` is
    :func:`data_tag_items` of ``data`` when the caller read it already."""
    from sortsight.runs import RunFolder, held_out_split
    from sortsight.tagdata import scan_tags

    model_path = Path(clf.source)
    found = RunFolder.find(model_path) if model_path.is_dir() else None
    run = (found.run_dir, found.info()) if found is not None and found.run_dir else None
    stored = (run[1].get("data") or {}) if run else {}
    same = (
        data is not None
        and stored.get("path")
        and os.path.abspath(str(stored["path"])) == os.path.abspath(data)
    )
    if run is not None and (data is None or (same and split is None)):
        config = run[1].get("config") or {}
        source, splits = stored.get("path"), stored.get("splits") or {}
        if not source or not Path(source).exists():
            raise DataError(
                f"The data of run '{run[0]}' ('{source}') is not there any more; give DATA to evaluate on."
            )
        target = None if config.get("target_column") in (None, "target") else config["target_column"]
        ds = scan_tags(
            source, target_column=target, separator=config.get("tag_separator", "auto"), verify=False
        )
        name, wanted, note = held_out_split(
            splits,
            "No test split was held out for this run, so these are the validation images: the tag "
            "thresholds were chosen on the training images, but the head's settings were not tuned "
            "on these. Train with test_split (e.g. 0.1) for a separate estimate.",
        )
        by_rel = {ds.relative(it.path): it for it in ds.items}
        items = [by_rel[r] for r in wanted if r in by_rel]
        if not items:
            raise DataError(f"None of the {name} images of run '{run[0]}' were found in '{source}'.")
        return items, str(source), name, note
    if data is None:
        raise DataError(
            f"'{clf.source}' is not a sortsight run folder; give tagged data: sortsight evaluate MODEL DATA."
        )
    items, split_name = read or data_tag_items(data, split)
    return items, str(data), split_name, ""


def data_tag_items(data: str | Path, split: str | None) -> tuple[list[Any], str]:
    """The tagged images of ``data`` to evaluate on (its test split when it has one, else all) and
    the split's name.

    Raises:
        DataError: ``data`` is not tagged data, or has no such split.
    """
    from sortsight.tagdata import scan_tags

    ds = scan_tags(data, verify=False)
    present = {it.split for it in ds.items}
    split = split or ("test" if "test" in present else "")
    items = [it for it in ds.items if it.split == split] if split else list(ds.items)
    if not items:
        raise DataError(f"'{data}' has no '{split}' split; choose another --split.")
    return items, split or "all"


def evaluate_tags(
    clf: Classifier,
    data: str | Path | None = None,
    *,
    split: str | None = None,
    num_workers: int | None = None,
    worst: int = 24,
    progress: ProgressCallback | None = None,
    read: tuple[list[Any], str] | None = None,
) -> TagEvaluation:
    """Measure a multi-label :class:`Classifier` on tagged images (see the module docstring).

    ``read``: :func:`data_tag_items` ``(data, split)``, when the caller has read ``data`` already
    (:func:`sortsight.evaluate.evaluate` counts it before the model loads); not read again.

    Raises:
        DataError: no data, none of the images readable, or no tag in common with the model.
    """
    items, data_name, split_name, note = _items(clf, data, split, read)
    tags = list(clf.labels)
    unknown = sorted({t for it in items for t in it.tags} - set(tags))
    if unknown:
        note = (
            note + " " if note else ""
        ) + f"Tags the model does not know were ignored: {', '.join(unknown[:8])}."
    index = {t: i for i, t in enumerate(tags)}
    y_all = np.zeros((len(items), len(tags)), dtype=bool)
    for n, it in enumerate(items):
        for t in it.tags:
            if t in index:
                y_all[n, index[t]] = True
    paths = [it.path for it in items]
    scores_all, kept, skipped = score_paths(
        clf, paths, what=data_name, progress=progress, num_workers=num_workers
    )
    y, s = y_all[kept], scores_all[kept]
    cuts = np.asarray(clf.thresholds or [0.5] * len(tags), dtype=np.float64)
    result = tag_metrics(y, s, cuts, tags)
    calibration = tag_calibration(y, s, tags)
    for row, cal in zip(result["per_tag"], calibration["per_tag"], strict=True):
        row["label"], row["ece"] = row["tag"], cal["ece"]
    pred = s >= cuts[None, :]
    predictions: list[dict[str, Any]] = []
    for n, k in enumerate(kept):
        true_tags = [tags[t] for t in np.flatnonzero(y[n])]
        got = [tags[t] for t in np.flatnonzero(pred[n])]
        predictions.append(
            {
                "path": str(paths[k]),
                "true": true_tags,
                "predicted": got,
                "missing": sorted(set(true_tags) - set(got)),
                "extra": sorted(set(got) - set(true_tags)),
                "wrong": int((y[n] != pred[n]).sum()),
                "scores": {t: round(float(v), 6) for t, v in zip(tags, s[n], strict=True)},
            }
        )
    ranked = sorted(predictions, key=lambda p: (-p["wrong"], p["path"]))
    return TagEvaluation(
        model=clf.source,
        data=data_name,
        split=split_name,
        note=note,
        labels=tags,
        thresholds=cuts.tolist(),
        metrics=result["metrics"],
        per_class=result["per_tag"],
        worst=[p for p in ranked[:worst] if p["wrong"]],
        calibration=calibration,
        predictions=predictions,
        skipped=skipped,
        engine=clf.engine.name,
    )


def _report_html(ev: TagEvaluation, *, thumbnails: bool) -> str:
    from sortsight.report import thumbnail_data_uri

    e = html.escape
    metric_rows = "".join(
        f"<tr><td>{e(k)}</td><td>{v:.4f}</td></tr>"
        if isinstance(v, float)
        else f"<tr><td>{e(k)}</td><td>{v}</td></tr>"
        for k, v in ev.metrics.items()
    )
    tag_rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{e(str(r[k]))}</td>" if not isinstance(r[k], float) else f"<td>{r[k]:.3f}</td>"
            for k in (
                "tag",
                "threshold",
                "precision",
                "recall",
                "f1",
                "ap",
                "support",
                "tp",
                "fp",
                "fn",
                "ece",
            )
        )
        + "</tr>"
        for r in ev.per_class
    )
    worst = []
    for p in ev.worst:
        uri = thumbnail_data_uri(p["path"]) if thumbnails else None
        img = f'<img src="{uri}" alt="">' if uri else ""
        worst.append(
            f"<tr><td>{img}</td><td>{e(p['path'])}</td><td>{e(', '.join(p['true']) or '—')}</td>"
            f"<td>{e(', '.join(p['predicted']) or '—')}</td><td>{e(', '.join(p['missing']))}</td>"
            f"<td>{e(', '.join(p['extra']))}</td></tr>"
        )
    note = f"<p><em>{e(ev.note)}</em></p>" if ev.note else ""
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>sortsight tag report — {e(ev.model)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:70em}}
table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:left}} img{{max-width:96px}}</style></head><body>
<h1>Multi-label evaluation</h1>
<p>Model <code>{e(ev.model)}</code> on <code>{e(ev.data)}</code>
({e(ev.split)}, {ev.metrics["n_images"]} images, engine {e(ev.engine)}).
Each tag is cut at its own threshold.</p>{note}
<h2>Metrics</h2><table>{metric_rows}
<tr><td>mean per-tag ECE</td><td>{ev.calibration["ece"]:.4f}</td></tr></table>
<h2>Per tag</h2><table><tr><th>tag</th><th>threshold</th><th>precision</th><th>recall</th>
<th>F1</th><th>AP</th><th>images</th><th>TP</th><th>FP</th><th>FN</th><th>ECE</th></tr>{tag_rows}</table>
<h2>Images with the most wrong tags</h2><table><tr><th></th><th>path</th><th>true tags</th><th>predicted</th>
<th>missing</th><th>extra</th></tr>{"".join(worst)}</table>
<p>{len(ev.skipped)} image(s) could not be read.</p></body></html>
"""
