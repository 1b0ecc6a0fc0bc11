"""Evaluation: metrics against hand-computed values, run folders, a Trainer-style ViT folder, report.html."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_LABELS, write_class_folder, write_trainer_style_vit

from sortsight.errors import DataError
from sortsight.evaluate import Evaluation, calibration_bins, compute_metrics, evaluate
from sortsight.predict import Classifier


def _probs_for(pred: list[int], k: int, top: float = 0.7) -> np.ndarray:
    probs = np.full((len(pred), k), (1 - top) / (k - 1))
    probs[np.arange(len(pred)), pred] = top
    return probs


def test_binary_metrics_match_hand_computed_values() -> None:
    y = np.array([0, 0, 1, 1, 1])
    p1 = np.array([0.2, 0.6, 0.7, 0.4, 0.9])  # predictions 0 1 1 0 1
    out = compute_metrics(y, np.stack([1 - p1, p1], axis=1), ["neg", "pos"])
    m = out["metrics"]
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["precision"] == pytest.approx(2 / 3)  # TP 2, FP 1
    assert m["recall"] == pytest.approx(2 / 3)  # TP 2, FN 1
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["roc_auc"] == pytest.approx(5 / 6)  # 5 of 6 positive/negative pairs ranked right
    assert m["positive_label"] == "pos"
    assert out["confusion"] == [[1, 1], [1, 2]]


def test_multiclass_metrics_match_hand_computed_values() -> None:
    y = np.array([0, 0, 0, 1, 1, 2])
    pred = [0, 0, 1, 1, 2, 2]
    out = compute_metrics(y, _probs_for(pred, 3), ["a", "b", "c"])
    m = out["metrics"]
    assert m["accuracy"] == pytest.approx(4 / 6)
    # per class: a p=1 r=2/3 f1=.8 | b p=.5 r=.5 f1=.5 | c p=.5 r=1 f1=2/3 ; supports 3, 2, 1
    assert m["precision_macro"] == pytest.approx(2 / 3)
    assert m["recall_macro"] == pytest.approx((2 / 3 + 0.5 + 1) / 3)
    assert m["f1_macro"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert m["precision_weighted"] == pytest.approx(4.5 / 6)
    assert m["recall_weighted"] == pytest.approx(4 / 6)
    assert m["f1_weighted"] == pytest.approx((3 * 0.8 + 2 * 0.5 + 2 / 3) / 6)
    assert m["f1_micro"] == m["precision_micro"] == m["recall_micro"] == pytest.approx(4 / 6)
    rows = {r["label"]: r for r in out["per_class"]}
    assert (rows["a"]["precision"], rows["a"]["recall"], rows["a"]["support"]) == (
        1.0,
        pytest.approx(2 / 3),
        3,
    )
    assert rows["c"]["f1"] == pytest.approx(2 / 3)
    assert out["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_calibration_ece_by_hand() -> None:
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    cal = calibration_bins(probs, np.array([0, 1, 1, 0]), n_bins=5)
    # bins (.8,1]: conf .9 acc 1 | (.6,.8]: conf .75 acc .5 (2 images) | (.4,.6]: conf .6 acc 1
    assert cal["ece"] == pytest.approx(0.1 / 4 + 2 * 0.25 / 4 + 0.4 / 4)
    assert [b["count"] for b in cal["bins"]] == [0, 0, 1, 2, 1]


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_class_folder(
        tmp_path_factory.mktemp("eval") / "data", TINY_LABELS, per_class=5, size=64, seed=300
    )


@pytest.fixture(scope="module")
def ev(tiny_model_dir: Path, labelled: Path) -> Evaluation:
    return evaluate(tiny_model_dir, labelled, engine="eager", num_workers=0, top_losses=6)


def test_evaluate_a_folder(ev: Evaluation, tiny_model_dir: Path) -> None:
    assert ev.metrics["n_images"] == 15 and ev.split == "all" and ev.labels == list(TINY_LABELS)
    assert ev.accuracy >= 0.8  # the fixture's head was fitted on the same kind of images
    assert sum(map(sum, ev.confusion)) == 15
    assert {"f1_macro", "f1_micro", "f1_weighted", "log_loss"} <= set(ev.metrics)
    assert len(ev.top_losses) == 6
    losses = [row["loss"] for row in ev.top_losses]
    assert losses == sorted(losses, reverse=True)
    assert {"path", "true", "predicted", "probability", "loss"} <= set(ev.top_losses[0])
    expected = evaluate(Classifier.load(tiny_model_dir, engine="eager"), ev.data, num_workers=0).metrics
    assert expected == ev.metrics  # a loaded Classifier gives the same numbers


def test_auto_engine_counts_the_given_data_before_the_model_loads(
    tiny_model_dir: Path, labelled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """15 images of data given by the user (no run folder): too few to pay for a first ONNX export,
    so auto runs eager and exports nothing (the count used to be known only for a run's own split)."""
    monkeypatch.setenv("SORTSIGHT_CACHE", str(tmp_path / "cache"))  # no ONNX graph exported before
    result = evaluate(tiny_model_dir, labelled, num_workers=0)
    assert result.engine == "eager" and result.metrics["n_images"] == 15
    assert not list((tmp_path / "cache").rglob("*.onnx"))


def test_report_and_json(ev: Evaluation, tmp_path: Path) -> None:
    import html5lib

    files = ev.save(tmp_path / "out")
    saved = json.loads(files["json"].read_text())
    assert saved["metrics"] == ev.metrics and saved["confusion_matrix"] == ev.confusion
    assert saved["calibration"]["ece"] == pytest.approx(ev.calibration["ece"])
    assert files["confusion"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = files["report"].read_text(encoding="utf-8")
    doc = html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(text)  # raises on invalid HTML
    images = doc.findall(".//img")
    assert len(images) >= 2 + 6  # two figures and a thumbnail per top loss
    assert all(img.get("src", "").startswith("data:image/") for img in images)  # self-contained
    for tag, attr in (("link", "href"), ("script", "src")):
        assert not [e for e in doc.iter(tag) if e.get(attr)], "no external resources"
    assert "path,action,new_label" in text  # the decisions export for sortsight fix
    assert f"{ev.metrics['accuracy']:.4f}" in text
    assert len(doc.findall(".//div[@class='card']")) == 6


def _fake_run(root: Path, model_dir: Path, data: Path, *, test: bool) -> Path:
    run = root / "run"
    shutil.copytree(model_dir, run / "model")
    files = sorted(p.relative_to(data).as_posix() for p in data.glob("*/*.png"))
    splits = {"train": files[:5], "validation": files[5:10], "test": files[10:] if test else []}
    info = {"data": {"path": str(data), "splits": splits}}
    (run / "sortsight.json").write_text(json.dumps(info), encoding="utf-8")
    return run


def test_run_folder_uses_the_held_out_test_split(
    tiny_model_dir: Path, labelled: Path, tmp_path: Path
) -> None:
    run = _fake_run(tmp_path / "a", tiny_model_dir, labelled, test=True)
    result = evaluate(run, engine="eager", num_workers=0)
    assert result.split == "test" and result.metrics["n_images"] == 5 and not result.note
    same = evaluate(run, labelled, engine="eager", num_workers=0)  # the run's own data: still held out
    assert same.split == "test"
    no_test = _fake_run(tmp_path / "b", tiny_model_dir, labelled, test=False)
    fallback = evaluate(no_test / "model", engine="eager", num_workers=0)
    assert fallback.split == "validation" and "validation" in fallback.note


def test_errors(tiny_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a sortsight run folder"):
        evaluate(tiny_model_dir, engine="eager")
    other = write_class_folder(tmp_path / "other", ("bird", "whale"), per_class=2)
    with pytest.raises(DataError, match="whale"):
        evaluate(tiny_model_dir, other, engine="eager")


@pytest.fixture(scope="module")
def vit_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model folder as a transformers Trainer saves it (random weights; a ViT, not timm)."""
    return write_trainer_style_vit(tmp_path_factory.mktemp("vit") / "vit", ("bird", "cat"))


def test_trainer_style_vit_folder_evaluates(vit_folder: Path, tmp_path: Path) -> None:
    from transformers import pipeline

    data = write_class_folder(tmp_path / "d", ("bird", "cat"), per_class=4, size=40)
    result = evaluate(vit_folder, data, engine="eager", num_workers=0)
    assert result.metrics["n_images"] == 8 and result.labels == ["bird", "cat"]
    assert {"accuracy", "f1", "precision", "recall", "roc_auc"} <= set(result.metrics)
    result.save(tmp_path / "report")
    assert (tmp_path / "report" / "report.html").stat().st_size > 1000
    # same answers as transformers' own pipeline, and ONNX Runtime agrees with eager on this model too
    images = sorted(data.glob("*/*.png"))[:4]
    pipe = pipeline("image-classification", model=str(vit_folder))
    eager = Classifier.load(vit_folder, engine="eager")
    onnx = Classifier.load(vit_folder, engine="onnx")
    for path, theirs in zip(images, pipe([str(p) for p in images]), strict=True):
        ours = eager.predict(str(path))
        assert ours[0]["label"] == theirs[0]["label"]
        assert ours[0]["score"] == pytest.approx(theirs[0]["score"], abs=1e-4)
    a, b = eager.predict_proba(images), onnx.predict_proba(images)
    assert np.abs(a - b).max() < 1e-3


@pytest.mark.browser
def test_report_exports_decisions_csv_in_a_browser(ev: Evaluation, tmp_path: Path) -> None:
    """In Debian's chromium: mark one image relabel, one delete, download decisions.csv."""
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    report = ev.save(tmp_path / "out")["report"]
    args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
    ]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=args)
        try:
            page = browser.new_page(accept_downloads=True)
            page.goto(report.as_uri())
            cards = page.locator(".card")
            cards.nth(0).locator("select.action").select_option("relabel")
            cards.nth(0).locator("select.label").select_option("dog")
            cards.nth(1).locator("select.action").select_option("delete")
            assert page.locator("#count").text_content() == "2 decisions"
            with page.expect_download() as download:
                page.click("#download")
            saved = tmp_path / "decisions.csv"
            download.value.save_as(saved)
        finally:
            browser.close()
    lines = saved.read_text().splitlines()
    assert lines[0] == "path,action,new_label"
    assert lines[1:] == [f"{ev.top_losses[0]['path']},relabel,dog", f"{ev.top_losses[1]['path']},delete,"]
    from sortsight.fix import read_decisions

    decisions = read_decisions(saved, root=Path(ev.data))  # the format `sortsight fix` reads
    assert [d.action for d in decisions] == ["relabel", "delete"]
