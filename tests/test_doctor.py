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


# ------------------------------------------------------------------ doctor v2: probe, ranking, out of place


def test_out_of_sample_probs_never_see_their_own_fold() -> None:
    """The K-fold leak test: no image's label (nor any label of its fold) takes part in predicting it."""
    from sortsight._doctor_labels import (
        LabelSettings,
        _fit_predict,
        _normalise,
        assign_folds,
        out_of_sample_probs,
    )

    rng = np.random.default_rng(0)
    n, classes = 60, 3
    y = np.repeat(np.arange(classes), n // classes)
    # one private dimension per image: a model that saw an image's own label could memorise it
    feats = np.hstack([np.eye(n), 0.01 * rng.normal(size=(n, 4))]).astype(np.float32)
    fold_of, k = assign_folds(y, 5, seed=1)
    assert k == 5 and sorted(np.bincount(fold_of)) == [12] * 5
    settings = LabelSettings()
    probs = out_of_sample_probs(feats, y, fold_of, classes, settings)
    everything = np.arange(n)
    in_sample = _fit_predict(_normalise(feats), y, everything, everything, classes, settings)
    assert in_sample[everything, y].mean() > 0.6  # a model that saw the labels memorises them …
    assert probs[everything, y].mean() < 0.45  # … held out, the given label gets about chance (1/3)
    scrambled = y.copy()
    in_fold = fold_of == 2
    scrambled[in_fold] = (y[in_fold] + 1) % classes  # every label of fold 2 changed
    again = out_of_sample_probs(feats, scrambled, fold_of, classes, settings)
    np.testing.assert_allclose(again[in_fold], probs[in_fold])  # fold 2's predictions do not move
    assert not np.allclose(again[~in_fold], probs[~in_fold])  # the others learnt from the changed labels


def _separable(y: np.ndarray, seed: int) -> np.ndarray:
    """Embeddings of well separated classes ``y`` (one cluster per class)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(int(y.max()) + 1, 16)) * 3
    return (centres[y] + rng.normal(size=(len(y), 16))).astype(np.float32)


def _classes_of(ds: object) -> np.ndarray:
    names = sorted(ds.classes)  # type: ignore[attr-defined]
    return np.array([names.index(item.label) for item in ds.items])  # type: ignore[attr-defined]


def test_planted_flips_rank_first_and_ranking_is_deterministic(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _write(root, ["a", "b", "c"], 20)
    ds = load_dataset(root)
    names = sorted(ds.classes)
    true = _classes_of(ds)
    feats = _separable(true, seed=3)
    flipped = [int(i) for i in np.random.default_rng(5).choice(len(ds), 4, replace=False)]
    items = list(ds.items)
    for i in flipped:  # the label changes, the picture (embedding) does not
        items[i] = type(items[i])(path=items[i].path, label=names[(true[i] + 1) % 3], split=items[i].split)
    noisy = type(ds)(root=ds.root, items=tuple(items), classes=ds.classes)
    report = doctor(noisy, embeddings=feats)
    top = [i.path for i in report.label_issues[:6]]
    assert {str(items[i].path) for i in flipped} <= set(top), (top, flipped)
    by_path = {i.path: i for i in report.label_issues}
    assert all(by_path[str(items[i].path)].suggested_label == names[true[i]] for i in flipped)
    scores = [i.score for i in report.label_issues]
    assert scores == sorted(scores) and all(0.0 <= s <= 1.0 for s in scores)
    again = doctor(noisy, embeddings=feats)
    assert again.to_dict()["label_issues"] == report.to_dict()["label_issues"]  # same seed, same ranking


def test_out_of_place_outlier_and_near_conflict(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _write(root, ["a", "b"], 15)
    ds = load_dataset(root)
    y = _classes_of(ds)
    feats = _separable(y, seed=4)
    feats[3] = 40.0 * np.eye(16)[7]  # an image unlike all others
    j = int(np.flatnonzero(y != y[10])[0])
    feats[j] = feats[10] + 1e-3  # the same picture under the other label
    report = doctor(ds, embeddings=feats)
    outliers = [o for o in report.out_of_place if o.kind == "outlier"]
    assert outliers and outliers[0].path == str(ds.items[3].path)
    conflicts = [o for o in report.out_of_place if o.kind == "near_conflict"]
    assert len(conflicts) == 1
    assert {conflicts[0].path, conflicts[0].other_path} == {str(ds.items[10].path), str(ds.items[j].path)}
    assert [o.rank for o in report.out_of_place] == list(range(1, len(report.out_of_place) + 1))
    assert report.summary()["out_of_place"] == len(report.out_of_place)
    assert DoctorReport.from_dict(report.to_dict()).to_dict() == report.to_dict()


def test_small_classes_use_fewer_folds_and_one_class_cannot_be_judged(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _write(root, ["x", "y"], 8)
    for i in range(5):  # 'y' keeps 3 images: fewer than 5 folds
        (root / "y" / f"y_{i:03d}.png").unlink()
    ds = load_dataset(root)
    report = doctor(ds, embeddings=_separable(_classes_of(ds), 0))
    assert any("3 folds instead of 5" in n and "'y' (3)" in n for n in report.notes), report.notes
    shutil.rmtree(root / "y")
    from sortsight.data import scan  # load_dataset refuses a single class; the doctor still looks at it

    one = doctor(scan(root), embeddings=np.ones((8, 4), np.float32))
    assert one.label_issues == [] and "same label ('x')" in one.notes[0]


def test_check_doctor_model_uses_the_runs_backbone(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    _write(root, ["cats", "dogs"], 6)
    run = tmp_path / "run"
    run.mkdir()
    best = {"model": "efficientnet_lite0", "image_size": 64}
    (run / "sortsight.json").write_text(json.dumps({"best": best}))
    runner = CliRunner()
    result = runner.invoke(cli, ["check", str(root), "--doctor", "--model", str(run), "--json"])
    assert result.exit_code == 0, result.output
    settings = json.loads(result.output)["doctor"]["report"]["settings"]
    assert (settings["model"], settings["image_size"]) == ("efficientnet_lite0", 64)
    (tmp_path / "notarun").mkdir()
    bad = runner.invoke(cli, ["check", str(root), "--doctor", "--model", str(tmp_path / "notarun")])
    assert bad.exit_code == 1 and "not a sortsight run folder" in bad.output and "Traceback" not in bad.output
    alone = runner.invoke(cli, ["check", str(root), "--model", str(run)])
    assert alone.exit_code == 1 and "add --doctor" in alone.output
