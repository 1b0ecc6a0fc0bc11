"""Tests for sortsight.doctor: duplicates/leakage, likely mislabels, quality flags, outputs, CLI."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageDraw, ImageFilter

from sortsight.cli import cli
from sortsight.data import load_dataset
from sortsight.doctor import DoctorReport, QualityThresholds, doctor, image_stats, save_report
from sortsight.errors import ConfigError

_HUES = [(200, 50, 50), (50, 170, 60), (50, 80, 210), (220, 190, 40)]


def textured(label_index: int, seed: int, size: int = 64) -> Image.Image:
    """A noisy image with three shapes whose colour and kind depend on the class (separable classes)."""
    rng = np.random.default_rng(seed * 7919 + label_index)
    base = np.array(_HUES[label_index % len(_HUES)], dtype=np.float32)
    arr = np.empty((size, size, 3), np.float32)
    arr[:] = rng.integers(90, 170, size=3)
    arr += rng.normal(0, 18, size=(size, size, 3))
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(3):
        x0, y0 = (int(v) for v in rng.integers(0, size // 2, 2))
        w, h = (int(v) for v in rng.integers(size // 4, size // 2, 2))
        colour = tuple(int(c) for c in np.clip(base + rng.normal(0, 20, 3), 0, 255))
        box = [x0, y0, x0 + w, y0 + h]
        if label_index % 3 == 0:
            draw.ellipse(box, fill=colour)
        elif label_index % 3 == 1:
            draw.rectangle(box, fill=colour)
        else:
            draw.polygon([(box[0], box[3]), ((box[0] + box[2]) // 2, box[1]), (box[2], box[3])], fill=colour)
    return img


def _write(root: Path, classes: list[str], per_class: int, *, start: int = 0) -> None:
    for ci, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(start, start + per_class):
            textured(ci, i).save(root / name / f"{name}_{i:03d}.png")


@pytest.fixture(autouse=True)
def _feature_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SORTSIGHT_CACHE", str(tmp_path / "cache"))


def test_duplicates_across_splits_are_all_found(tmp_path: Path) -> None:
    root = tmp_path / "data"
    classes = ["maps", "letters", "photos"]
    _write(root / "train", classes, 12)
    _write(root / "validation", classes, 4, start=100)
    _write(root / "test", classes, 4, start=200)
    injected: list[set[Path]] = []
    rng = random.Random(1)
    train = sorted((root / "train").rglob("*.png"))
    picks = rng.sample(train, 9)
    for n, src in enumerate(picks[:4]):  # exact copies into validation and test
        split = "validation" if n % 2 else "test"
        dst = root / split / src.parent.name / f"copy_{src.name}"
        shutil.copy(src, dst)
        injected.append({src, dst})
    for src in picks[4:7]:  # near copies: resized and re-encoded as JPEG
        dst = root / "validation" / src.parent.name / f"near_{src.stem}.jpg"
        Image.open(src).convert("RGB").resize((58, 58)).save(dst, quality=85)
        injected.append({src, dst})
    conflict_src = picks[7]  # the same image under another label, inside train
    other = next(c for c in classes if c != conflict_src.parent.name)
    conflict_dst = root / "train" / other / f"dup_{conflict_src.name}"
    shutil.copy(conflict_src, conflict_dst)

    ds = load_dataset(root)
    report = doctor(ds, check_labels=False)

    groups = [set(map(Path, g.paths)) for g in report.duplicates]
    for pair in injected:
        assert any(pair <= g for g in groups), pair
    assert all(g.leakage for g in report.duplicates if set(map(Path, g.paths)) in injected)
    conflict = [g for g in report.duplicates if Path(conflict_dst) in set(map(Path, g.paths))]
    assert len(conflict) == 1 and conflict[0].label_conflict and not conflict[0].leakage
    assert conflict[0].kind == "exact"
    assert len(report.duplicates) == len(injected) + 1  # no unrelated images paired up
    kinds = sorted(g.kind for g in report.duplicates)
    assert kinds == ["exact"] * 5 + ["near"] * 3
    s = report.summary()
    assert s["leakage"] == 7 and s["label_conflicts"] == 1


def test_flipped_labels_are_found(tmp_path: Path) -> None:
    from sortsight.features import extract_features

    root = tmp_path / "data"
    classes = ["a", "b", "c", "d"]
    _write(root, classes, 50)
    rng = random.Random(0)
    files = sorted(root.rglob("*.png"))
    flipped: dict[str, str] = {}
    for src in rng.sample(files, len(files) // 20):  # 5% of the labels flipped
        true = src.parent.name
        dst = root / rng.choice([c for c in classes if c != true]) / src.name
        src.rename(dst)
        flipped[str(dst)] = true

    ds = load_dataset(root)
    feats = extract_features([item.path for item in ds.items], image_size=64)
    report = doctor(ds, embeddings=feats)

    found = {issue.path: issue for issue in report.label_issues}
    hits = [p for p in found if p in flipped]
    recall, precision = len(hits) / len(flipped), len(hits) / max(1, len(found))
    assert recall >= 0.7 and precision >= 0.5, (recall, precision)
    right = sum(found[p].suggested_label == flipped[p] for p in hits)
    assert right >= 0.7 * len(hits)  # the suggestion is mostly the true label
    assert [i.rank for i in report.label_issues] == list(range(1, len(report.label_issues) + 1))
    assert report.suggested_decisions()[0]["action"] == "relabel"
    assert any(i.confident for i in report.label_issues)


def test_quality_flags(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _write(root, ["x", "y"], 10)
    noise = np.random.default_rng(3).normal(0, 4, size=(96, 96, 3))

    def flat(level: float) -> Image.Image:
        return Image.fromarray(np.clip(level + noise, 0, 255).astype(np.uint8))

    odd = {
        "dark": flat(10),
        "bright": flat(246),
        "blurry": textured(0, 500, 96).filter(ImageFilter.GaussianBlur(3)),
        "low_information": Image.new("RGB", (96, 96), (128, 128, 128)),
        "tiny": textured(0, 501, 20),
        "odd_aspect": textured(0, 502, 96).resize((240, 60)),
        "grayscale": textured(0, 503, 96).convert("L").convert("RGB"),
    }
    for name, img in odd.items():
        img.save(root / "x" / f"odd_{name}.png")

    report = doctor(load_dataset(root), check_labels=False)
    flags: dict[str, set[str]] = {}
    for flag in report.quality:
        flags.setdefault(Path(flag.path).name, set()).add(flag.issue)
    for name in odd:
        assert name in flags.get(f"odd_{name}.png", set()), (name, flags)
    assert set(flags) == {f"odd_{name}.png" for name in odd}  # the ordinary images are not flagged
    assert flags["odd_blurry.png"] == {"blurry"}
    # a grayscale set is not a problem: no grayscale flag when most images are grey
    grey = image_stats(root / "x" / "odd_grayscale.png")
    assert grey.colourfulness < QualityThresholds().grayscale


def test_report_files_and_round_trip(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _write(root, ["x", "y"], 6)
    shutil.copy(root / "x" / "x_000.png", root / "y" / "copy.png")
    Image.new("RGB", (64, 64), (3, 3, 3)).save(root / "y" / "black.png")
    ds = load_dataset(root)
    with pytest.raises(ConfigError, match="embeddings has 3 rows"):
        doctor(ds, embeddings=np.zeros((3, 8), np.float32))
    report = doctor(ds, embeddings=np.random.default_rng(0).normal(size=(len(ds), 8)).astype(np.float32))
    out = tmp_path / "out"
    files = save_report(report, out)
    data = json.loads(Path(files["json"] or "").read_text())
    assert data["kind"] == "sortsight-doctor" and data["summary"]["label_conflicts"] == 1
    assert DoctorReport.from_dict(data).to_dict() == report.to_dict()
    sheet = Image.open(files["contact_sheet"] or "")
    assert sheet.size[0] > 128 and sheet.info.get("Software") == "sortsight-doctor"
    save_report(report, out)  # our own files may be replaced
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "doctor.json").write_text("{}")
    with pytest.raises(ConfigError, match="not written by the doctor"):
        save_report(report, tmp_path / "mine")


def test_label_check_needs_two_images_per_class(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _write(root, ["x", "y"], 4)
    ds = load_dataset(root)
    small = type(ds)(
        root=ds.root, items=(*ds.by_split("train")[:3], ds.by_split("train")[-1]), classes=ds.classes
    )
    counts = {label: small.labels.count(label) for label in small.classes}
    assert min(counts.values()) == 1
    report = doctor(small, embeddings=np.ones((len(small), 4), np.float32))
    assert report.label_issues == [] and "at least two images" in report.notes[0]


def test_cli_check_doctor(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    _write(root, ["cats", "dogs"], 8)
    shutil.copy(root / "cats" / "cats_000.png", root / "dogs" / "same.png")
    runner = CliRunner()
    result = runner.invoke(cli, ["check", str(root), "--doctor"])  # the default: the frozen backbone
    assert result.exit_code == 0, result.output
    assert "Duplicates" in result.output and "label conflict" in result.output
    out_dir = tmp_path / "photos-doctor"
    assert (out_dir / "doctor.json").is_file() and (out_dir / "doctor-contact-sheet.png").is_file()
    report = json.loads((out_dir / "doctor.json").read_text())
    assert report["settings"]["embeddings"] == "backbone" and report["summary"]["label_conflicts"] == 1

    as_json = runner.invoke(
        cli, ["check", str(root), "--doctor", "--doctor-out", str(tmp_path / "d2"), "--json"]
    )
    assert as_json.exit_code == 0, as_json.output
    parsed = json.loads(as_json.output)
    assert parsed["doctor"]["report"]["summary"]["exact_duplicate_groups"] == 1
    assert parsed["doctor"]["json"] == str(tmp_path / "d2" / "doctor.json")

    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "doctor.json").write_text("my notes")
    bad = runner.invoke(cli, ["check", str(root), "--doctor", "--doctor-out", str(tmp_path / "taken")])
    assert bad.exit_code == 1 and "Error:" in bad.output and "Traceback" not in bad.output


def test_embedding_similarity_pairs_near_duplicates(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _write(root, ["x", "y"], 6)
    ds = load_dataset(root)
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(len(ds), 32)).astype(np.float32)
    feats[5] = feats[2] + 0.01 * rng.normal(size=32)  # two different files, "the same picture" to the model
    plain = doctor(ds, embeddings=feats, check_labels=False)
    assert plain.duplicates == []  # the perceptual hash alone sees no copy
    report = doctor(ds, embeddings=feats, check_labels=False, near_similarity=0.99)
    assert [sorted(g.paths) for g in report.duplicates] == [
        sorted([str(ds.items[2].path), str(ds.items[5].path)])
    ]
    assert report.duplicates[0].kind == "near"
