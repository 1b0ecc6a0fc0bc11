"""CLI: `sortsight predict` (sort, dry run, resume after kill -9), `evaluate`, `export --onnx`."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import make_image, write_class_folder, write_trainer_style_vit
from helpers import kill_after_lines

from sortsight.cli import cli


def _run(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _user_error(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    return result.output


@pytest.fixture
def new_images(tmp_path: Path) -> Path:
    root = tmp_path / "new"
    (root / "box").mkdir(parents=True)
    for i in range(6):
        make_image(i % 3, size=64, seed=700 + i).save(root / ("box" if i % 2 else "") / f"n{i}.jpg")
    return root


def test_predict_sort_dry_run_then_real(tiny_model_dir: Path, new_images: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.csv"
    dest = tmp_path / "sorted"
    args = [
        "predict",
        str(tiny_model_dir),
        str(new_images),
        "--out",
        str(out),
        "--engine",
        "eager",
        "--workers",
        "0",
        "--sort-into",
        str(dest),
        "--threshold",
        "0.5",
    ]
    dry = _run(*args, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "Predicted 6 images" in dry.output and "Dry run" in dry.output
    assert not dest.exists()
    real = _run(*args)
    assert real.exit_code == 0, real.output
    assert "6 already done earlier" in real.output  # the dry run's predictions were kept
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6
    sorted_files = sorted(p for p in dest.rglob("*.jpg"))
    assert len(sorted_files) == 6 and all(p.parent.parent == dest for p in sorted_files)
    assert (dest / "sortsight-moves.jsonl").is_file()
    again = _run(*args)  # nothing new: no file predicted twice, nothing copied twice
    assert again.exit_code == 0 and len(list(dest.rglob("*.jpg"))) == 6


def test_predict_jsonl(
    tiny_model_dir: Path, new_images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = _run(
        "predict",
        str(tiny_model_dir),
        str(new_images / "box"),
        "--jsonl",
        "--engine",
        "eager",
        "--workers",
        "0",
        "--top-k",
        "2",
    )
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 3 and len(json.loads(lines[0])["top_k"]) == 2


def test_predict_user_errors(tiny_model_dir: Path, new_images: Path, tmp_path: Path) -> None:
    assert "not found" in _user_error("predict", str(tiny_model_dir), str(tmp_path / "missing"))
    assert "(--move) needs sort_into" in _user_error(
        "predict", str(tiny_model_dir), str(new_images), "--move"
    )
    assert "threshold" in _user_error("predict", str(tiny_model_dir), str(new_images), "--threshold", "3")
    assert "not a model folder" in _user_error("predict", str(tmp_path), str(new_images))
    result = CliRunner().invoke(cli, ["predict", str(tiny_model_dir), str(new_images), "--engine", "gpu"])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_evaluate_cli(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = write_class_folder(tmp_path / "data", ("bird", "cat", "dog"), per_class=3, size=64, seed=50)
    out = tmp_path / "eval"
    result = _run(
        "evaluate", str(tiny_model_dir), str(data), "--out", str(out), "--engine", "eager", "--workers", "0"
    )
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output and "Per class" in result.output
    assert (out / "report.html").is_file() and (out / "confusion_matrix.png").is_file()
    saved = json.loads((out / "evaluation.json").read_text())
    assert saved["metrics"]["n_images"] == 9
    as_json = _run(
        "evaluate",
        str(tiny_model_dir),
        str(data),
        "--out",
        str(out),
        "--engine",
        "eager",
        "--workers",
        "0",
        "--json",
        "--no-thumbnails",
    )
    assert json.loads(as_json.output)["metrics"] == saved["metrics"]
    assert "no held-out split" in _user_error("evaluate", str(tiny_model_dir))


def test_export_onnx_cli_on_a_transformers_folder(tmp_path: Path) -> None:
    folder = write_trainer_style_vit(tmp_path / "vit", ("a", "b"))
    result = _run("export", str(folder), "--onnx")
    assert result.exit_code == 0, result.output
    assert (folder / "model.onnx").is_file()
    from sortsight.engines import read_onnx_metadata

    labels, data_config, _, meta = read_onnx_metadata(folder / "model.onnx")
    assert labels == ["a", "b"] and data_config.input_size == 32
    assert meta["sortsight.exporter"] == "torch.export"  # a file to ship: the optimised graph
    assert "Nothing to export" in _user_error("export", str(folder))
    assert "not found" in _user_error("export", str(tmp_path / "nope"), "--onnx")


def test_predict_resumes_after_kill(tiny_model_dir: Path, tmp_path: Path) -> None:
    images = tmp_path / "many"
    images.mkdir()
    for i in range(240):
        make_image(i % 3, size=64, seed=i).save(images / f"m{i:03d}.png")
    out = tmp_path / "p.csv"
    cmd = [
        sys.executable,
        "-m",
        "sortsight",
        "predict",
        str(tiny_model_dir),
        str(images),
        "--out",
        str(out),
        "--engine",
        "eager",
        "--batch-size",
        "2",
        "--workers",
        "0",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert kill_after_lines(proc, out, 5, timeout=120), "predict finished before it could be killed"
    first = out.read_bytes().count(b"\n") - 1
    assert 0 < first < 240
    result = _run(
        "predict", str(tiny_model_dir), str(images), "--out", str(out), "--engine", "eager", "--workers", "0"
    )
    assert result.exit_code == 0, result.output
    with open(out, newline="") as fh:
        paths = [row["path"] for row in csv.DictReader(fh)]
    assert sorted(paths) == sorted(str(p) for p in images.glob("*.png"))  # all there, none twice
