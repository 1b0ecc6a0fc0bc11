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
    """The run pays for reading the data, and auto caps its fine-tuning at FINETUNE_SHARE x the
    time since the run began (reading included): the estimate counts both (it was short by that)."""
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
    assert slow.finetune_seconds - quick.finetune_seconds > plan.FINETUNE_SHARE * 2.0


def test_start_up_counts_in_the_first_model_and_the_plan(image_folder: Path) -> None:
    """The command's own start-up (interpreter, imports) is paid by the run too: the CLI passes it."""
    config = TrainConfig(data_path=str(image_folder), image_size=32, strategy="head")
    late = estimate_training(config, startup_seconds=1000.0)
    assert late.first_model_seconds >= 1000.0 and late.seconds >= 1000.0
    assert estimate_training(config).seconds < 1000.0


def test_a_folder_sorted_by_class_is_timed_on_every_class(make_folder: Callable[..., Path]) -> None:
    """A training list comes grouped by class; the timed sample is spread over it, so the head
    fit is timed on the classes it holds (consecutive images held one: no head fit was timed)."""
    data = make_folder(classes=("bird", "cat", "dog"), per_class=40, size=24)
    found = estimate_training(TrainConfig(data_path=str(data), image_size=32, strategy="head"))
    assert found.n_train + found.n_valid == 120 and found.seconds > 0


def test_the_timed_sample_spans_the_classes_and_not_the_warm_up() -> None:
    from sortsight.estimate import _SAMPLE, _WARM, _samples

    paths = [f"class{k}/{i}.png" for k in range(10) for i in range(100)]  # grouped, as loaded
    warm, sample = ([paths[i] for i in part] for part in _samples(len(paths)))
    assert (len(warm), len(sample)) == (_WARM, _SAMPLE)
    assert not set(warm) & set(sample)
    assert {p.split("/")[0] for p in sample} == {f"class{k}" for k in range(10)}
    few = paths[:5]  # fewer images than the warm-up: the same few are timed
    assert _samples(len(few)) == ([0, 1, 2, 3, 4], [0, 1, 2, 3, 4])


def test_the_head_fits_with_the_blas_on_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """The BLAS's threads contending with torch's made each lbfgs iteration milliseconds slower
    (the head fit 4-5x slower on the benchmark sets): fit_head holds the BLAS to one thread."""
    import numpy as np
    import torch
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_info

    from sortsight.training.head import fit_head

    seen: list[int] = []
    real_fit = LogisticRegression.fit

    def spying_fit(self: LogisticRegression, *args: object, **kwargs: object) -> LogisticRegression:
        seen.extend(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")
        return real_fit(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(LogisticRegression, "fit", spying_fit)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(40, 8)).astype(np.float32))
    y = torch.arange(40) % 2
    x[y == 1] += 2.0
    fit, scores = fit_head(x, y, x, y, n_classes=2, seed=0)
    assert seen and set(seen) == {1}
    assert scores["accuracy"] > 0.9 and fit.weight.shape == (2, 8)


def test_an_estimate_keeps_the_head_time_a_run_measured(
    image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run times its head on all its images; the estimate's, extrapolated from a sample, must
    not replace it (the estimate used to overwrite the run's figure with its own)."""
    from sortsight.training import speeds

    monkeypatch.setenv("SORTSIGHT_CACHE", str(tmp_path / "cache"))
    config = TrainConfig(data_path=str(image_folder), image_size=32, strategy="head")
    key = speeds.speed_key("efficientnet_lite0", 32, config)
    speeds.remember({"head_seconds_per_item": 7.0}, key, source="run")  # incomplete: measured anew
    found = estimate_training(config)
    assert (speeds.recall(key) or {})["head_seconds_per_item"] == 7.0
    assert found.seconds > 7.0 * (found.n_train + found.n_valid)  # and the estimate counts it


def test_the_tag_heads_time_is_extended_by_rows_not_per_image(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fit that costs a fixed 0.1 s plus 0.1 ms a row: 48 sample rows scaled per image to 4,800
    images would say 10 s; the line through two timed sizes says what 4,800 rows cost (0.58 s)."""
    import numpy as np

    import sortsight.taghead as taghead
    from sortsight.estimate import _tag_head_line

    def fake_fit(x: np.ndarray, y: np.ndarray, *, seed: int) -> None:
        time.sleep(0.1 + 1e-4 * len(x))

    monkeypatch.setattr(taghead, "fit_tag_head", fake_fit)
    x, y = np.zeros((48, 8), np.float32), np.zeros((48, 3), bool)
    first, per_row = _tag_head_line(x, y, 4800, seed=0)
    assert 0.4 < first + per_row * (4800 - 48) < 1.5
    assert _tag_head_line(x, y, 40, seed=0)[1] == 0.0  # no more images than the sample: its own time


def test_the_head_cost_ratio_is_timed_on_at_most_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """A large set's head is timed on at most _ROW_CAP repeated rows, then extended in proportion
    (timing a million rows would cost the estimate what it estimates)."""
    import numpy as np

    import sortsight.training.head as head

    sizes: list[int] = []
    monkeypatch.setattr(head, "logistic_regression", lambda x, y, **kw: sizes.append(len(x)))
    x, y = np.zeros((48, 4)), np.arange(48) % 2
    assert head._row_cost(x, y, 40) == 1.0 and not sizes  # the sample is the data: nothing timed
    assert head._row_cost(x, y, 10 * head._ROW_CAP) >= 1.0
    assert max(sizes) == head._ROW_CAP and min(sizes) == 48
