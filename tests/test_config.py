"""TrainConfig: AutoTrain names and YAML, validation with one-line errors, durations."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from sortsight.autotrain import load_train_config
from sortsight.config import (
    DemoConfig,
    FetchConfig,
    IndexConfig,
    PredictConfig,
    StudioConfig,
    TrainConfig,
    config_from_dict,
    config_to_dict,
    describe_fields,
    parse_duration,
)
from sortsight.errors import ConfigError

AUTOTRAIN_YAML = """\
task: image_classification
base_model: efficientnet_lite1
project_name: autotrain-covers
log: tensorboard
backend: local

data:
  path: covers
  train_split: train
  valid_split: validation
  column_mapping:
    image_column: file
    target_column: label

params:
  epochs: 2
  batch_size: 4
  lr: 2e-5
  warmup_ratio: 0.1
  optimizer: adamw_torch
  scheduler: linear
  gradient_accumulation: 2
  mixed_precision: fp16
  weight_decay: 0.0
  max_grad_norm: 1.0
  seed: 7
  auto_find_batch_size: true
  early_stopping_patience: 4
  early_stopping_threshold: 0.01
  save_total_limit: 2
  max_samples: 100

hub:
  username: ${HF_USERNAME}
  token: ${HF_TOKEN}
  push_to_hub: false
"""


def test_autotrain_yaml_maps_every_name(tmp_path: Path) -> None:
    (tmp_path / "covers").mkdir()
    path = tmp_path / "autotrain.yml"
    path.write_text(AUTOTRAIN_YAML, encoding="utf-8")
    cfg = load_train_config(path)
    assert cfg.model == "efficientnet_lite1" and cfg.project_name == "autotrain-covers"
    assert cfg.data_path == str(tmp_path / "covers")  # relative to the YAML file
    assert (cfg.train_split, cfg.valid_split) == ("train", "validation") and cfg.valid_fraction == 0.2
    assert (cfg.image_column, cfg.target_column) == ("file", "label")
    assert cfg.lr == 2e-5 and isinstance(cfg.lr, float)  # YAML reads 2e-5 as a string
    assert (cfg.epochs, cfg.batch_size, cfg.gradient_accumulation, cfg.seed) == (2, 4, 2, 7)
    assert cfg.scheduler == "linear" and cfg.mixed_precision == "fp16" and cfg.log == "tensorboard"
    assert cfg.auto_find_batch_size is True and cfg.save_total_limit == 2 and cfg.max_samples == 100
    assert cfg.early_stopping_patience == 4 and cfg.early_stopping_threshold == 0.01
    assert cfg.run_dir == Path("runs") / "autotrain-covers"


def test_overrides_win_and_flat_files_work(tmp_path: Path) -> None:
    path = tmp_path / "flat.yaml"
    path.write_text("data_path: photos\nepochs: 3\nvalid_split: 0.3\ntime_budget: 10m\n", encoding="utf-8")
    cfg = load_train_config(path, epochs=9, out="runs/x")
    assert cfg.epochs == 9 and cfg.valid_split == 0.3 and cfg.time_budget == 600.0 and cfg.out == "runs/x"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("task: text_classification\n", "not supported"),
        ("params:\n  epoch: 3\n", "Did you mean 'epochs'"),
        ("datas:\n  path: x\ntask: image_classification\n", "Did you mean 'data'"),
        ("params:\n  optimizer: adamw_torc\n", "Did you mean 'adamw_torch'"),
        ("params:\n  lr: fast\n", "must be a number"),
        ("- just\n- a list\n", "mapping"),
        ("epochs: [\n", "could not be parsed"),
    ],
)
def test_bad_config_files_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_train_config(path)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"epochs": 0}, "epochs must be at least 1"),
        ({"valid_split": 1.5}, "valid_split must be at least 0.01 and at most 0.9, got 1.5"),
        ({"lr": float("inf")}, "lr must be a finite number"),
        ({"lr": "nan"}, "lr must be a finite number"),
        ({"time_budget": float("inf")}, "time_budget must be a finite number"),
        ({"seed": -1}, "seed must be at least 0"),
        ({"batch_size": 2.5}, "batch_size must be a whole number"),
        ({"epochs": True}, "epochs must be a number"),
        ({"resume": "maybe"}, "resume must be true or false"),
        ({"augmentation": "document"}, "Did you mean 'documents'"),
        ({"resume": True, "overwrite": True}, "not both"),
        ({"warmup_ratio": 1.0}, "warmup_ratio"),
        ({"image_size": 8}, "image_size"),
        ({"time_budget": "-5m"}, "duration"),
    ],
)
def test_invalid_values(values: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict(TrainConfig, values, what="training option")
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"top_k": 0}, "top_k must be at least 1 and at most 1000, got 0"),
        ({"threshold": 1.5}, "threshold must be at least 0 and at most 1"),
        ({"threshold": float("-inf")}, "threshold must be a finite number"),
        ({"batch_size": "many"}, "batch_size must be a whole number"),
        ({"engine": "onx"}, "Did you mean 'onnx'"),
        ({"move": True}, "move (--move) needs sort_into"),
    ],
)
def test_invalid_prediction_values(values: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        PredictConfig(model="m", inputs=("x",), **values)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_values_are_converted_to_the_declared_types() -> None:
    cfg = TrainConfig(lr="2e-5", epochs="3", batch_size=8.0, resume="yes", valid_split="0.3", seed="7")
    assert (cfg.lr, cfg.epochs, cfg.batch_size, cfg.resume, cfg.valid_split, cfg.seed) == (
        2e-5, 3, 8, True, 0.3, 7
    )
    assert isinstance(cfg.epochs, int) and isinstance(cfg.batch_size, int)
    assert TrainConfig(valid_split="validation").valid_split == "validation"  # a split name
    assert TrainConfig(data_path=Path("photos")).data_path == "photos"
    pc = PredictConfig(model=Path("m"), inputs="new", top_k="3", threshold="0.5", num_workers="0")
    assert (pc.model, pc.inputs, pc.top_k, pc.threshold, pc.num_workers) == ("m", ("new",), 3, 0.5, 0)


@pytest.mark.parametrize(
    "cls", [TrainConfig, PredictConfig, IndexConfig, DemoConfig, StudioConfig, FetchConfig]
)
def test_every_option_is_declared_with_help_and_a_valid_default(cls: type) -> None:
    described = describe_fields(cls)
    assert [d["name"] for d in described] == [f.name for f in dataclasses.fields(cls)]
    for d in described:
        assert d["help"] and "\n" not in d["help"], d["name"]
        assert d["default_text"], d["name"]
        assert d["type"] in ("int", "float", "str", "bool", "list", "duration"), d
        if d["choices"]:
            assert d["default"] in d["choices"], d["name"]
        low, high = d["min"], d["max"]
        if low is not None and high is not None:
            assert low <= high, d["name"]
        if d["default"] is not None and d["type"] in ("int", "float"):
            assert low is None or d["default"] >= low, d["name"]
            assert high is None or d["default"] <= high, d["name"]
    # the bounds given are the bounds enforced, inclusive
    epochs = next(d for d in describe_fields(TrainConfig) if d["name"] == "epochs")
    assert TrainConfig(epochs=epochs["max"]).epochs == epochs["max"]
    with pytest.raises(ConfigError):
        TrainConfig(epochs=epochs["max"] + 1)


def test_durations_and_round_trip() -> None:
    assert parse_duration("90s") == 90 and parse_duration("1h30m") == 5400 and parse_duration(45) == 45.0
    assert parse_duration(None) is None
    cfg = TrainConfig(models="efficientnet_lite0@160, efficientnet_lite1", mixed_precision=None, log=None)
    assert cfg.models == ("efficientnet_lite0@160", "efficientnet_lite1")
    assert cfg.mixed_precision == "no" and cfg.log == "none"
    assert config_from_dict(TrainConfig, config_to_dict(cfg)) == cfg


def test_options_several_workflows_share_are_declared_once() -> None:
    def declared(cls: type) -> dict[str, dict]:
        return {d["name"]: d for d in describe_fields(cls)}

    train, predict, index = declared(TrainConfig), declared(PredictConfig), declared(IndexConfig)
    demo, studio = declared(DemoConfig), declared(StudioConfig)
    for name in ("engine", "batch_size", "num_workers"):  # predicting and indexing run the same inference
        assert index[name] == predict[name], name
    assert demo["engine"] == predict["engine"]
    assert index["image_size"] == train["image_size"]
    assert demo["host"]["default"] == studio["host"]["default"] == "127.0.0.1"
    assert demo["host"]["help"].replace("demo", "studio") == studio["host"]["help"]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: IndexConfig(batch_size=0), "batch_size must be at least 1"),
        (lambda: IndexConfig(engine="gpu"), "Unknown engine 'gpu'"),
        (lambda: IndexConfig(image_size="big"), "image_size must be a whole number, got 'big'"),
        (lambda: DemoConfig(top_k=0), "top_k must be at least 1"),
        (lambda: DemoConfig(port=65536), "port must be at least 1 and at most 65535"),
        (lambda: StudioConfig(max_upload_mb=0), "max_upload_mb must be at least 1"),
        (lambda: FetchConfig(per_host=0), "per_host must be at least 1"),
        (lambda: FetchConfig(delay=-1), "delay must be at least 0"),
    ],
)
def test_the_other_workflows_configs_refuse_bad_values_in_one_line(build, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        build()
    assert "\n" not in str(caught.value)


def test_library_functions_check_their_settings_before_touching_anything(tmp_path: Path) -> None:
    from sortsight.demo import launch_demo
    from sortsight.fetch import fetch
    from sortsight.index import build_index
    from sortsight.websearch import fetch_search

    pile = tmp_path / "pile"
    pile.mkdir()
    with pytest.raises(ConfigError, match="batch_size must be at least 1"):
        build_index(pile, tmp_path / "pile.index", batch_size=0)
    with pytest.raises(ConfigError, match="concurrency must be at least 1"):
        fetch(tmp_path / "list.csv", tmp_path / "data", concurrency=0)
    with pytest.raises(ConfigError, match="retries must be at least 0"):
        fetch_search(["cygnet"], tmp_path / "data", retries=-1)  # refused before any search is sent
    with pytest.raises(ConfigError, match="port must be at least 1"):
        launch_demo(object(), port=0)  # refused before the demo is touched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pile"]
