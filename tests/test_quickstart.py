"""The quickstart runs the whole job on the bundled sample and never overwrites a work folder."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from sortsight.quickstart import new_workdir, run_quickstart, sample_dir


def test_sample_is_bundled_and_licensed() -> None:
    sample = sample_dir()
    assert (sample / "LICENSE.txt").read_text().count("MIT") >= 1
    classes = sorted(p.name for p in (sample / "fashion" / "train").iterdir())
    assert classes == ["bag", "pullover", "sneaker", "t-shirt", "trouser"]
    assert len(list((sample / "inbox").glob("*.png"))) == 50
    size = sum(p.stat().st_size for p in sample.rglob("*") if p.is_file())
    assert size < 3_000_000, "the repo ships at most a few MB of sample images"


def test_new_workdir_never_reuses(tmp_path: Path) -> None:
    (tmp_path / "qs").mkdir()
    (tmp_path / "qs-2").mkdir()
    assert new_workdir(tmp_path / "qs") == tmp_path / "qs-3"
    assert new_workdir(tmp_path / "fresh") == tmp_path / "fresh"


def test_quickstart_end_to_end(tmp_path: Path) -> None:
    # a smaller, faster version of the README's first command: same steps, fewer pixels and images
    result = run_quickstart(
        tmp_path / "qs",
        train_options={"image_size": 64, "strategy": "head", "max_samples": 60},
    )
    assert result.workdir == tmp_path / "qs"
    assert result.report.is_file() and "<html" in result.report.read_text()[:500].lower()
    evaluation = json.loads((result.train.run_dir / "evaluation.json").read_text())
    assert evaluation["split"] == "test" and evaluation["metrics"]["accuracy"] > 0.5
    with open(result.predictions.output, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 50
    sorted_files = [p for p in (result.workdir / "sorted").rglob("*.png")]
    assert len(sorted_files) == 50  # every inbox image copied once, into a label or unsure/ folder
    assert len(list((sample_dir() / "inbox").glob("*.png"))) == 50  # the sample itself untouched


def test_a_bad_option_is_refused_before_the_work_folder_is_made(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from sortsight.cli import cli

    result = CliRunner().invoke(cli, ["quickstart", "--out", str(tmp_path / "qs"), "--epochs", "0"])
    assert result.exit_code == 1, result.output
    expected = "Error: Invalid training option: epochs must be at least 1 and at most 1000, got 0."
    assert result.stderr.strip() == expected
    assert not (tmp_path / "qs").exists()  # it was left behind, empty, before
    help_text = CliRunner().invoke(cli, ["quickstart", "--help"], terminal_width=200).output
    assert "Fine-tuning epochs (passes over the training images).  [default: 5; 1–1000]" in help_text
