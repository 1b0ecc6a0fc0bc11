"""``pretrained: false`` (the same network from random weights) and ``compare-pretrained``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import write_class_folder

from sortsight.config import TrainConfig
from sortsight.errors import ConfigError

FAST = {"image_size": 32, "batch_size": 8, "epochs": 2, "mixed_precision": "no"}


def test_no_pretrained_trains_the_whole_network_from_random_weights(tmp_path: Path) -> None:
    from transformers import pipeline

    from sortsight.models import create_model
    from sortsight.train import train

    data = write_class_folder(tmp_path / "d", ("a", "b"), per_class=8, size=32)
    result = train(TrainConfig(data_path=str(data), out=str(tmp_path / "r"), pretrained=False, **FAST))
    record = json.loads((result.run_dir / "sortsight.json").read_text())
    assert record["config"]["pretrained"] is False
    assert record["engine"]["split"] == "scratch"
    assert record["best"]["epochs"] >= 1  # the network itself was trained, not only a head
    # and it is the model: a head on untrained features is neither kept nor mixed in
    assert record["best"]["chosen"] == "finetune" and record["candidates"][0]["wise_alpha"] == 1.0
    card = (result.model_dir / "README.md").read_text()
    assert "randomly initialised" in card and "`pretrained`: False" in card

    # the saved stem is neither the pretrained one nor left at a pretrained value
    from safetensors.torch import load_file

    saved = load_file(str(result.model_dir / "model.safetensors"))
    stem = next(v for k, v in saved.items() if k.endswith("conv_stem.weight"))
    pretrained, _ = create_model("efficientnet_lite0", ["a", "b"])
    assert not torch.allclose(stem, pretrained.conv_stem.weight.detach(), atol=1e-3)

    classify = pipeline("image-classification", model=str(result.model_dir))
    out = classify(str(next((data / "a").iterdir())))
    assert {o["label"] for o in out} == {"a", "b"}


def test_no_pretrained_refuses_a_head_only_strategy(tmp_path: Path) -> None:
    from sortsight.training.plan import make_plan

    with pytest.raises(ConfigError, match="strategy auto or finetune"):
        make_plan(TrainConfig(data_path=str(tmp_path), pretrained=False, strategy="head"))
    assert make_plan(TrainConfig(data_path=str(tmp_path), pretrained=False)).finetune == "yes"


def test_compare_pretrained_writes_both_runs_a_table_and_a_plot(tmp_path: Path) -> None:
    from sortsight.cli import cli

    data = write_class_folder(tmp_path / "d", ("a", "b"), per_class=8, size=32)
    out = tmp_path / "cmp"
    args = ["compare-pretrained", str(data), "--out", str(out), "--time-budget", "5m", "--json"]
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in FAST.items()]
    done = CliRunner().invoke(cli, [*args, *flags])
    assert done.exit_code == 0, done.output
    shown = json.loads(done.output[done.output.index("{") :])
    assert [r["weights"] for r in shown["rows"]] == ["pretrained", "random"]
    assert shown["gain"] == pytest.approx(shown["rows"][0]["accuracy"] - shown["rows"][1]["accuracy"])
    for weights in ("pretrained", "random"):
        record = json.loads((out / weights / "sortsight.json").read_text())
        assert record["config"]["pretrained"] is (weights == "pretrained")
        assert record["config"]["time_budget"] <= 300
        if weights == "random":
            assert record["best"]["chosen"] == "finetune"
    assert (out / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    page = (out / "comparison.html").read_text()
    assert "random" in page and "comparison.png" in page
    assert json.loads((out / "comparison.json").read_text())["rows"] == shown["rows"]

    again = CliRunner().invoke(cli, [*args, *flags])  # never over an earlier comparison
    assert again.exit_code == 1 and "already holds a comparison" in again.output
