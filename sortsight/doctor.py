"""The data doctor: duplicates and leakage, likely mislabelled images, image-quality flags.

``doctor(dataset)`` looks at every image of a dataset and returns a JSON-ready
:class:`DoctorReport`:

- **duplicates** — exact copies (same SHA-256) and near copies (perceptual hash within a few
  bits, via ``imagehash``; optionally also embedding cosine similarity). A group spanning
  train/validation/test is flagged as **leakage**; a group whose copies carry different labels
  as a **label conflict**.
- **likely mislabels** — out-of-sample class probabilities on frozen-backbone embeddings
  (:func:`sortsight.features.extract_features`, cached): per stratified fold, a logistic regression
  plus a k-nearest-neighbour vote fitted on the other folds only, refitted without the likely errors
  those folds hold; flagged by cleanlab's ``find_label_issues`` and ranked by its
  ``get_label_quality_scores``, each with the suggested label and a score (``_doctor_labels``).
- **out of place** — outliers on the embeddings (cleanlab's ``OutOfDistribution``) and
  near-identical embeddings that carry different labels, listed apart from the label errors.
- **quality flags** — very dark, very bright, blurry (variance of the Laplacian), low-information
  (nearly blank), tiny, odd aspect ratio, grayscale in a colour set.

:func:`save_report` writes ``doctor.json`` and a contact sheet PNG of the flagged images.

Example:
    >>> report = doctor("photos/")  # doctest: +SKIP
    >>> report.summary()["leakage"]  # doctest: +SKIP
    0
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from sortsight._callable import make_module_callable
from sortsight._doctor_checks import (
    ImageStats,
    QualityThresholds,
    groups,
    image_stats,
    measure_images,
    near_pairs_embedding,
    near_pairs_hash,
    quality_flags,
)
from sortsight._doctor_labels import LabelSettings, label_issues, out_of_place
from sortsight.config import DEFAULT_MODEL, DEFAULT_NEAR_DISTANCE, DEFAULT_SEED
from sortsight.data import ImageDataset, load_dataset
from sortsight.errors import ConfigError
from sortsight.fileops import atomic_write, atomic_write_text, output_error
from sortsight.progress import ProgressCallback
from sortsight.sheets import contact_sheet as _sheet

__all__ = [
    "DoctorReport",
    "DuplicateGroup",
    "ImageStats",
    "LabelIssue",
    "LabelSettings",
    "OutOfPlace",
    "QualityFlag",
    "QualityThresholds",
    "doctor",
    "image_stats",
    "quality_flags",
    "run_backbone",
    "save_report",
]

REPORT_KIND = "sortsight-doctor"
JSON_NAME = "doctor.json"
SHEET_NAME = "doctor-contact-sheet.png"
_LABEL_FILTERS = ("predicted_neq_given", "prune_by_noise_rate", "confident_learning", "both")


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class DuplicateGroup:
    """Images that are copies of each other. ``kind`` is ``"exact"`` or ``"near"``."""

    kind: str
    paths: list[str]
    labels: list[str]
    splits: list[str]
    leakage: bool
    label_conflict: bool
    max_distance: int = 0


@dataclass(frozen=True)
class LabelIssue:
    """A likely mislabelled image, with the label the model suggests instead.

    ``score`` is cleanlab's label-quality score the flags are ranked by (0–1, lowest first: most
    likely wrong); ``label_score`` is the out-of-sample probability of the given label,
    ``suggested_score`` that of the suggested one; ``confident`` is True when cleanlab's stricter
    confident-learning filter flags it too.
    """

    rank: int
    path: str
    label: str
    suggested_label: str
    label_score: float
    suggested_score: float
    split: str = ""
    confident: bool = False
    score: float = 0.0


@dataclass(frozen=True)
class OutOfPlace:
    """An image that may not belong in the set at all, listed apart from label errors.

    ``kind`` is ``"outlier"`` (far from every other image in embedding space; ``score`` is
    cleanlab's outlier score, 0–1, lowest first) or ``"near_conflict"`` (nearly the same picture
    as ``other_path``, which carries another label; ``score`` is their cosine similarity).
    """

    rank: int
    kind: str
    path: str
    label: str
    score: float
    other_path: str = ""
    other_label: str = ""


@dataclass(frozen=True)
class QualityFlag:
    """One quality problem of one image: ``issue`` with the measured ``value`` and the ``threshold``."""

    path: str
    label: str
    issue: str
    value: float
    threshold: float


@dataclass
class DoctorReport:
    """Everything the doctor found; ``to_dict()`` is what ``doctor.json`` holds."""

    root: str
    n_images: int
    classes: list[str]
    duplicates: list[DuplicateGroup] = field(default_factory=list)
    label_issues: list[LabelIssue] = field(default_factory=list)
    quality: list[QualityFlag] = field(default_factory=list)
    out_of_place: list[OutOfPlace] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def leakage(self) -> list[DuplicateGroup]:
        """Duplicate groups that span more than one split."""
        return [g for g in self.duplicates if g.leakage]

    @property
    def label_conflicts(self) -> list[DuplicateGroup]:
        """Duplicate groups whose copies carry different labels."""
        return [g for g in self.duplicates if g.label_conflict]

    def summary(self) -> dict[str, Any]:
        """Counts of each finding."""
        by_issue: dict[str, int] = {}
        for flag in self.quality:
            by_issue[flag.issue] = by_issue.get(flag.issue, 0) + 1
        return {
            "images": self.n_images,
            "exact_duplicate_groups": sum(g.kind == "exact" for g in self.duplicates),
            "near_duplicate_groups": sum(g.kind == "near" for g in self.duplicates),
            "leakage": len(self.leakage),
            "label_conflicts": len(self.label_conflicts),
            "label_issues": len(self.label_issues),
            "out_of_place": len(self.out_of_place),
            "quality": dict(sorted(by_issue.items())),
        }

    def flagged(self) -> list[tuple[str, str]]:
        """``(path, caption)`` for each flagged image, most important first (one entry per image)."""
        seen: dict[str, str] = {}
        for issue in self.label_issues:
            seen.setdefault(issue.path, f"{issue.label}->{issue.suggested_label}? {issue.score:.2f}")
        for odd in self.out_of_place:
            seen.setdefault(odd.path, f"{odd.kind} {odd.label} {odd.score:.2f}")
        for group in self.duplicates:
            tag = "leak" if group.leakage else "conflict" if group.label_conflict else group.kind
            for path, label, split in zip(group.paths, group.labels, group.splits, strict=True):
                seen.setdefault(path, f"{tag} dup {label}/{split or '-'}")
        for flag in self.quality:
            seen.setdefault(flag.path, f"{flag.issue} ({flag.label})")
        return list(seen.items())

    def suggested_decisions(self) -> list[dict[str, str]]:
        """Rows for a decisions CSV (``path,action,new_label``): relabel each likely mislabel."""
        return [
            {"path": i.path, "action": "relabel", "new_label": i.suggested_label} for i in self.label_issues
        ]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``kind`` marks it as a doctor report)."""
        return {"kind": REPORT_KIND, "summary": self.summary(), **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DoctorReport:
        """Rebuild a report from :meth:`to_dict` output (e.g. a ``doctor.json``)."""
        names = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        kwargs["duplicates"] = [DuplicateGroup(**g) for g in data.get("duplicates", [])]
        kwargs["label_issues"] = [LabelIssue(**i) for i in data.get("label_issues", [])]
        kwargs["quality"] = [QualityFlag(**q) for q in data.get("quality", [])]
        kwargs["out_of_place"] = [OutOfPlace(**o) for o in data.get("out_of_place", [])]
        return cls(**kwargs)


# --------------------------------------------------------------------------- label issues


def run_backbone(run: str | os.PathLike) -> tuple[str, int]:
    """The frozen backbone ``(model name, input side)`` of a training run folder.

    The doctor's one link to training: ``check --doctor --model RUN`` reads the kept model's
    backbone from ``RUN/sortsight.json`` (``best``, else ``config``) and asks
    :func:`sortsight.features.extract_features` for that backbone's *pretrained* features, so the
    features cache is shared and no fine-tuned weights (which saw the labels) judge the labels.

    Raises:
        ConfigError: ``run`` is not a sortsight run folder.
    """
    from sortsight.runs import RECORD, read_json

    try:
        info = read_json(Path(run) / RECORD)
        best, config = info.get("best") or {}, info.get("config") or {}
        model = str(best.get("model") or config["model"])
        size = best.get("image_size") or config.get("image_size") or 224
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        raise ConfigError(
            f"'{run}' is not a sortsight run folder (no readable sortsight.json); give the folder "
            "'sortsight train' wrote, or leave --model out."
        ) from exc
    return model, int(size)


# --------------------------------------------------------------------------- the doctor


def doctor(
    dataset: ImageDataset | str | os.PathLike,
    *,
    progress: ProgressCallback | None = None,
    embeddings: np.ndarray | None = None,
    check_labels: bool = True,
    model: str = DEFAULT_MODEL,
    image_size: int = 224,
    folds: int = 5,
    seed: int = DEFAULT_SEED,
    near_distance: int = DEFAULT_NEAR_DISTANCE,
    near_similarity: float | None = None,
    label_filter: str = "predicted_neq_given",
    label_settings: LabelSettings | None = None,
    conflict_similarity: float | None = 0.97,
    thresholds: QualityThresholds | None = None,
    workers: int | None = None,
) -> DoctorReport:
    """Examine a dataset for duplicates, leakage, likely mislabels and image-quality problems.

    Args:
        dataset: an :class:`~sortsight.data.ImageDataset`, or a data path for
            :func:`~sortsight.data.load_dataset` (default split).
        progress: receives ``doctor`` (measuring) and ``features`` events.
        embeddings: ``(N, D)`` features aligned with ``dataset.items`` (skips the backbone).
        check_labels: look for likely mislabelled images (needs embeddings; computed with the
            frozen ``model`` at ``image_size`` when not given).
        model: backbone for the embeddings.
        image_size: backbone input side.
        folds: cross-validation folds for the out-of-sample probabilities.
        seed: seed of the folds.
        near_distance: perceptual-hash bits (of 64) two near duplicates may differ by.
        label_filter: cleanlab ``filter_by`` for likely mislabels: ``"predicted_neq_given"`` (every
            image whose out-of-sample best class is not its label: the most complete) or the
            stricter ``"prune_by_noise_rate"`` / ``"confident_learning"`` / ``"both"``.
        near_similarity: also count pairs with embedding cosine similarity at least this as near
            duplicates (None: perceptual hash only).
        label_settings: the probe and ranking of the label check (:class:`LabelSettings`).
        conflict_similarity: list pairs at least this alike (embedding cosine similarity) that
            carry different labels as out of place (None: do not).
        thresholds: quality-flag thresholds.
        workers: threads measuring images (default: CPU count, at most 4).

    Returns:
        A :class:`DoctorReport`.

    Raises:
        ConfigError: ``embeddings`` does not match the dataset.
        DataError: the data path cannot be loaded.
    """
    ds = dataset if isinstance(dataset, ImageDataset) else load_dataset(dataset, seed=seed)
    t = thresholds or QualityThresholds()
    ls = label_settings or LabelSettings()
    if label_filter not in _LABEL_FILTERS:
        raise ConfigError(f"Unknown label_filter '{label_filter}'; use one of {', '.join(_LABEL_FILTERS)}.")
    items = list(ds.items)
    paths = [str(item.path) for item in items]
    report = DoctorReport(
        root=str(ds.root),
        n_images=len(items),
        classes=list(ds.classes),
        settings={
            "model": model,
            "image_size": image_size,
            "folds": folds,
            "seed": seed,
            "near_distance": near_distance,
            "label_filter": label_filter,
            "near_similarity": near_similarity,
            "label_settings": asdict(ls),
            "conflict_similarity": conflict_similarity,
            "thresholds": asdict(t),
            "embeddings": "given" if embeddings is not None else "backbone",
        },
    )
    if embeddings is not None and len(embeddings) != len(items):
        raise ConfigError(
            f"embeddings has {len(embeddings)} rows but the dataset has {len(items)} images; "
            "pass one row per item."
        )
    # 1. measure every image
    measured = measure_images(items, ds.image_sizes, progress, workers)
    ok = [i for i, s in enumerate(measured) if isinstance(s, ImageStats)]
    stats = {i: measured[i] for i in ok}
    for i, s in enumerate(measured):
        if isinstance(s, str):
            report.quality.append(QualityFlag(paths[i], items[i].label, f"unreadable: {s}", 0.0, 0.0))

    # 2. quality flags; "grayscale" only matters in a set that is mostly in colour
    colour = sum(s.colourfulness >= t.grayscale for s in stats.values())  # type: ignore[union-attr]
    colour_set = bool(stats) and colour / len(stats) >= t.colour_share
    for i, s in stats.items():
        assert isinstance(s, ImageStats)
        for issue, value, limit in quality_flags(s, t, colour_set=colour_set):
            report.quality.append(QualityFlag(paths[i], items[i].label, issue, value, limit))

    # 3. likely mislabels from out-of-sample probabilities on frozen-backbone embeddings
    feats: np.ndarray | None = None  # (len(ok), D), rows aligned with ``ok``
    if check_labels or near_similarity is not None:
        if embeddings is not None:
            feats = np.asarray(embeddings, dtype=np.float32)[ok]
        else:
            from sortsight.features import extract_features

            readable = [paths[i] for i in ok]
            feats = extract_features(readable, model=model, image_size=image_size, progress=progress)
    if check_labels and feats is not None:
        labels = [items[i].label for i in ok]
        found, notes = label_issues(
            labels, feats, folds=folds, seed=seed, filter_by=label_filter, settings=ls
        )
        report.notes.extend(notes)
        for rank, (j, suggested, p_given, p_best, quality, strict) in enumerate(found, start=1):
            item = items[ok[j]]
            report.label_issues.append(
                LabelIssue(
                    rank,
                    paths[ok[j]],
                    item.label,
                    suggested,
                    round(p_given, 4),
                    round(p_best, 4),
                    item.split,
                    strict,
                    round(quality, 4),
                )
            )
        for rank, (kind, a, score, b) in enumerate(out_of_place(feats, labels, conflict_similarity), start=1):
            other, other_label = (paths[ok[b]], labels[b]) if b >= 0 else ("", "")
            report.out_of_place.append(
                OutOfPlace(rank, kind, paths[ok[a]], labels[a], score, other, other_label)
            )

    # 4. exact and near duplicates → leakage and label conflicts
    sha_first: dict[str, int] = {}
    pairs: list[tuple[int, int, int]] = []
    for k, i in enumerate(ok):
        digest = stats[i].sha256  # type: ignore[union-attr]
        if digest in sha_first:
            pairs.append((sha_first[digest], k, 0))
        else:
            sha_first[digest] = k
    pairs += near_pairs_hash([stats[i].phash for i in ok], near_distance)  # type: ignore[union-attr]
    if near_similarity is not None and feats is not None:
        pairs += near_pairs_embedding(feats, near_similarity)
    for members, worst in groups(len(ok), pairs):
        idx = [ok[m] for m in members]
        labels = [items[i].label for i in idx]
        splits = [items[i].split for i in idx]
        exact = len({stats[i].sha256 for i in idx}) == 1  # type: ignore[union-attr]
        report.duplicates.append(
            DuplicateGroup(
                kind="exact" if exact else "near",
                paths=[paths[i] for i in idx],
                labels=labels,
                splits=splits,
                leakage=len({s for s in splits if s}) > 1,
                label_conflict=len(set(labels)) > 1,
                max_distance=0 if exact else worst,
            )
        )
    report.duplicates.sort(key=lambda g: (not g.leakage, not g.label_conflict, g.kind != "exact", g.paths[0]))
    return report


# --------------------------------------------------------------------------- output files


def _ours(path: Path) -> bool:
    """True when ``path`` is missing or is a doctor output that may be replaced."""
    if not path.exists():
        return True
    try:
        if path.suffix == ".json":
            return json.loads(path.read_text(encoding="utf-8")).get("kind") == REPORT_KIND
        from PIL import Image

        with Image.open(path) as im:
            return im.info.get("Software") == REPORT_KIND
    except Exception:
        return False


def contact_sheet(report: DoctorReport, *, max_images: int = 60, thumb: int = 128) -> Any:
    """A labelled grid (PIL image) of the flagged images, most important first; None when none."""
    flagged = report.flagged()[:max_images]
    if not flagged:
        return None
    title = f"sortsight doctor: {len(report.flagged())} flagged of {report.n_images} images"
    return _sheet([(p, c) for p, c in flagged], columns=8, thumb=thumb, title=title)


def save_report(
    report: DoctorReport, out_dir: str | os.PathLike, *, max_images: int = 60
) -> dict[str, Path | None]:
    """Write ``doctor.json`` and ``doctor-contact-sheet.png`` (when anything is flagged) into ``out_dir``.

    Returns:
        ``{"json": path, "contact_sheet": path or None}``.

    Raises:
        ConfigError: a file of that name exists and was not written by the doctor.
    """
    from PIL import PngImagePlugin

    out = Path(out_dir)
    json_path, sheet_path = out / JSON_NAME, out / SHEET_NAME
    for path in (json_path, sheet_path):
        if not _ours(path):
            raise ConfigError(
                f"'{path}' exists and was not written by the doctor; choose another --doctor-out folder."
            )
    try:
        atomic_write_text(json_path, json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
        sheet = contact_sheet(report, max_images=max_images)
        if sheet is None:
            sheet_path.unlink(missing_ok=True)  # an old sheet of ours would describe another state
            return {"json": json_path, "contact_sheet": None}
        info = PngImagePlugin.PngInfo()
        info.add_text("Software", REPORT_KIND)
        atomic_write(sheet_path, lambda fh: sheet.save(fh, "PNG", pnginfo=info))
    except OSError as exc:
        raise output_error(out, exc, "--doctor-out folder") from exc
    return {"json": json_path, "contact_sheet": sheet_path}


make_module_callable(__name__, doctor)
