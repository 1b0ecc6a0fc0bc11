"""Classifier (pipeline-shaped answers, parity with transformers' pipeline), streamed predict to CSV/JSONL."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_LABELS, make_image

from sortsight.errors import ModelError, PredictError
from sortsight.predict import Classifier, collect_paths, predict_paths, softmax, top_k_of
from sortsight.predictions import CSV_COLUMNS, read_predictions


@pytest.fixture(scope="module")
def eager(tiny_model_dir: Path) -> Classifier:
    return Classifier.load(tiny_model_dir, engine="eager", batch_size=4)


def _images(n: int = 6) -> list:
    return [make_image(i % 3, size=64, seed=500 + i) for i in range(n)]


def test_softmax_and_top_k() -> None:
    probs = softmax(np.array([[0.0, np.log(3.0)], [1000.0, 0.0]]))
    assert probs[0].tolist() == pytest.approx([0.25, 0.75])
    assert probs[1].tolist() == pytest.approx([1.0, 0.0])  # stable for huge logits
    top = top_k_of(np.array([0.2, 0.5, 0.3]), ["a", "b", "c"], 5)
    assert [t["label"] for t in top] == ["b", "c", "a"]  # clipped to the number of labels, best first


def test_same_shape_and_top1_as_transformers_pipeline(eager: Classifier, tiny_model_dir: Path) -> None:
    from transformers import pipeline

    images = _images()
    pipe = pipeline("image-classification", model=str(tiny_model_dir))
    theirs = pipe(images, top_k=3)
    ours = eager.predict(images, top_k=3)
    assert len(ours) == len(theirs) == 6
    for a, b in zip(ours, theirs, strict=True):
        assert [d["label"] for d in a] == [d["label"] for d in b]
        assert [d["score"] for d in a] == pytest.approx([d["score"] for d in b], abs=1e-4)
        assert set(a[0]) == {"label", "score"} and isinstance(a[0]["score"], float)
    single = eager.predict(images[0], top_k=2)  # one image -> a flat list, as the pipeline does
    assert [d["label"] for d in single] == [d["label"] for d in ours[0][:2]]
    assert [d["score"] for d in single] == pytest.approx([d["score"] for d in ours[0][:2]], abs=1e-5)
    assert eager.predict(images[0])[0]["label"] == pipe(images[0])[0]["label"]


def test_the_fitted_model_recognises_the_classes(eager: Classifier) -> None:
    answers = eager.predict(_images(12), top_k=1)
    right = sum(a[0]["label"] == TINY_LABELS[i % 3] for i, a in enumerate(answers))
    assert right >= 10, answers


def test_predict_accepts_paths_bytes_and_arrays(eager: Classifier, tmp_path: Path) -> None:
    img = make_image(2, size=64, seed=7)
    path = tmp_path / "x.PNG"
    img.save(path)
    by_path = eager.predict(str(path))
    assert eager.predict(path.read_bytes())[0]["label"] == by_path[0]["label"]
    assert eager.predict(np.asarray(img))[0]["score"] == pytest.approx(by_path[0]["score"], abs=1e-6)
    assert eager.predict([]) == []


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        Classifier.load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="not a model folder"):
        Classifier.load(tmp_path / "empty")


def test_collect_paths(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    for name in ("b.jpg", "a.PNG", "sub/c.jpeg", ".DS_Store", "notes.txt"):
        (root / name).write_bytes(b"x")
    found = collect_paths([root])
    assert [p.relative_to(root).as_posix() for p in found] == ["a.PNG", "b.jpg", "sub/c.jpeg"]
    assert all(p.is_absolute() for p in found)
    listing = tmp_path / "list.csv"
    listing.write_text("path,other\nimgs/b.jpg,1\nimgs/missing.jpg,2\n", encoding="utf-8")
    assert collect_paths([listing, root / "b.jpg"]) == [root / "b.jpg", tmp_path / "imgs" / "missing.jpg"]
    assert collect_paths([root], exclude=[root / "sub"]) == found[:2]
    with pytest.raises(PredictError, match="not found"):
        collect_paths([tmp_path / "nothing"])
    (tmp_path / "void").mkdir()
    with pytest.raises(PredictError, match="No images found"):
        collect_paths([tmp_path / "void"])


def _folder(tmp_path: Path, n: int = 9) -> list[Path]:
    root = tmp_path / "new"
    root.mkdir()
    paths = []
    for i in range(n):
        p = root / f"img_{i:02d}.jpg"
        make_image(i % 3, size=80, seed=900 + i).save(p, quality=92)
        paths.append(p)
    broken = root / "zz_broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return [*paths, broken]


def test_predict_paths_writes_csv_and_resumes(eager: Classifier, tmp_path: Path) -> None:
    paths = collect_paths(_folder(tmp_path))
    out = tmp_path / "predictions.csv"
    events = []
    summary = predict_paths(
        eager, paths[:4], out, top_k=2, threshold=0.0, num_workers=0, progress=events.append
    )
    assert summary.ok == 4 and events[-1].step == 4 and events[-1].total == 4
    with open(out, "a", encoding="utf-8") as fh:  # a process killed in the middle of a line
        fh.write(f"{paths[4]},bird,0.9")
    summary = predict_paths(eager, paths, out, top_k=2, threshold=0.0, num_workers=1)
    assert summary.already_done == 4 and summary.predicted == 6
    with open(out, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert [r["path"] for r in rows] == [str(p) for p in paths]  # each once, in order
    broken = rows[-1]
    assert broken["status"] == "unreadable" and broken["label"] == "" and broken["error"]
    good = rows[:-1]
    assert [r["label"] for r in good] == [a[0]["label"] for a in eager.predict(paths[:-1], top_k=1)]
    for r in good:
        top = json.loads(r["top_k"])
        assert (
            len(top) == 2
            and top[0]["label"] == r["label"]
            and float(r["score"]) == pytest.approx(top[0]["score"])
        )
        assert r["model"] == os.path.abspath(eager.source) and r["status"] == "ok"


def test_threshold_marks_unsure_and_jsonl(eager: Classifier, tmp_path: Path) -> None:
    paths = collect_paths(_folder(tmp_path, 3))
    out = tmp_path / "p.jsonl"
    summary = predict_paths(eager, paths, out, top_k=1, threshold=1.0, num_workers=0)
    assert summary.unsure == 3 and summary.unreadable == 1
    rows = list(read_predictions(out))
    assert [r["status"] for r in rows] == ["unsure", "unsure", "unsure", "unreadable"]
    assert json.loads(out.read_text().splitlines()[0])["top_k"][0]["label"] == rows[0]["label"]


def test_predictions_of_another_model_are_not_mixed(eager: Classifier, tmp_path: Path) -> None:
    paths = collect_paths(_folder(tmp_path, 2))
    out = tmp_path / "p.csv"
    out.write_text(",".join(CSV_COLUMNS) + f"\n{paths[0]},x,0.5,[],ok,other-model,\n", encoding="utf-8")
    with pytest.raises(PredictError, match="another model"):
        predict_paths(eager, paths, out, num_workers=0)
