"""Speeds measured on this machine are remembered, and a later estimate answers from them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from sortsight.config import TrainConfig
from sortsight.training import speeds
from tests.conftest import make_image


@pytest.fixture
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("SORTSIGHT_CACHE", str(cache))
    return cache


def test_records_merge_and_survive_a_corrupt_file(own_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = speeds.speed_key("efficientnet_lite0", None, TrainConfig())
    assert speeds.recall(key) is None
    speeds.remember({"seconds_per_image": 0.01, "step_seconds": 0.3}, key, source="estimate")
    speeds.remember({"seconds_per_image": 0.02}, key, source="run")
    record = speeds.recall(key)
    assert record is not None
    assert (record["seconds_per_image"], record["step_seconds"], record["source"]) == (0.02, 0.3, "run")
    # another machine (or torch) does not see this machine's figures
    monkeypatch.setattr(speeds, "machine", lambda: "another CPU|0|8 cores|torch 9")
    assert speeds.recall(key) is None
    monkeypatch.undo()
    monkeypatch.setenv("SORTSIGHT_CACHE", str(own_cache))
    (own_cache / "speeds.json").write_text("{not json", encoding="utf-8")
    assert speeds.recall(key) is None  # unreadable: measured again, never an error
    speeds.remember({"seconds_per_image": 0.03}, key, source="run")
    assert speeds.recall(key) == {**(speeds.recall(key) or {}), "seconds_per_image": 0.03}


def test_the_key_holds_what_changes_the_speed() -> None:
    base = TrainConfig()
    keys = {
        speeds.speed_key("efficientnet_lite0", None, base),
        speeds.speed_key("efficientnet_lite0", 160, base),
        speeds.speed_key("efficientnet_lite2", None, base),
        speeds.speed_key("efficientnet_lite0", None, TrainConfig(batch_size=16)),
        speeds.speed_key("efficientnet_lite0", None, TrainConfig(mixed_precision="no")),
        speeds.speed_key("efficientnet_lite0", None, TrainConfig(pretrained=False)),
    }
    assert len(keys) == 6
    assert "cores" in speeds.machine() and "torch" in speeds.machine()


def test_decoding_is_timed_on_the_images_given(tmp_path: Path) -> None:
    good = tmp_path / "a.png"
    make_image(0, size=64).save(good)
    bad = tmp_path / "b.png"
    bad.write_bytes(b"not an image")
    record = {"image_size": 32, "crop_pct": 0.875, "interpolation": "bicubic"}
    seconds = speeds.decode_seconds([good, bad], record)
    assert seconds is not None and seconds > 0
    assert speeds.decode_seconds([bad], record) is None


def test_remembered_speeds_take_the_new_images_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """The frozen pass's time per image is its compute plus the new images' decoding over the cores."""
    from sortsight import estimate
    from sortsight.training.plan import RunData, make_plan

    config = TrainConfig(data_path="x", strategy="head")
    record = {
        "seconds_per_image": 0.010,
        "decode_seconds_per_image": 0.004,
        "cores": 2,
        "head_seconds_per_item": 0.001,
        "setup_seconds": 1.0,
        "image_size": 224,
    }
    stored = {
        "machine": {"import_seconds": 1.5},
        speeds.speed_key("efficientnet_lite0", None, config): record,
    }
    monkeypatch.setattr(speeds, "recall", lambda key="machine": stored.get(key))
    monkeypatch.setattr(speeds, "decode_seconds", lambda paths, rec: 0.024)  # slower images
    data = RunData(None, ("a", "b"), [Path("1")], [0], [Path("2")], [1], [], [])
    [timing] = estimate._remembered(config, make_plan(config), data) or [None]
    assert timing is not None and timing["speeds"] == "remembered"
    assert timing["seconds_per_image"] == pytest.approx(0.010 - 0.004 / 2 + 0.024 / 2)
    stored.pop("machine")  # the engine's import time was never measured here: measure
    assert estimate._remembered(config, make_plan(config), data) is None


def _estimate_in_a_new_process(data: Path, cache: Path) -> dict[str, object]:
    code = (
        "import json, sys\n"
        "from sortsight.config import TrainConfig\n"
        "from sortsight.estimate import estimate_training\n"
        f"e = estimate_training(TrainConfig(data_path={str(data)!r}, image_size=32))\n"
        "print(json.dumps({'torch': 'torch' in sys.modules, **e.to_dict()}))\n"
    )
    env = {**os.environ, "SORTSIGHT_CACHE": str(cache)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return dict(json.loads(done.stdout.splitlines()[-1]))


def test_a_second_estimate_answers_from_remembered_speeds_without_torch(
    image_folder: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    first = _estimate_in_a_new_process(image_folder, cache)
    assert first["torch"] and first["candidates"][0]["speeds"] == "measured"  # type: ignore[index]
    second = _estimate_in_a_new_process(image_folder, cache)
    assert not second["torch"], "an estimate from remembered speeds must not import torch"
    row = second["candidates"][0]  # type: ignore[index]
    assert row["speeds"] == "remembered" and row["engine"] == first["candidates"][0]["engine"]  # type: ignore[index]
    assert second["seconds"] > 0 and second["finetune_seconds"] > 0
    assert (second["n_train"], second["n_valid"]) == (first["n_train"], first["n_valid"])


def test_a_run_records_what_it_measured(image_folder: Path, tmp_path: Path, own_cache: Path) -> None:
    from sortsight.train import train

    config = TrainConfig(
        data_path=str(image_folder), image_size=32, out=str(tmp_path / "run"), strategy="finetune", epochs=1
    )
    train(config)
    record = speeds.recall(speeds.speed_key("efficientnet_lite0", 32, config))
    assert record is not None and record["source"] == "run"
    assert record["image_size"] == 32 and record["seconds_per_image"] > 0
    assert record["step_seconds"] > 0 and record["precision"] in ("fp32", "bf16")
    assert record["decode_seconds_per_image"] > 0 and record["eval_seconds_per_item"] > 0
    assert record["save_seconds"] > 0 and record["head_seconds_per_item"] > 0


def test_the_runs_estimate_counts_the_head_and_save_measured_before(
    image_folder: Path, tmp_path: Path, own_cache: Path
) -> None:
    """The ``estimate`` event adds the head's fits and the model's saving as an earlier run of
    the model timed them here (it used to add a fixed guess), so it grows with those figures."""
    from sortsight.train import train

    def said(out: str) -> float:
        config = TrainConfig(
            data_path=str(image_folder), image_size=32, out=str(tmp_path / out), strategy="head"
        )
        train(config)
        events = [json.loads(line) for line in (tmp_path / out / "events.jsonl").read_text().splitlines()]
        return next(e["metrics"]["seconds"] for e in events if e["phase"] == "estimate")

    key = speeds.speed_key("efficientnet_lite0", 32, TrainConfig(image_size=32))
    speeds.remember({"head_seconds_per_item": 1.0, "save_seconds": 50.0}, key, source="run")
    n_labelled = 20  # image_folder: 16 training + 4 validation images
    assert said("slow") >= 1.0 * n_labelled + 50.0
    assert said("fast") < 50.0  # the first run's own, much smaller, figures replaced the slow ones


def test_a_first_run_times_its_head_and_pays_the_saves_imports_in_its_estimate(
    make_folder: Callable[..., Path], tmp_path: Path, own_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With nothing remembered, the ``estimate`` event counts the head's fits timed on the first
    images (which hold several classes, though the data comes grouped by class) and the save's
    imports, instead of the features alone (0.70 of the time taken on a machine's first quickstart)."""
    import sortsight.training.run as run
    import sortsight.training.run_dir as run_dir
    from sortsight.train import train

    seen: list[set[int]] = []

    def slow_head(features, targets, n_rows, **kw):  # type: ignore[no-untyped-def]
        seen.append(set(targets.tolist()))
        return 30.0

    monkeypatch.setattr(run, "head_seconds", slow_head)
    monkeypatch.setattr(run_dir, "save_imports", lambda: 20.0)
    data = make_folder(per_class=20)  # 32 training images: the first 16 in the list are all one class
    config = TrainConfig(data_path=str(data), image_size=32, out=str(tmp_path / "run"), strategy="head")
    train(config)
    events = [json.loads(line) for line in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    said = next(e["metrics"]["seconds"] for e in events if e["phase"] == "estimate")
    assert said >= 50.0 and len(seen) == 1 and len(seen[0]) == 2


def test_the_first_images_are_spread_and_map_back_to_the_list() -> None:
    import torch

    from sortsight._sampling import spread_first
    from sortsight.training.frozen import Frozen

    order = spread_first(10, 3)
    assert order[:3] == [0, 3, 6] and sorted(order) == list(range(10))
    assert spread_first(2, 16) == [0, 1]
    done = Frozen(torch.zeros(3, 1, 1, 1), torch.zeros(3, 2), kept=[0, 2, 4]).reindexed(order)
    assert done.kept == [order[0], order[2], order[4]] == [0, 6, 2]


def test_the_precision_measured_once_is_reused_unless_it_was_close(
    own_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clear earlier measurement on this machine decides without timing eight steps again; one
    near the margin, none, or another key's is measured anew; fp32 asked for is never timed."""
    from sortsight.training import precision

    monkeypatch.setattr(precision, "_cpu_has_fast_bf16", lambda: True)
    timed: list[str] = []
    step = timed.append  # a "step" that only records which precision it ran

    clear = {"fp32_step_seconds": 0.5, "bf16_step_seconds": 0.2}
    chosen = precision.choose_precision("auto", step, clear)
    assert (chosen.dtype, timed) == ("bf16", [])
    assert "earlier" in chosen.reason and chosen.bf16_seconds == 0.2 and chosen.reusable
    slower = precision.choose_precision("auto", step, {"fp32_step_seconds": 0.5, "bf16_step_seconds": 0.6})
    assert (slower.dtype, timed) == ("fp32", [])
    for record in ({"fp32_step_seconds": 0.5, "bf16_step_seconds": 0.4}, None, {"fp32_step_seconds": 0.5}):
        timed.clear()
        again = precision.choose_precision("auto", step, record)
        assert timed.count("fp32") == timed.count("bf16") == 4 and "earlier" not in again.reason
    timed.clear()
    asked = precision.choose_precision("no", step, clear)
    assert (asked.dtype, asked.reusable, timed) == ("fp32", False, [])
