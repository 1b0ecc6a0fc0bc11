"""The data doctor: duplicates and leakage, likely mislabelled images, image-quality flags.

``doctor(dataset)`` looks at every image of a dataset and returns a JSON-ready
:class:`DoctorReport`:

- **duplicates** — exact copies (same SHA-256) and near copies (perceptual hash within a few
  bits, via ``imagehash``; optionally also embedding cosine similarity). A group spanning
  train/validation/test is flagged as **leakage**; a group whose copies carry different labels
  as a **label conflict**.
- **likely mislabels** — out-of-sample class probabilities from a logistic regression
  cross-validated (``cross_val_predict``) on frozen-backbone embeddings
  (:func:`sortsight.features.extract_features`), ranked by cleanlab's ``find_label_issues``,
  each with the suggested label.
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
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from sortsight.data import TINY_SIDE, ImageDataset, load_dataset
from sortsight.errors import ConfigError, ImageError
from sortsight.fileops import atomic_write_text, sha256_file
from sortsight.images import contact_sheet as _sheet
from sortsight.images import inspect_image, open_image
from sortsight.progress import ProgressCallback, Ticker

__all__ = [
    "DoctorReport",
    "DuplicateGroup",
    "ImageStats",
    "LabelIssue",
    "QualityFlag",
    "QualityThresholds",
    "doctor",
    "image_stats",
    "quality_flags",
    "save_report",
]

REPORT_KIND = "sortsight-doctor"
JSON_NAME = "doctor.json"
SHEET_NAME = "doctor-contact-sheet.png"
_STATS_SIDE = 512  # pixel statistics are measured on the image fitted into this box


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class QualityThresholds:
    """When an image gets a quality flag (brightness/contrast on a 0–1 scale).

    Attributes:
        dark: mean brightness below this → ``dark``.
        bright: mean brightness above this → ``bright``.
        blurry: variance of the Laplacian (8-bit grey, image fitted into 512 px) below this → ``blurry``.
        low_information: grey-level entropy (bits, 0–8) below this → ``low_information``.
        tiny: shorter side below this many pixels → ``tiny`` (the same limit as ``sortsight check``).
        aspect: longer/shorter side above this → ``odd_aspect``.
        grayscale: mean channel spread (0–255) below this counts as grayscale …
        colour_share: … and is flagged only when at least this share of the set is in colour.
    """

    dark: float = 0.12
    bright: float = 0.92
    blurry: float = 20.0
    low_information: float = 2.0
    tiny: int = TINY_SIDE
    aspect: float = 3.0
    grayscale: float = 3.0
    colour_share: float = 0.8


@dataclass(frozen=True)
class ImageStats:
    """Measurements of one image (see :func:`image_stats`)."""

    width: int
    height: int
    brightness: float
    contrast: float
    entropy: float
    sharpness: float
    colourfulness: float
    sha256: str
    phash: str


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
    """A likely mislabelled image, with the label the model suggests instead."""

    rank: int
    path: str
    label: str
    suggested_label: str
    label_score: float
    suggested_score: float
    split: str = ""


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
            "quality": dict(sorted(by_issue.items())),
        }

    def flagged(self) -> list[tuple[str, str]]:
        """``(path, caption)`` for each flagged image, most important first (one entry per image)."""
        seen: dict[str, str] = {}
        for issue in self.label_issues:
            seen.setdefault(issue.path, f"{issue.label}→{issue.suggested_label}? {issue.label_score:.2f}")
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
        return cls(**kwargs)


# --------------------------------------------------------------------------- measurements


def image_stats(path: str | os.PathLike, *, size: tuple[int, int] | None = None) -> ImageStats:
    """Measure one image: size, brightness, contrast, entropy, sharpness, colour, hashes.

    Args:
        path: the image file.
        size: its upright (width, height) when already known (saves reading the header).

    Raises:
        ImageError: the image cannot be read.
    """
    import imagehash
    from PIL import Image

    if size is None:
        info = inspect_image(path, full=False)
        size = (info.width, info.height)
    img = open_image(path, draft=(_STATS_SIDE, _STATS_SIDE))
    img.thumbnail((_STATS_SIDE, _STATS_SIDE), Image.Resampling.BILINEAR)
    gray = img.convert("L")
    grey = np.asarray(gray, dtype=np.float32)  # (H, W)
    if min(grey.shape) >= 3:
        lap = grey[1:-1, :-2] + grey[1:-1, 2:] + grey[:-2, 1:-1] + grey[2:, 1:-1] - 4 * grey[1:-1, 1:-1]
        sharpness = float(lap.var())
    else:
        sharpness = 0.0
    rgb = np.asarray(img.resize((64, 64), Image.Resampling.BILINEAR), dtype=np.int16)  # (64, 64, 3)
    spread = rgb.max(axis=2) - rgb.min(axis=2)
    return ImageStats(
        width=size[0],
        height=size[1],
        brightness=round(float(grey.mean()) / 255.0, 4),
        contrast=round(float(grey.std()) / 255.0, 4),
        entropy=round(float(gray.entropy()), 4),
        sharpness=round(sharpness, 2),
        colourfulness=round(float(spread.mean()), 3),
        sha256=sha256_file(Path(path)),
        phash=str(imagehash.phash(img)),
    )


def quality_flags(
    stats: ImageStats, thresholds: QualityThresholds, *, colour_set: bool
) -> list[tuple[str, float, float]]:
    """``(issue, value, threshold)`` for each quality problem of one image."""
    t = thresholds
    out: list[tuple[str, float, float]] = []
    if stats.brightness < t.dark:
        out.append(("dark", stats.brightness, t.dark))
    if stats.brightness > t.bright:
        out.append(("bright", stats.brightness, t.bright))
    low_info = stats.entropy < t.low_information
    if low_info:
        out.append(("low_information", stats.entropy, t.low_information))
    elif stats.sharpness < t.blurry:  # a blank image is low-information, not blurry
        out.append(("blurry", stats.sharpness, t.blurry))
    short, long = sorted((stats.width, stats.height))
    if short < t.tiny:
        out.append(("tiny", float(short), float(t.tiny)))
    if short > 0 and long / short > t.aspect:
        out.append(("odd_aspect", round(long / short, 2), t.aspect))
    if colour_set and stats.colourfulness < t.grayscale:
        out.append(("grayscale", stats.colourfulness, t.grayscale))
    return out


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    table = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
    return table[x.view(np.uint8).reshape(*x.shape, 8)].sum(axis=-1)


def _near_pairs_hash(hashes: Sequence[str], max_distance: int) -> list[tuple[int, int, int]]:
    """``(i, j, bits)`` for pairs whose 64-bit perceptual hashes differ in at most ``max_distance`` bits."""
    h = np.array([int(x, 16) for x in hashes], dtype=np.uint64)
    n = len(h)
    block = max(1, 8_000_000 // max(n, 1))
    pairs: list[tuple[int, int, int]] = []
    for start in range(0, n, block):
        dist = _popcount(np.bitwise_xor(h[start : start + block, None], h[None, :]))  # (B, N)
        for i, j in zip(*np.nonzero(dist <= max_distance), strict=True):
            a = start + int(i)
            if a < int(j):
                pairs.append((a, int(j), int(dist[i, j])))
    return pairs


def _near_pairs_embedding(features: np.ndarray, min_similarity: float) -> list[tuple[int, int, int]]:
    """``(i, j, 0)`` for pairs whose embedding cosine similarity is at least ``min_similarity``."""
    x = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    block = max(1, 8_000_000 // max(len(x), 1))
    pairs: list[tuple[int, int, int]] = []
    for start in range(0, len(x), block):
        sim = x[start : start + block] @ x.T  # (B, N)
        for i, j in zip(*np.nonzero(sim >= min_similarity), strict=True):
            if start + int(i) < int(j):
                pairs.append((start + int(i), int(j), 0))
    return pairs


def _groups(n: int, pairs: Sequence[tuple[int, int, int]]) -> list[tuple[list[int], int]]:
    """Connected components (size ≥ 2) of the pair graph, with the largest distance inside."""
    parent = list(range(n))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    worst: dict[int, int] = {}
    for a, b, d in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[rb] = ra
            worst[ra] = max(worst.get(ra, 0), worst.pop(rb, 0))
        worst[ra] = max(worst.get(ra, 0), d)
    members: dict[int, list[int]] = {}
    for i in range(n):
        members.setdefault(find(i), []).append(i)
    return [(m, worst.get(root, 0)) for root, m in members.items() if len(m) > 1]


# --------------------------------------------------------------------------- label issues


def _label_issues(
    labels: Sequence[str], features: np.ndarray, *, folds: int, seed: int
) -> tuple[list[tuple[int, str, float, float]], str]:
    """``(index, suggested label, given-label prob, suggested prob)`` ranked, and a note if skipped."""
    from cleanlab.filter import find_label_issues
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Normalizer

    names = sorted(set(labels))
    if len(names) < 2:
        return [], "Label check skipped: it needs at least two classes."
    y = np.array([names.index(label) for label in labels])
    smallest = int(np.bincount(y).min())
    k = min(folds, smallest)
    if k < 2:
        return [], "Label check skipped: every class needs at least two images."
    # L2-normalised embeddings: as good as standardised ones here and ~5x faster to fit
    model = make_pipeline(Normalizer(), LogisticRegression(max_iter=1000, C=2.0))
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    probs = cross_val_predict(model, features, y, cv=cv, method="predict_proba")  # (N, C)
    ranked = find_label_issues(y, probs, return_indices_ranked_by="self_confidence")
    out = []
    for i in ranked:
        best = int(probs[i].argmax())
        out.append((int(i), names[best], float(probs[i, y[i]]), float(probs[i, best])))
    return out, ""


# --------------------------------------------------------------------------- the doctor


def doctor(
    dataset: ImageDataset | str | os.PathLike,
    *,
    progress: ProgressCallback | None = None,
    embeddings: np.ndarray | None = None,
    check_labels: bool = True,
    model: str = "efficientnet_lite0",
    image_size: int = 224,
    folds: int = 5,
    seed: int = 42,
    near_distance: int = 4,
    near_similarity: float | None = None,
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
        near_similarity: also count pairs with embedding cosine similarity at least this as near
            duplicates (None: perceptual hash only).
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
            "near_similarity": near_similarity,
            "thresholds": asdict(t),
            "embeddings": "given" if embeddings is not None else "backbone",
        },
    )
    if embeddings is not None and len(embeddings) != len(items):
        raise ConfigError(
            f"embeddings has {len(embeddings)} rows but the dataset has {len(items)} images; "
            "pass one row per item."
        )
    # 1. measure every image (decoding and hashing release the GIL, so threads help)
    ticker = Ticker(progress, "doctor", len(items))

    def measure(item: Any) -> ImageStats | str:
        try:
            return image_stats(item.path, size=ds.image_sizes.get(item.path))
        except ImageError as exc:
            return exc.reason
        finally:
            ticker.advance()

    with ThreadPoolExecutor(max_workers=workers or min(4, os.cpu_count() or 1)) as pool:
        measured = list(pool.map(measure, items))
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
    feats = embeddings
    if check_labels or near_similarity is not None:
        if feats is None:
            from sortsight.features import extract_features

            feats = extract_features(paths, model=model, image_size=image_size, progress=progress)
        feats = np.asarray(feats, dtype=np.float32)
    if check_labels and feats is not None:
        found, note = _label_issues([items[i].label for i in ok], feats[ok], folds=folds, seed=seed)
        if note:
            report.notes.append(note)
        for rank, (j, suggested, p_given, p_best) in enumerate(found, start=1):
            item = items[ok[j]]
            report.label_issues.append(
                LabelIssue(
                    rank, paths[ok[j]], item.label, suggested, round(p_given, 4), round(p_best, 4), item.split
                )
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
    pairs += _near_pairs_hash([stats[i].phash for i in ok], near_distance)  # type: ignore[union-attr]
    if near_similarity is not None and feats is not None:
        pairs += _near_pairs_embedding(feats[ok], near_similarity)
    for members, worst in _groups(len(ok), pairs):
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
    atomic_write_text(json_path, json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    sheet = contact_sheet(report, max_images=max_images)
    if sheet is None:
        sheet_path.unlink(missing_ok=True)  # an old sheet of ours would describe another state
        return {"json": json_path, "contact_sheet": None}
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", REPORT_KIND)
    fd, tmp = tempfile.mkstemp(prefix=".doctor-", suffix=".png", dir=out)
    try:
        with os.fdopen(fd, "wb") as fh:
            sheet.save(fh, "PNG", pnginfo=info)
        os.replace(tmp, sheet_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return {"json": json_path, "contact_sheet": sheet_path}
