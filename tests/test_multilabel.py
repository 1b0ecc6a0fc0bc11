"""Multi-label tagging: labels files, stratification, the tag head, thresholds, pipeline parity, sort."""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from helpers import kill_after_lines
from PIL import Image, ImageDraw

from sortsight._stratify import iterative_split
from sortsight.errors import DataError
from sortsight.tagdata import MAX_TAGS, detect_task, load_tag_dataset, scan_tags
from sortsight.tagmetrics import best_f1_thresholds, tag_metrics
from sortsight.tagsort import TAGS_FILE, sort_into_tags

TAGS = ("blue", "green", "red")


def _tagged_image(tags: set[str], seed: int, size: int = 64) -> Image.Image:
    """Red disk top-left, blue square top-right, green bar at the bottom — each only when tagged."""
    rng = random.Random(seed)
    img = Image.new("RGB", (size, size), tuple(rng.randint(0, 50) for _ in range(3)))  # type: ignore[arg-type]
    d = ImageDraw.Draw(img)
    j = rng.randint(-3, 3)
    if "red" in tags:
        d.ellipse([4 + j, 4, 28 + j, 28], fill=(220, 40, 40))
    if "blue" in tags:
        d.rectangle([36, 4 + j, 60, 28 + j], fill=(40, 70, 220))
    if "green" in tags:
        d.rectangle([6, 40 + j, 58, 56 + j], fill=(40, 180, 60))
    return img


def _write_tagged(root: Path, n: int, *, seed: int = 0) -> list[tuple[str, list[str]]]:
    (root / "img").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        tags = sorted(t for t in TAGS if rng.random() < 0.5)
        _tagged_image(set(tags), seed * 1000 + i).save(root / "img" / f"{i:03d}.png")
        rows.append((f"img/{i:03d}.png", tags))
    return rows


def _csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


# --------------------------------------------------------------------------- reading


def test_labels_file_layouts_round_trip(tmp_path: Path) -> None:
    rows = _write_tagged(tmp_path, 8)
    want = {f"img/{i:03d}.png": tuple(tags) for i, (_, tags) in enumerate(rows)}
    piped = _csv(tmp_path / "piped.csv", ["image", "labels"], [[p, "|".join(t)] for p, t in rows])
    semi = _csv(tmp_path / "semi.csv", ["file", "tags"], [[p, " ; ".join(t)] for p, t in rows])
    onehot = _csv(
        tmp_path / "onehot.csv",
        ["image", *TAGS],
        [[p, *("1" if x in t else "0" for x in TAGS)] for p, t in rows],
    )
    long = _csv(tmp_path / "long.csv", ["image", "label"], [[p, x] for p, t in rows for x in t or [""]])
    jsonl = tmp_path / "list.jsonl"
    jsonl.write_text("".join(json.dumps({"image": p, "labels": t}) + "\n" for p, t in rows), encoding="utf-8")
    for source in (piped, semi, onehot, long, jsonl):
        ds = scan_tags(source, verify=False)
        got = {ds.relative(it.path): it.tags for it in ds.items}
        assert got == want, source.name
        assert detect_task(source) == "multi_label"
    # sorting with --tags-only writes a labels file that reads back to the same tags
    preds = [{"path": str(tmp_path / p), "tags": "|".join(t), "status": "ok"} for p, t in rows]
    sort_into_tags(preds, tmp_path / "out", tags_only=True)
    back = scan_tags(tmp_path / "out" / TAGS_FILE, verify=False)
    assert {it.path: it.tags for it in back.items} == {tmp_path / p: tuple(t) for p, t in rows}


def test_single_label_file_and_folders_stay_single_label(tmp_path: Path, image_folder: Path) -> None:
    _write_tagged(tmp_path, 4)
    single = _csv(tmp_path / "one.csv", ["image", "label"], [[f"img/{i:03d}.png", "a b"] for i in range(4)])
    assert detect_task(single) == "single_label"  # a space is not a separator unless asked for
    assert scan_tags(single, separator=" ", verify=False).tags == ("a", "b")
    assert detect_task(image_folder) == "single_label"


def test_bad_tag_cells_are_clear_errors(tmp_path: Path) -> None:
    _write_tagged(tmp_path, 3)
    mixed = _csv(tmp_path / "m.csv", ["image", "labels"], [["img/000.png", "a|b"], ["img/001.png", "a;c"]])
    with pytest.raises(DataError, match="mixes tag separators"):
        scan_tags(mixed, verify=False)
    many = _csv(
        tmp_path / "many.csv", ["image", "labels"], [["img/000.png", f"t{i}"] for i in range(MAX_TAGS + 1)]
    )
    with pytest.raises(DataError, match=f"at most {MAX_TAGS}"):
        scan_tags(many, verify=False)


def test_empty_cells_mean_no_tag_and_are_counted(tmp_path: Path) -> None:
    from sortsight.tagdata import summarize_tags

    rows = _write_tagged(tmp_path, 12)
    cells = [[p, "" if i % 4 == 0 else "|".join([*t, "photo"])] for i, (p, t) in enumerate(rows)]
    ds = load_tag_dataset(_csv(tmp_path / "l.csv", ["image", "labels"], cells), verify=False)
    assert sum(1 for it in ds.items if not it.tags) == 3  # rows 0, 4, 8 are kept, with no tag
    assert "photo" in ds.tags  # on every tagged image, but the empty rows lack it: informative
    summary = summarize_tags(ds)
    assert summary["no_tag"]["total"] == 3
    assert any(w["kind"] == "no-tag" for w in summary["warnings"])
    assert summary["cooccurrence"][0]["images"] >= summary["cooccurrence"][-1]["images"]


def test_tag_on_every_image_or_on_one_is_excluded_with_reason(tmp_path: Path) -> None:
    rows = _write_tagged(tmp_path, 10)
    cells = [[p, "|".join([*t, "scan"] + (["rare"] if i == 3 else []))] for i, (p, t) in enumerate(rows)]
    ds = load_tag_dataset(_csv(tmp_path / "l.csv", ["image", "labels"], cells), verify=False)
    reasons = dict(ds.excluded)
    assert "every image" in reasons["scan"] and "1 image" in reasons["rare"]
    assert "scan" not in ds.tags and "rare" not in ds.tags


def test_hf_dataset_with_sequence_classlabel(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    rows = _write_tagged(tmp_path, 6)
    features = datasets.Features(
        {"image": datasets.Image(), "labels": datasets.Sequence(datasets.ClassLabel(names=list(TAGS)))}
    )
    table = {
        "image": [str(tmp_path / p) for p, _ in rows],
        "labels": [[TAGS.index(x) for x in t] for _, t in rows],
    }
    datasets.Dataset.from_dict(table, features=features).save_to_disk(str(tmp_path / "hf"))
    assert detect_task(tmp_path / "hf") == "multi_label"
    ds = scan_tags(tmp_path / "hf", verify=False)
    assert sorted(it.tags for it in ds.items) == sorted(tuple(t) for _, t in rows)


# --------------------------------------------------------------------------- splitting and metrics


def test_iterative_stratification_puts_every_tag_in_validation() -> None:
    rng = np.random.default_rng(3)
    y = rng.random((120, 12)) < np.linspace(0.4, 0.02, 12)  # common to very rare tags
    y[:2, -1] = True  # a tag on exactly two images
    for seed in (0, 1, 2):
        split = np.array(iterative_split(y, {"validation": 0.2}, seed=seed))
        assert split.tolist() == iterative_split(y, {"validation": 0.2}, seed=seed)  # deterministic
        for t in range(y.shape[1]):
            if y[:, t].sum() >= 2:
                assert y[split == "validation", t].any() and y[split == "train", t].any(), (seed, t)
        assert 0.15 <= (split == "validation").mean() <= 0.27


def test_thresholds_maximise_f1_and_metrics_count_errors() -> None:
    y = np.array([[1, 0], [1, 1], [0, 1], [0, 0], [1, 0]], dtype=bool)
    s = np.array([[0.9, 0.1], [0.6, 0.7], [0.2, 0.65], [0.3, 0.2], [0.4, 0.3]])
    cuts = best_f1_thresholds(y, s)
    assert 0.3 < cuts[0] < 0.4 and 0.3 < cuts[1] < 0.65
    result = tag_metrics(y, s, np.array([0.5, 0.5]), ["a", "b"])
    a = result["per_tag"][0]
    assert (a["tp"], a["fp"], a["fn"]) == (2, 0, 1)
    assert result["metrics"]["hamming_loss"] == pytest.approx(1 / 10)


def test_tag_head_is_scikit_learns_logistic_regression() -> None:
    import torch
    from sklearn.linear_model import LogisticRegression

    from sortsight.taghead import _fit

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 20)).astype(np.float32)
    y = (x[:, :2] + rng.normal(size=(200, 2)) > 0.3).astype(np.float32)
    for balanced in (False, True):
        w, b = _fit(torch.from_numpy(x), torch.from_numpy(y), 0.1, balanced)
        for t in range(2):
            ref = LogisticRegression(
                C=0.1, tol=1e-8, max_iter=5000, class_weight="balanced" if balanced else None
            )
            ref.fit(x, y[:, t])
            assert np.abs(ref.coef_[0] - w[t].numpy()).max() < 2e-3
            assert abs(ref.intercept_[0] - b[t].item()) < 2e-3


# --------------------------------------------------------------------------- a trained tagger


@pytest.fixture(scope="module")
def tagger(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A run trained by ``train`` on 40 generated tagged images at 64 px: ``(run folder, data)``."""
    from sortsight.config import TrainConfig
    from sortsight.train import train

    root = tmp_path_factory.mktemp("tagged")
    rows = _write_tagged(root, 40, seed=1)
    labels = _csv(root / "labels.csv", ["image", "labels"], [[p, "|".join(t)] for p, t in rows])
    result = train(
        TrainConfig(data_path=str(labels), out=str(root / "run"), image_size=64, model="efficientnet_lite0")
    )
    return result.run_dir, root


def test_trained_tagger_saves_and_uses_its_thresholds(tagger: tuple[Path, Path], tmp_path: Path) -> None:
    from sortsight.predict import Classifier, predict_paths
    from sortsight.predictions import read_predictions

    run, data = tagger
    info = json.loads((run / "sortsight.json").read_text(encoding="utf-8"))
    assert info["task"] == "multi_label" and set(info["thresholds"]) == set(TAGS)
    assert info["metrics"]["f1_micro"] > 0.5  # three clear shapes: well above chance
    meta = json.loads((run / "model" / "sortsight_model.json").read_text(encoding="utf-8"))
    assert (
        json.loads((run / "model" / "config.json").read_text())["problem_type"]
        == "multi_label_classification"
    )
    clf = Classifier.load(run, engine="eager")
    assert clf.task == "multi_label" and clf.thresholds == pytest.approx(meta["thresholds"])
    assert "thresholds" in (run / "model" / "README.md").read_text(encoding="utf-8")
    paths = sorted((data / "img").glob("*.png"))[:10]
    out = tmp_path / "p.csv"
    predict_paths(clf, paths, out, num_workers=0)
    rows = list(read_predictions(out))
    for row in rows:
        scores = {t: float(row[f"score:{t}"]) for t in clf.labels}
        over = {t for t, cut in zip(clf.labels, clf.thresholds, strict=True) if scores[t] >= cut}
        assert set(filter(None, row["tags"].split("|"))) == over
        assert row["status"] == ("ok" if over else "unsure")
    predict_paths(clf, paths, out, num_workers=0, threshold=0.999)  # resumed: nothing new
    assert len(list(read_predictions(out))) == 10


def test_auto_keeps_the_head_without_a_time_budget(tagger: tuple[Path, Path]) -> None:
    run, _ = tagger
    info = json.loads((run / "sortsight.json").read_text(encoding="utf-8"))
    assert info["best"]["stopped"] == "no_time_budget" and info["best"]["chosen"] == "head"
    assert "out of fold" in info["metrics_note"]
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    assert [e["metrics"]["stage"] for e in events if e["phase"] == "model_ready"] == ["final"]


@pytest.mark.parametrize("settings", [{"strategy": "finetune"}, {"strategy": "auto", "time_budget": "5m"}])
def test_finetuning_a_tagger_keeps_the_better_model_by_validation_map(
    tmp_path: Path, settings: dict[str, str]
) -> None:
    from sortsight.config import TrainConfig
    from sortsight.predict import Classifier
    from sortsight.train import train

    rows = _write_tagged(tmp_path, 40, seed=2)
    labels = _csv(tmp_path / "labels.csv", ["image", "labels"], [[p, "|".join(t)] for p, t in rows])
    run = tmp_path / "run"
    events: list = []
    result = train(
        TrainConfig(data_path=str(labels), out=str(run), image_size=64, epochs=3, **settings),
        progress=events.append,
    )
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in lines if r["phase"] == "epoch"]
    assert any(r["phase"] == "head" and "val_map" in r for r in lines)
    assert 1 <= len(epochs) <= 3 and all("val_map" in r and "train_loss" in r for r in epochs)
    info = json.loads((run / "sortsight.json").read_text(encoding="utf-8"))
    best = info["best"]
    assert best["epochs"] == len(epochs) and best["stopped"] in ("completed", "no_gain", "early_stopping")
    # which WiSE-FT mix is kept: tests/test_training.py's test of choose_wise
    assert [e.phase for e in events if e.phase == "model_ready"] == ["model_ready"] * (
        1 if best["chosen"] == "head" else 2
    )
    clf = Classifier.load(run, engine="eager")
    if best["chosen"] != "head":
        assert (
            0 < best["wise_alpha"] <= 1 and "thresholds were chosen on these images" in info["metrics_note"]
        )
        valid = [tmp_path / p for p in info["data"]["splits"]["validation"]]
        scores = clf.predict_proba([str(p) for p in valid])
        truth = np.array(
            [[t in dict(rows)[p] for t in clf.labels] for p in info["data"]["splits"]["validation"]]
        )
        assert clf.thresholds == pytest.approx(best_f1_thresholds(truth, scores).tolist(), abs=1e-3)
    else:
        assert best["wise_alpha"] == 0
    assert result.model_dir == run / "model" and clf.task == "multi_label"


def test_pipeline_gives_sortsights_sigmoid_scores(tagger: tuple[Path, Path]) -> None:
    from transformers import pipeline

    from sortsight.predict import Classifier

    run, data = tagger
    paths = sorted((data / "img").glob("*.png"))[:4]
    clf = Classifier.load(run, engine="eager")
    ours = clf.predict_proba([str(p) for p in paths])
    pipe = pipeline("image-classification", model=str(run / "model"), function_to_apply="sigmoid", top_k=None)
    for row, got in zip(ours, pipe([str(p) for p in paths]), strict=True):
        theirs = {d["label"]: d["score"] for d in got}
        assert [theirs[t] for t in clf.labels] == pytest.approx(row.tolist(), abs=1e-4)
    default = pipeline("image-classification", model=str(run / "model"), top_k=None)(str(paths[0]))
    assert sum(d["score"] for d in default) != pytest.approx(1.0, abs=1e-3)  # problem_type → sigmoid


_SORT_SCRIPT = """
import sys
from sortsight.tagsort import sort_into_tags
sort_into_tags(sys.argv[1], sys.argv[2])
"""


def test_tag_sort_copies_into_each_tag_folder_and_resumes_after_kill(tmp_path: Path) -> None:
    imgs = []
    (tmp_path / "in").mkdir()
    for i in range(240):
        p = tmp_path / "in" / f"img_{i:04d}.jpg"
        p.write_bytes(b"\xff\xd8" + i.to_bytes(4, "big") + os.urandom(20_000))
        imgs.append(p)
    tag_sets = [[t for j, t in enumerate(TAGS) if (i >> j) & 1] for i in range(len(imgs))]
    preds = _csv(
        tmp_path / "p.csv",
        ["path", "tags", "label", "score", "top_k", "status", "model", "error"],
        [
            [str(p), "|".join(t), "", "", "[]", "ok" if t else "unsure", "m", ""]
            for p, t in zip(imgs, tag_sets, strict=True)
        ],
    )
    dest = tmp_path / "out"
    log = dest / "sortsight-moves.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", _SORT_SCRIPT, str(preds), str(dest)])
    assert kill_after_lines(proc, log, 20), "the sort finished before it could be killed"
    summary = sort_into_tags(preds, dest)
    want = Counter({t: sum(t in s for s in tag_sets) for t in TAGS}) + Counter(
        unsure=sum(not s for s in tag_sets)
    )
    got = Counter(p.parent.name for p in dest.rglob("*.jpg"))
    assert got == want  # a copy per tag, none twice, none lost
    assert not list(dest.rglob(".*.part-*"))
    assert all(p.exists() for p in imgs)  # originals untouched
    assert summary.counts.get("copy", 0) + summary.counts.get("done", 0) + summary.counts.get(
        "identical", 0
    ) == sum(want.values())


def test_auto_engine_counts_a_given_tags_table_before_the_model_loads(
    tagger: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """40 tagged images given by the user: too few to pay for a first ONNX export, so auto runs
    eager and exports nothing (a tags table used to give no count, so auto exported)."""
    from sortsight.evaluate import evaluate

    run, data = tagger
    # the same images in a JSON-lines table (a layout the single-label reader refuses), so not
    # the run's own split
    with open(data / "labels.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    table = data / "again.jsonl"
    lines = [
        json.dumps({"image": r["image"], "labels": r["labels"].split("|") if r["labels"] else []})
        for r in rows
    ]
    table.write_text("\n".join(lines) + "\n", encoding="utf-8")
    monkeypatch.setenv("SORTSIGHT_CACHE", str(tmp_path / "cache"))  # no ONNX graph exported before
    import sortsight.tagdata

    reads: list[str] = []
    scan = sortsight.tagdata.scan_tags
    monkeypatch.setattr(sortsight.tagdata, "scan_tags", lambda d, **kw: reads.append(str(d)) or scan(d, **kw))
    ev = evaluate(run, table, num_workers=0)
    assert ev.engine == "eager" and ev.metrics["n_images"] == 40
    assert not list((tmp_path / "cache").rglob("*.onnx"))
    assert reads == [str(table)]  # read once: the count before the load is also what is evaluated


def test_evaluate_a_tagger_reports_per_tag_counts(tagger: tuple[Path, Path], tmp_path: Path) -> None:
    from sortsight.evaluate import evaluate

    run, _ = tagger
    ev = evaluate(run, engine="eager", num_workers=0)
    assert ev.split == "validation" and ev.note  # no test split: says so
    assert {"f1_micro", "f1_macro", "f1_samples", "map", "hamming_loss"} <= set(ev.metrics)
    for row in ev.per_class:
        assert row["tp"] + row["fn"] == row["support"]
    wrong = [p["wrong"] for p in ev.worst]
    assert wrong == sorted(wrong, reverse=True)
    files = ev.save(tmp_path / "eval", thumbnails=False)
    assert "Images with the most wrong tags" in files["report"].read_text(encoding="utf-8")
    assert json.loads(files["json"].read_text(encoding="utf-8"))["task"] == "multi_label"


@pytest.mark.slow
def test_onnx_export_has_sigmoid_scores_and_thresholds(tagger: tuple[Path, Path], tmp_path: Path) -> None:
    import onnxruntime as ort

    from sortsight.export import export_onnx
    from sortsight.predict import Classifier

    run, data = tagger
    onnx_file = export_onnx(run, tmp_path / "tags.onnx", optimised=False)  # the quick graph: same outputs
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()][-1] == "scores"
    x = np.random.default_rng(0).normal(size=(2, 3, 64, 64)).astype(np.float32)
    logits, scores = session.run(None, {session.get_inputs()[0].name: x})
    assert scores == pytest.approx(1 / (1 + np.exp(-logits)), abs=1e-5)
    eager, onnx = Classifier.load(run, engine="eager"), Classifier.load(onnx_file)
    assert onnx.task == "multi_label" and onnx.thresholds == pytest.approx(eager.thresholds)
    images = [str(p) for p in sorted((data / "img").glob("*.png"))[:3]]
    assert onnx.predict_proba(images) == pytest.approx(eager.predict_proba(images), abs=1e-4)


def test_tag_issues_find_flipped_tags() -> None:
    from sortsight.taghead import tag_issues

    rng = np.random.default_rng(0)
    y = rng.random((40, 3)) < 0.4
    oof = np.clip(y * 0.8 + rng.random((40, 3)) * 0.2, 0, 1)  # confident out-of-fold scores
    y[0, 0], y[1, 2] = ~y[0, 0], ~y[1, 2]  # two tags flipped
    issues = tag_issues([f"p{i}" for i in range(40)], y, oof, np.full(3, 0.5), ("a", "b", "c"))
    found = {(i["path"], t) for i in issues for t in i["likely_missing"] + i["likely_wrong"]}
    assert found == {("p0", "a"), ("p1", "c")}


def test_check_doctor_on_tagged_data_flags_dropped_tags_and_duplicate_conflicts(tmp_path: Path) -> None:
    """``check --doctor`` on a labels file: a tag dropped from clear images is flagged as likely
    missing, and a copy of an image carrying other tags is a duplicate with different tag sets."""
    import shutil

    rows = _write_tagged(tmp_path, 60, seed=3)
    dropped = [i for i, (_, tags) in enumerate(rows) if "red" in tags][:2]
    cells = [
        [p, "|".join(t for t in tags if not (i in dropped and t == "red"))]
        for i, (p, tags) in enumerate(rows)
    ]
    shutil.copy(tmp_path / rows[5][0], tmp_path / "img" / "copy.png")
    cells.append(["img/copy.png", "|".join(sorted(set(TAGS) - set(rows[5][1]))) or "red"])
    labels = _csv(tmp_path / "labels.csv", ["image", "labels"], cells)
    out = tmp_path / "doc"
    proc = subprocess.run(
        [sys.executable, "-m", "sortsight", "check", str(labels), "--doctor", "--doctor-out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Likely missing or wrong tags" in proc.stdout and "different tags" in proc.stdout
    report = json.loads((out / "doctor.json").read_text(encoding="utf-8"))
    assert report["task"] == "multi_label"
    missing = {Path(i["path"]).name for i in report["tag_issues"] if "red" in i["likely_missing"]}
    assert {Path(rows[i][0]).name for i in dropped} <= missing
    conflict = [g for g in report["duplicates"] if g["tag_conflict"]]
    pair = {"copy.png", Path(rows[5][0]).name}
    assert any(pair <= {Path(p).name for p in g["paths"]} for g in conflict)
    # nothing of the data was touched
    assert labels.read_text(encoding="utf-8").count("\n") == len(cells) + 1


def test_space_of_a_tagger_shows_every_tag_with_its_threshold(
    tagger: tuple[Path, Path], tmp_path: Path
) -> None:
    """The exported Space's own ``classify`` (pipeline, no sortsight) gives sortsight's sigmoid
    scores for every tag, marked over/under each tag's own threshold."""
    import runpy

    from sortsight.predict import Classifier
    from sortsight.space import export_space

    run, data = tagger
    space = export_space(run, tmp_path / "space")
    app = runpy.run_path(str(space / "app.py"))  # builds the interface; launch() only under __main__
    clf = Classifier.load(run, engine="eager")
    assert app["THRESHOLDS"] == pytest.approx(dict(zip(clf.labels, clf.thresholds, strict=True)))
    image = sorted((data / "img").glob("*.png"))[0]
    with Image.open(image) as im:
        shown = app["classify"](im.copy())
    scores = clf.predict_proba([str(image)])[0]
    assert len(shown) == len(clf.labels)
    for tag, score, cut in zip(clf.labels, scores, clf.thresholds, strict=True):
        key = f"{tag} {'✓' if score >= cut else '✗'} (threshold {cut:.2f})"
        assert shown[key] == pytest.approx(float(score), abs=1e-4)


def test_lr_find_on_tagged_data_uses_the_tag_head_and_binary_cross_entropy(tmp_path: Path) -> None:
    from sortsight.config import TrainConfig
    from sortsight.training.lr_find import lr_find

    rows = _write_tagged(tmp_path, 24, seed=3)
    labels = _csv(tmp_path / "labels.csv", ["image", "labels"], [[p, "|".join(t)] for p, t in rows])
    config = TrainConfig(data_path=str(labels), task="multi_label", image_size=64, batch_size=8)
    found = lr_find(config, steps=12, out=tmp_path / "plots")
    assert len(found.lrs) == len(found.losses) >= 6 and all(np.isfinite(found.losses))
    assert found.lrs == sorted(found.lrs) and found.lrs[0] == pytest.approx(1e-7)
    assert min(found.lrs) <= found.suggested <= max(found.lrs)
    assert found.losses[0] < 0.6  # it starts from the fitted tag head (an untrained one: ln 2 = 0.69)
    assert Path(found.plot).is_file() and (tmp_path / "plots" / "lr_find.json").is_file()


def test_mixed_separators_are_named_not_read_as_classes(tmp_path: Path) -> None:
    """'a|b' in one cell and 'c;a' in another is several tags per image with two separators: the
    error names the mix (it used to be read as single-label classes 'a|b' and 'c;a')."""
    from click.testing import CliRunner

    from sortsight.cli import cli

    (tmp_path / "img").mkdir()
    for n in "abcd":
        Image.new("RGB", (20, 20)).save(tmp_path / "img" / f"{n}.png")
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "image,labels\nimg/a.png,people|text\nimg/b.png,text\nimg/c.png,\nimg/d.png,product;people\n",
        encoding="utf-8",
    )
    assert detect_task(labels) == "multi_label"
    result = CliRunner().invoke(cli, ["check", str(labels)])
    assert result.exit_code == 1 and "mixes tag separators" in result.output
    assert "Traceback" not in result.output


def test_tags_only_offers_no_undo_for_a_log_it_did_not_write(
    tagger: tuple[Path, Path], tmp_path: Path
) -> None:
    """--tags-only copies nothing, so its next line must not send the user to `sortsight undo`."""
    from click.testing import CliRunner

    from sortsight.cli import cli

    run, data = tagger
    dest = tmp_path / "tagged"
    args = [
        "predict",
        str(run),
        str(data / "img"),
        "--out",
        str(tmp_path / "p.csv"),
        "--sort-into",
        str(dest),
    ]
    result = CliRunner().invoke(cli, [*args, "--tags-only"])
    assert result.exit_code == 0, result.output
    assert (dest / TAGS_FILE).is_file() and "Next:" in result.output
    assert "sortsight undo" not in result.output


def test_compare_pretrained_refuses_tagged_data_before_training(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from sortsight.cli import cli

    rows = _write_tagged(tmp_path, 12)
    labels = _csv(tmp_path / "labels.csv", ["image", "labels"], [[p, "|".join(t)] for p, t in rows])
    result = CliRunner().invoke(cli, ["compare-pretrained", str(labels), "--out", str(tmp_path / "cmp")])
    assert result.exit_code == 1 and "needs single-label data" in result.output
    assert not (tmp_path / "cmp" / "pretrained").exists()


def test_a_taggers_estimate_is_measured_then_remembered_without_torch(tmp_path: Path) -> None:
    """The first estimate of a tagger builds the model and times it; the next one answers from the
    speeds this machine remembers (the new images' decoding timed), without importing torch."""
    import json
    import os
    import subprocess
    import sys

    rows = _write_tagged(tmp_path, 60, seed=2)
    labels = _csv(tmp_path / "labels.csv", ["image", "labels"], [[p, "|".join(t)] for p, t in rows])
    code = (
        "import json, sys\n"
        "from sortsight.config import TrainConfig\n"
        "from sortsight.estimate import estimate_training\n"
        f"e = estimate_training(TrainConfig(data_path={str(labels)!r}, image_size=64, strategy='finetune'))\n"
        "print(json.dumps({'torch': 'torch' in sys.modules, **e.to_dict()}))\n"
    )
    env = {**os.environ, "SORTSIGHT_CACHE": str(tmp_path / "cache")}

    def estimate() -> dict:
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        )
        return dict(json.loads(done.stdout.splitlines()[-1]))

    first, second = estimate(), estimate()
    assert first["torch"] and first["candidates"][0]["speeds"] == "measured"
    assert not second["torch"], "a tagger's estimate from remembered speeds must not import torch"
    assert second["candidates"][0]["speeds"] == "remembered"
    assert second["candidates"][0]["engine"] == first["candidates"][0]["engine"]
    assert second["finetune_seconds"] > 0 and second["seconds"] > second["first_model_seconds"]
    assert (second["n_train"], second["n_valid"]) == (first["n_train"], first["n_valid"])
