"""Issue 15 item 3: file names that are not UTF-8 on disk (old archive disks) work end to end:
check, the dataset fingerprint, predict's CSV, sorting, the moves log and undo."""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import make_image, write_class_folder

from sortsight.cli import cli
from sortsight.data import load_dataset, summarize
from sortsight.fileops import ActionLog
from sortsight.predictions import read_predictions

pytestmark = pytest.mark.skipif(
    sys.platform == "darwin" or os.fsencode("\udce9") != b"\xe9", reason="needs a bytes file system (Linux)"
)

LATIN1 = os.fsdecode(b"caf\xe9 r\xe9sum\xe9.png")  # Latin-1 bytes: a lone surrogate per byte in Python


def test_check_and_fingerprint_take_a_latin1_name(tmp_path: Path) -> None:
    data = write_class_folder(tmp_path / "data", per_class=3, size=24)
    make_image(0, size=24, seed=9).save(data / "cats" / LATIN1)
    ds = load_dataset(data)
    assert any(it.path.name == LATIN1 for it in ds.items)
    assert len(ds.fingerprint()) == 16
    summary = summarize(ds)
    assert summary["totals"]["total"] == 7
    result = CliRunner().invoke(cli, ["check", str(data), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["totals"]["total"] == 7
    table = CliRunner().invoke(cli, ["check", str(data)])
    assert table.exit_code == 0 and "Traceback" not in table.output


def test_predict_sort_move_and_undo_a_latin1_name(tiny_model_dir: Path, tmp_path: Path) -> None:
    new = tmp_path / "new"
    new.mkdir()
    odd = new / LATIN1
    make_image(1, size=64, seed=5).save(odd)
    make_image(0, size=64, seed=6).save(new / "plain.png")
    original = odd.read_bytes()
    out, dest = tmp_path / "p.csv", tmp_path / "sorted"
    args = ["predict", str(tiny_model_dir), str(new), "-o", str(out), "--engine", "eager", "--workers", "0"]
    result = CliRunner().invoke(cli, [*args, "--sort-into", str(dest), "--move"])
    assert result.exit_code == 0, result.output
    rows = list(read_predictions(out))
    assert {Path(r["path"]).name for r in rows} == {LATIN1, "plain.png"}  # read back exactly
    assert all(r["status"] == "ok" for r in rows)
    with open(out, "rb") as fh:
        assert os.fsencode(str(odd)) in fh.read()  # the CSV holds the name's own bytes
    with open(out, encoding="utf-8", errors="surrogateescape", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 2
    assert not odd.exists()
    moved = [p for p in dest.rglob("*") if p.name == LATIN1]
    assert len(moved) == 1 and moved[0].read_bytes() == original
    entries = ActionLog(dest / "sortsight-moves.jsonl").entries()
    assert {e["source"] for e in entries} == {str(odd), str(new / "plain.png")}
    (dest / "sortsight-moves.jsonl").read_text(encoding="utf-8")  # the log itself is valid UTF-8
    undo = CliRunner().invoke(cli, ["undo", str(dest / "sortsight-moves.jsonl")])
    assert undo.exit_code == 0, undo.output
    assert odd.read_bytes() == original and (new / "plain.png").is_file()
