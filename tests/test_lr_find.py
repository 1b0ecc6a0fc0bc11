"""``lr_find`` / ``sortsight train --lr-find``: a finite suggestion and a PNG on a tiny set."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import write_class_folder
from PIL import Image

from sortsight.cli import cli
from sortsight.config import TrainConfig
from sortsight.errors import ConfigError
from sortsight.training.lr_find import lr_find, suggest


def test_suggest_finds_the_valley_and_the_steepest_fall() -> None:
    lrs = [10 ** (-6 + i * 0.1) for i in range(50)]
    # flat, then a long fall between 1e-4 and 1e-2, then divergence
    losses = [
        2.0 if lr < 1e-4 else (2.0 - math.log10(lr / 1e-4) if lr < 1e-2 else 0.0 + 50 * (lr - 1e-2))
        for lr in lrs
    ]
    valley, steep = suggest(lrs, losses)
    assert 1e-4 <= valley < 1e-2 and 1e-4 <= steep <= 1e-2


def test_lr_find_on_a_tiny_set(tmp_path: Path) -> None:
    data = write_class_folder(tmp_path / "data", per_class=8, size=32)
    config = TrainConfig(data_path=str(data), out=str(tmp_path / "run"), image_size=64, batch_size=8)
    found = lr_find(config, steps=30, out=tmp_path / "plots")
    assert 5 <= len(found.lrs) <= 30 and all(math.isfinite(v) for v in found.losses)
    assert found.lrs == sorted(found.lrs) and found.lrs[0] == pytest.approx(1e-7)
    assert 1e-7 <= found.suggested <= 10 and math.isfinite(found.steep)
    with Image.open(found.plot) as img:
        assert img.format == "PNG" and img.size[0] > 300
    saved = json.loads((tmp_path / "plots" / "lr_find.json").read_text(encoding="utf-8"))
    assert saved["suggested"] == found.suggested
    again = lr_find(config, steps=10, out=tmp_path / "plots")  # never replaces the first plot
    assert again.plot.endswith("lr_find-2.png") and Path(found.plot).is_file()
    assert not (tmp_path / "run").exists()  # nothing trained, no run folder
    with pytest.raises(ConfigError, match="0 < start < end"):
        lr_find(config, start_lr=1.0, end_lr=0.1)


def test_cli_lr_find(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = write_class_folder(tmp_path / "data", per_class=8, size=32)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        cli, ["train", str(data), "--lr-find", "--image-size", "64", "--batch-size", "8"]
    )
    assert result.exit_code == 0, result.output
    assert "Suggested learning rate:" in result.output and "--lr " in result.output
    assert (tmp_path / "lr_find.png").is_file()


def test_cli_lr_find_json_is_what_the_studio_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sortsight.studio.routes_train import _json_object

    data = write_class_folder(tmp_path / "data", per_class=8, size=32)
    monkeypatch.chdir(tmp_path)
    args = ["train", str(data), "--lr-find", "--json", "--image-size", "64", "--batch-size", "8"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    found = _json_object(result.stdout)
    assert 0 < found["suggested"] < 10 and Path(found["plot"]).read_bytes().startswith(b"\x89PNG")
