"""predictions.csv has one owner: every writer goes through PredictionWriter, every reader through
read_predictions / read_page — the local engine and the Ray engine write the same bytes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sortsight.errors import PredictError
from sortsight.predict import PredictSummary
from sortsight.predictions import (
    CSV_COLUMNS,
    PredictionWriter,
    output_path,
    read_page,
    read_predictions,
    tag_columns,
)
from sortsight.progress import Ticker

ROW = {"label": "cat", "score": 0.9, "top_k": [{"label": "cat", "score": 0.9}], "status": "ok", "error": ""}


def _write(path: Path, model: str, names: list[str], **kw: Any) -> None:
    with PredictionWriter(path, model=model, **kw) as out:
        for name in names:
            out.write({"path": name, **ROW})
        out.commit()


def test_writer_records_the_absolute_model_path_and_reads_back(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "p.csv", "runs/a", ["/x/1.jpg", "/x/2.jpg"])
    rows = list(read_predictions(tmp_path / "p.csv"))
    assert [r["path"] for r in rows] == ["/x/1.jpg", "/x/2.jpg"]
    assert rows[0]["model"] == os.path.abspath("runs/a")
    assert rows[0]["score"] == pytest.approx(0.9) and rows[0]["top_k"][0]["label"] == "cat"
    assert (tmp_path / "p.csv").read_text(encoding="utf-8").splitlines()[0] == ",".join(CSV_COLUMNS)


def test_resume_sees_done_paths_and_cuts_a_torn_line(tmp_path: Path) -> None:
    out = tmp_path / "p.csv"
    _write(out, str(tmp_path / "m"), ["/x/1.jpg"])
    with open(out, "a", encoding="utf-8") as fh:
        fh.write("/x/2.jpg,cat,0.5")  # killed mid-row
    writer = PredictionWriter(out, model=tmp_path / "m")
    assert writer.done == {"/x/1.jpg"}
    with writer:
        writer.write({"path": "/x/2.jpg", **ROW})
    assert [r["path"] for r in read_predictions(out)] == ["/x/1.jpg", "/x/2.jpg"]


def test_refuses_a_users_csv_and_another_models_rows(tmp_path: Path) -> None:
    mine = tmp_path / "mine.csv"
    mine.write_text("name,notes\na,b\n", encoding="utf-8")
    with pytest.raises(PredictError, match="not a sortsight predictions file"):
        PredictionWriter(mine, model="m")
    assert mine.read_text(encoding="utf-8") == "name,notes\na,b\n"  # untouched
    theirs = tmp_path / "p.csv"
    _write(theirs, str(tmp_path / "one"), ["/x/1.jpg"])
    with pytest.raises(PredictError, match="another model"):
        PredictionWriter(theirs, model=tmp_path / "two")


def test_jsonl_and_tag_columns_round_trip(tmp_path: Path) -> None:
    tagged = {**ROW, "tags": "sea|sky", "scores": {"sea": 0.8, "sky": 0.7}}
    with PredictionWriter(tmp_path / "t.csv", model="m", tags=["sea", "sky"]) as out:
        out.write({"path": "/x/1.jpg", **tagged})
    header = (tmp_path / "t.csv").read_text(encoding="utf-8").splitlines()[0].split(",")
    assert header == list(tag_columns(["sea", "sky"])) == [
        "path", "tags", *CSV_COLUMNS[1:], "score:sea", "score:sky"
    ]
    row = next(read_predictions(tmp_path / "t.csv"))
    assert row["tags"] == "sea|sky" and row["score:sky"] == "0.700000"
    with PredictionWriter(tmp_path / "t.jsonl", model="m") as out:
        out.write({"path": "/x/1.jpg", **ROW})
    back = next(read_predictions(tmp_path / "t.jsonl"))
    assert set(back) == set(CSV_COLUMNS) and back["top_k"] == ROW["top_k"]


def test_output_path_jsonl_rule() -> None:
    assert output_path("predictions.csv", jsonl=True) == Path("predictions.jsonl")
    assert output_path("out.jsonl", jsonl=True) == Path("out.jsonl")
    assert output_path("out.csv") == Path("out.csv")
    with pytest.raises(PredictError, match=r"\*\.jsonl"):
        output_path("mine.csv", jsonl=True)


def test_read_page_counts_all_rows_and_keeps_the_first(tmp_path: Path) -> None:
    _write(tmp_path / "p.csv", "m", [f"/x/{i}.jpg" for i in range(7)])
    rows, total = read_page(tmp_path / "p.csv", limit=3)
    assert total == 7 and [r["path"] for r in rows] == ["/x/0.jpg", "/x/1.jpg", "/x/2.jpg"]
    assert read_page(tmp_path / "missing.csv") == ([], 0)


class _FakeRayDataset:
    """What Ray Data's iter_batches yields to the driver: numpy columns per batch."""

    def __init__(self, batches: list[dict[str, np.ndarray]]) -> None:
        self.batches = batches

    def iter_batches(self, **_: Any) -> list[dict[str, np.ndarray]]:
        return self.batches


def test_ray_rows_are_the_local_engines_rows(tmp_path: Path, monkeypatch: Any) -> None:
    """The Ray driver once wrote the model path as given (relative) and failed on names that are
    not UTF-8; it now writes through the same writer as the local engine."""
    from sortsight.predict_ray import _stream_rows

    monkeypatch.chdir(tmp_path)
    odd = os.fsdecode(b"/x/caf\xe9.jpg")  # a Latin-1 file name on disk
    batch = {
        "path": np.array([odd, "/x/bad.jpg"], dtype=object),
        "label": np.array(["cat", ""], dtype=object),
        "score": np.array([0.9, float("nan")]),
        "top_k": np.array(['[{"label": "cat", "score": 0.9}]', "[]"], dtype=object),
        "error": np.array(["", "truncated"], dtype=object),
    }
    summary = PredictSummary(tmp_path / "ray.csv", 2, 0)
    writer = PredictionWriter(tmp_path / "ray.csv", model="runs/a")
    _stream_rows(_FakeRayDataset([batch]), writer, summary, threshold=0.5, ticker=Ticker(None, "predict", 2))
    rows = list(read_predictions(tmp_path / "ray.csv"))
    assert [r["path"] for r in rows] == [odd, "/x/bad.jpg"]
    assert {r["model"] for r in rows} == {os.path.abspath("runs/a")}
    assert [r["status"] for r in rows] == ["ok", "unreadable"]
    assert (summary.ok, summary.unreadable, summary.reasons) == (1, 1, {"truncated": 1})
    _write(tmp_path / "local.csv", "runs/a", [odd])
    local = (tmp_path / "local.csv").read_bytes().splitlines()
    assert (tmp_path / "ray.csv").read_bytes().splitlines()[:2] == local[:2]
