"""A measured time estimate before training, from the API and the CLI."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from sortsight.cli import cli
from sortsight.config import TrainConfig
from sortsight.estimate import estimate_training


def test_estimate_scales_with_epochs(image_folder: Path) -> None:
    base = {"data_path": str(image_folder), "image_size": 32}
    head_only = estimate_training(TrainConfig(**base, strategy="head"))
    short = estimate_training(TrainConfig(**base, strategy="finetune", epochs=1))
    longer = estimate_training(TrainConfig(**base, strategy="finetune", epochs=20))
    auto = estimate_training(TrainConfig(**base, epochs=20))
    assert (head_only.n_train, head_only.n_valid) == (16, 4)
    assert head_only.finetune_seconds == 0 and head_only.seconds > 0
    # 20 epochs against 1 (both also pay the step timing and the passes after the epochs)
    assert longer.finetune_seconds > short.finetune_seconds > 0
    assert longer.seconds >= longer.finetune_seconds
    # auto fine-tunes only where it pays: the plan is the head; fine-tuning is what it may add
    assert auto.finetune_seconds > 0 and auto.seconds < longer.seconds
    assert head_only.candidates[0]["model"] == "efficientnet_lite0"


def test_cli_estimate_only_trains_nothing(image_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["train", str(image_folder), "--image-size", "32", "--out", str(out), "--estimate-only", "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["seconds"] > 0 and body["human"].startswith("about ")
    assert not out.exists()


def test_the_time_to_read_the_data_counts_and_raises_autos_cap(
    image_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run pays for reading the data, and auto caps its fine-tuning at twice the time since the
    run began (reading included): the estimate counts both (it was short by that much)."""
    import sortsight.training.plan as plan

    base = {"data_path": str(image_folder), "image_size": 32, "epochs": 1000}
    estimate_training(TrainConfig(**base))  # the first one exports the model to ONNX (cached)
    quick = estimate_training(TrainConfig(**base))
    real_load = plan.load_data

    def slow_load(*args: object, **kwargs: object) -> object:
        time.sleep(3.0)
        return real_load(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(plan, "load_data", slow_load)
    slow = estimate_training(TrainConfig(**base))
    assert slow.seconds - quick.seconds > 2.0
    assert slow.first_model_seconds - quick.first_model_seconds > 2.0
    # 1000 epochs never fit: the fine-tuning figure is the cap, which grows with the time spent
    assert slow.finetune_seconds - quick.finetune_seconds > 2 * 2.0


def test_start_up_counts_in_the_first_model_and_the_plan(image_folder: Path) -> None:
    """The command's own start-up (interpreter, imports) is paid by the run too: the CLI passes it."""
    config = TrainConfig(data_path=str(image_folder), image_size=32, strategy="head")
    late = estimate_training(config, startup_seconds=1000.0)
    assert late.first_model_seconds >= 1000.0 and late.seconds >= 1000.0
    assert estimate_training(config).seconds < 1000.0


def test_a_sample_that_misses_classes_is_still_timed(make_folder: Callable[..., Path]) -> None:
    """The timed sample is the first images of the training list; when those hold fewer classes
    than the data (a folder sorted by class), the head is timed on the classes they hold."""
    data = make_folder(classes=("bird", "cat", "dog"), per_class=40, size=24)
    found = estimate_training(TrainConfig(data_path=str(data), image_size=32, strategy="head"))
    assert found.n_train + found.n_valid == 120 and found.seconds > 0
