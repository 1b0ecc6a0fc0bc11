"""`sortsight check`: the table, --json, --grid, and every data error as one line (no traceback)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from conftest import make_image
from PIL import Image

from sortsight.cli import cli


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, ["check", *args])


def assert_user_error(result: Result, *needles: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_table_with_skipped_and_warnings(make_folder: Callable[..., Path]) -> None:
    root = make_folder(classes=("cats", "dogs"), per_class=10)
    (root / "cats" / "broken.jpg").write_text("nope")
    make_image(0, size=12).save(root / "dogs" / "tiny.png")
    result = run(str(root), "--test-split", "0.2")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "21 images, 2 classes" in out
    assert "│ cats  │     6 │          2 │    2 │    10 │" in out
    assert "│ dogs  │     7 │          2 │    2 │    11 │" in out
    assert "cats/broken.jpg" in out and "not an image" in out
    assert "Warning:" in out and "smaller than 32 px" in out


def test_json_summary(make_folder: Callable[..., Path]) -> None:
    root = make_folder(classes=("a", "b"), per_class=5)
    result = run(str(root), "--json", "--valid-split", "0.4", "--seed", "1")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["counts"] == {
        "a": {"train": 3, "validation": 2, "total": 5},
        "b": {"train": 3, "validation": 2, "total": 5},
    }
    assert summary["split"] == {"valid_split": 0.4, "test_split": 0.0, "seed": 1}
    assert summary["warnings"][0]["kind"] == "few-images"


def test_grid_written_and_own_grid_replaced(make_folder: Callable[..., Path], tmp_path: Path) -> None:
    root = make_folder(classes=("a", "b"), per_class=4)
    grid = tmp_path / "out" / "grid.png"
    assert run(str(root), "--grid", str(grid)).exit_code == 0
    with Image.open(grid) as img:
        assert img.format == "PNG" and img.info.get("Software") == "sortsight" and img.height > 2 * 128
    assert run(str(root), "--grid", str(grid)).exit_code == 0  # ours: replaced
    assert not list(grid.parent.glob(".grid-*"))  # no temp files left
    foreign = tmp_path / "mine.png"
    Image.new("RGB", (4, 4)).save(foreign)
    before = foreign.read_bytes()
    assert_user_error(run(str(root), "--grid", str(foreign)), "already exists")
    assert foreign.read_bytes() == before
    assert_user_error(run(str(root), "--grid", str(tmp_path / "g.jpg")), "must end in .png")


def test_labels_file_and_columns(tmp_path: Path) -> None:
    (tmp_path / "imgs").mkdir()
    lines = []
    for i in range(6):
        make_image(i % 2, seed=i).save(tmp_path / "imgs" / f"{i}.png")
        lines.append(f"imgs/{i}.png,{'x' if i % 2 else 'y'}")
    (tmp_path / "labels.csv").write_text("path,kind\n" + "\n".join(lines) + "\n")
    result = run(str(tmp_path / "labels.csv"), "--target-column", "kind", "--valid-split", "0.34")
    assert result.exit_code == 0, result.output
    assert "6 images, 2 classes" in result.stdout
    assert_user_error(run(str(tmp_path / "labels.csv"), "--target-column", "knd"), "Did you mean 'kind'?")
    assert_user_error(run(str(tmp_path / "labels.csv")), "No label column", "--target-column")
    (tmp_path / "missing.csv").write_text("image,target\nimgs/0.png,a\nimgs/nope.png,b\n")
    assert_user_error(run(str(tmp_path / "missing.csv")), "1 file(s) that do not exist", "imgs/nope.png")


@pytest.mark.parametrize(
    "case",
    [
        "no-images",
        "loose",
        "one-class",
        "too-small",
        "missing-path",
        "archive",
        "single-image",
        "bad-fraction",
        "unreadable",
    ],
)
def test_data_errors(case: str, tmp_path: Path, make_folder: Callable[..., Path]) -> None:
    root = tmp_path / "d"
    args: list[str] = []
    if case == "no-images":
        (root / "sub").mkdir(parents=True)
        needles = ["No images found", ".jpg", "class subfolders"]
    elif case == "loose":
        root.mkdir()
        make_image(0).save(root / "a.png")
        needles = ["no class subfolders"]
    elif case == "one-class":
        root = make_folder(classes=("only",), per_class=3)
        needles = ["Only one class found ('only'"]
    elif case == "too-small":
        root = make_folder(classes=("a", "b"), per_class=1)
        needles = ["has only 1 image, too few to split"]
    elif case == "archive":
        root = tmp_path / "photos.zip"
        root.write_bytes(b"PK\x05\x06" + b"\x00" * 18)
        needles = ["is an archive; unpack it first"]
    elif case == "single-image":
        root = tmp_path / "one.jpg"
        make_image(0).save(root)
        needles = ["is a file but not a labels file"]
    elif case == "missing-path":
        needles = ["does not exist"]
    elif case == "bad-fraction":
        root = make_folder(per_class=3)
        args = ["--valid-split", "2"]
        needles = ["valid_split must be at least 0.01 and at most 0.9, got 2"]  # as train says it
    else:
        (root / "a").mkdir(parents=True)
        (root / "a" / "x.jpg").write_bytes(b"")
        needles = ["could be read (1 empty file)"]
    assert_user_error(run(str(root), *args), *needles)


def test_help_mentions_layouts() -> None:
    result = run("--help")
    assert result.exit_code == 0 and "--grid" in result.output and "labels file" in result.output


def test_parquet_dataset_with_column_mapping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pa = pytest.importorskip("pyarrow")
    import io

    import pyarrow.parquet as pq

    monkeypatch.setenv("SORTSIGHT_CACHE", str(tmp_path / "cache"))

    def png(i: int) -> bytes:
        buf = io.BytesIO()
        make_image(i % 2, seed=i).save(buf, "PNG")
        return buf.getvalue()

    table = pa.table({"img": [png(i) for i in range(6)], "kind": ["even", "odd"] * 3})
    pq.write_table(table, tmp_path / "train.parquet")
    result = run(
        str(tmp_path / "train.parquet"),
        "--image-column",
        "img",
        "--target-column",
        "kind",
        "--json",
        "--valid-split",
        "0.34",
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["source"] == "parquet" and summary["classes"] == ["even", "odd"]
    assert summary["totals"] == {"train": 4, "validation": 2, "total": 6}
    assert_user_error(run(str(tmp_path / "train.parquet"), "--image-column", "imgs"), "Did you mean 'img'?")
