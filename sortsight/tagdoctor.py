"""The data doctor for tagged (multi-label) data: likely missing or wrong tags, and duplicates
whose tag sets differ.

Tags: the out-of-fold scores of the one-vs-rest head (:func:`sortsight.taghead.fit_tag_head`,
fitted on the frozen features of every readable image) ranked by cleanlab's multi-label
``find_label_issues`` (:func:`sortsight.taghead.tag_issues`): no image's own tags take part in
scoring it. Duplicates: the single-label doctor's SHA-256 and perceptual-hash pairs
(:mod:`sortsight._doctor_checks`), reported with each copy's tags.

Written as ``doctor.json`` (``"task": "multi_label"``) into the doctor folder, like the
single-label report; the data is only read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from sortsight._doctor_checks import ImageStats, groups, measure_images, near_pairs_hash
from sortsight._outputs import ensure_output_dir
from sortsight.config import DEFAULT_MODEL, DEFAULT_NEAR_DISTANCE, DEFAULT_SEED
from sortsight.doctor import JSON_NAME, REPORT_KIND, _ours
from sortsight.errors import ConfigError
from sortsight.fileops import atomic_write_text, output_error
from sortsight.progress import ProgressCallback
from sortsight.tagdata import TagDataset

__all__ = ["MIN_IMAGES", "save_tag_report", "tag_doctor"]

#: fewer labelled images than this: the out-of-fold head has too little to judge tags by
MIN_IMAGES = 10


def tag_doctor(
    ds: TagDataset,
    *,
    model: str = DEFAULT_MODEL,
    image_size: int = 224,
    seed: int = DEFAULT_SEED,
    near_distance: int = DEFAULT_NEAR_DISTANCE,
    progress: ProgressCallback | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """Examine tagged data; return the report as a JSON-ready dict.

    Keys: ``root``, ``n_images``, ``tags``, ``tag_issues`` (worst first: path, tags,
    ``likely_missing``, ``likely_wrong``, scores), ``duplicates`` (groups with paths, tag sets
    and ``tag_conflict``; conflicting groups first), ``unreadable`` and ``notes``.
    """
    items = list(ds.items)
    measured = measure_images(items, ds.image_sizes, progress, workers)
    ok = [i for i, s in enumerate(measured) if isinstance(s, ImageStats)]
    stats = {i: s for i, s in enumerate(measured) if isinstance(s, ImageStats)}
    report: dict[str, Any] = {
        "kind": REPORT_KIND,
        "task": "multi_label",
        "root": str(ds.root),
        "n_images": len(items),
        "tags": list(ds.tags),
        "settings": {"model": model, "image_size": image_size, "seed": seed, "near_distance": near_distance},
        "unreadable": [
            {"path": str(items[i].path), "reason": s} for i, s in enumerate(measured) if isinstance(s, str)
        ],
        "tag_issues": [],
        "duplicates": [],
        "notes": [],
    }

    # duplicates: the same picture under different tag sets is a labelling decision to make once
    sha_first: dict[str, int] = {}
    pairs: list[tuple[int, int, int]] = []
    for k, i in enumerate(ok):
        if stats[i].sha256 in sha_first:
            pairs.append((sha_first[stats[i].sha256], k, 0))
        else:
            sha_first[stats[i].sha256] = k
    pairs += near_pairs_hash([stats[i].phash for i in ok], near_distance)
    for members, worst in groups(len(ok), pairs):
        idx = [ok[m] for m in members]
        tag_sets = [sorted(items[i].tags) for i in idx]
        report["duplicates"].append(
            {
                "kind": "exact" if len({stats[i].sha256 for i in idx}) == 1 else "near",
                "paths": [str(items[i].path) for i in idx],
                "tags": tag_sets,
                "splits": [items[i].split for i in idx],
                "tag_conflict": len({tuple(t) for t in tag_sets}) > 1,
                "max_distance": worst,
            }
        )
    report["duplicates"].sort(key=lambda g: (not g["tag_conflict"], g["kind"] != "exact", g["paths"][0]))

    # tags: out-of-fold scores of the head on frozen features
    if len(ok) < MIN_IMAGES or not ds.tags:
        report["notes"].append(
            f"Only {len(ok)} readable image(s) with {len(ds.tags)} learnable tag(s): too few to judge "
            f"tags by (the doctor needs at least {MIN_IMAGES}). Add images, then run it again."
        )
        return report
    from sortsight.features import extract_features
    from sortsight.taghead import fit_tag_head, tag_issues

    x = extract_features([items[i].path for i in ok], model=model, image_size=image_size, progress=progress)
    y = ds.matrix([items[i] for i in ok])
    head = fit_tag_head(np.asarray(x, dtype=np.float32), y, seed=seed)
    assert head.oof is not None
    report["tag_issues"] = [
        {"rank": rank, **issue}
        for rank, issue in enumerate(
            tag_issues([str(items[i].path) for i in ok], y, head.oof, head.thresholds, ds.tags), start=1
        )
    ]
    report["thresholds"] = {t: round(float(c), 4) for t, c in zip(ds.tags, head.thresholds, strict=True)}
    return report


def save_tag_report(report: dict[str, Any], out_dir: str | os.PathLike) -> Path:
    """Write ``doctor.json`` into ``out_dir`` (created); return its path.

    Raises:
        ConfigError: a ``doctor.json`` there was not written by the doctor.
    """
    folder = ensure_output_dir(out_dir, what="--doctor-out")
    path = folder / JSON_NAME
    if not _ours(path):
        raise ConfigError(
            f"'{path}' exists and was not written by the doctor; choose another --doctor-out folder."
        )
    try:
        atomic_write_text(path, json.dumps(report, indent=2, ensure_ascii=False))
    except OSError as exc:
        raise output_error(folder, exc, "--doctor-out folder") from exc
    return path
