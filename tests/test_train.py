"""Training engine: run folder, HF pipeline parity, resume after kill -9, candidates, time budget,
2-process torchrun, and user errors through the CLI. Tiny images, bundled Lite0 at 64 px."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import TRAIN_CLASSES as CLASSES
from conftest import TRAIN_FAST, copy_run, write_class_folder

from sortsight.cli import cli
from sortsight.config import TrainConfig
from sortsight.progress import ProgressEvent
from sortsight.train import train

FAST = {**TRAIN_FAST, "strategy": "finetune"}  # these tests look at fine-tuning (checkpoints, resume)

@pytest.fixture
def data(train_data: Path) -> Path:
    return train_data


@pytest.fixture
def trained(trained_run: tuple[object, list[ProgressEvent]]) -> tuple[object, list[ProgressEvent]]:
    return trained_run  # one training shared by the session (tests/conftest.py)


def test_run_folder_has_model_card_metrics_and_record(trained: tuple) -> None:
    result, events = trained
    run = result.run_dir
    record = json.loads((run / "sortsight.json").read_text())
    assert record["status"] == "done"
    assert record["data"]["classes"] == sorted(CLASSES)
    assert record["data"]["split_seed"] == 42 and len(record["data"]["splits"]["validation"]) == 6
    assert record["config"]["image_size"] == 64 and record["versions"]["torch"] == torch.__version__
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["phase"] for x in lines] == ["head", "epoch"]
    assert {"val_accuracy", "val_f1_macro", "val_loss"} <= set(lines[1])
    card = (result.model_dir / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: transformers") and "## Bias" in card and "blue_circle" in card
    assert any((run / "tensorboard").iterdir())
    assert list((run / "checkpoints").glob("epoch-0001/*.safetensors"))
    phases = [e.phase for e in events]
    assert {"features", "head", "model_ready", "train", "validate", "done"} <= set(phases)
    assert phases.index("model_ready") < phases.index("train")  # the head is saved before fine-tuning
    stream = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines()]
    assert [e["phase"] for e in stream] == phases  # every event, in order, as JSON lines
    ready = [e for e in stream if e["phase"] == "model_ready"]
    assert ready[0]["metrics"]["stage"] == "head" and ready[-1]["metrics"]["stage"] == "final"
    assert stream[-1]["phase"] == "done" and stream[-1]["metrics"]["chosen"] == result.best.chosen


def test_recorded_validation_metrics_are_the_kept_models(trained: tuple, data: Path) -> None:
    """Without the refit, the saved model scored exactly what the run recorded on validation (a
    check that fails if the record described another model than the one saved)."""
    from sortsight.predict import Classifier

    result, _ = trained
    record = json.loads((result.run_dir / "sortsight.json").read_text())
    assert record["refit"]["applied"] is False
    clf = Classifier.load(result.model_dir, engine="eager")
    valid = record["data"]["splits"]["validation"]
    right = sum(clf.predict(str(data / p), top_k=1)[0]["label"] == Path(p).parent.name for p in valid)
    assert right / len(valid) == pytest.approx(record["metrics"]["accuracy"])


def test_pipeline_loads_model_and_agrees_with_sortsight(trained: tuple, data: Path) -> None:
    from transformers import pipeline

    from sortsight.geometry import eval_transform
    from sortsight.images import open_image
    from sortsight.model_folder import load_model_folder
    from sortsight.predict import Classifier

    result, _ = trained
    classify = pipeline("image-classification", model=str(result.model_dir))
    loaded = load_model_folder(result.model_dir)
    transform = eval_transform(loaded.data_config)
    paths = sorted(data.glob("*/*.png"))[::3]
    clf = Classifier.load(result.run_dir, engine="eager")
    right = 0
    for path in paths:
        image = open_image(path)
        top = classify(image)[0]
        with torch.no_grad():
            ours = loaded.labels[int(loaded.module(transform(image)[None]).argmax())]
        assert top["label"] == ours == clf.predict(str(path), top_k=1)[0]["label"]
        right += top["label"] == path.parent.name
    assert right / len(paths) >= 0.75  # the colours/shapes are easy


def test_resume_after_kill_ends_at_the_same_step(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = [
        sys.executable,
        "-m",
        "sortsight",
        "train",
        str(data),
        "--out",
        str(out),
        "--image-size",
        "64",
        "--batch-size",
        "4",
        "--epochs",
        "3",
        "--mixed-precision",
        "no",
        "--early-stopping-patience",
        "0",
        "--augmentation",
        "none",
        "--strategy",
        "finetune",
    ]
    proc = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    ckpts = out / "checkpoints"
    deadline = time.time() + 600  # a safety limit, not a timing: a loaded machine needs minutes
    while time.time() < deadline and proc.poll() is None and not list(ckpts.glob("epoch-*/state.json")):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
    assert list(ckpts.glob("epoch-*/state.json")), "killed before the first checkpoint"
    # the head was saved as a complete model before fine-tuning: it loads while the run is dead
    from transformers import pipeline

    classify = pipeline("image-classification", model=str(out / "model"))
    assert classify(str(next(data.glob("red_circle/*.png"))))[0]["label"] in CLASSES
    assert json.loads((out / "sortsight.json").read_text())["status"] == "running"
    done_before = max(int(p.name.split("-")[1]) for p in ckpts.glob("epoch-*"))
    assert done_before < 3

    runner = CliRunner()
    res = runner.invoke(cli, ["train", "--out", str(out), "--resume"])
    assert res.exit_code == 0, res.output
    record = json.loads((out / "sortsight.json").read_text())
    n_train = len(record["data"]["splits"]["train"])
    assert record["best"]["steps"] == 3 * math.ceil(n_train / 4)  # same step count as an uninterrupted run
    epochs = [
        x["epoch"]
        for x in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
        if x["phase"] == "epoch"
    ]
    assert epochs[-1] == 3 and sorted(set(epochs)) == list(range(1, 4))
    assert (out / "model" / "model.safetensors").is_file()


def test_candidates_leaderboard_keeps_best(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "cands"
    runner = CliRunner()
    res = runner.invoke(
        cli,
        [
            "train",
            str(data),
            "--out",
            str(out),
            "--models",
            "efficientnet_lite0@48,efficientnet_lite0@64",
            "--strategy",
            "head",
            "--batch-size",
            "8",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "Leaderboard" in res.output
    board = json.loads((out / "leaderboard.json").read_text())
    assert [r["image_size"] for r in board] != [] and sorted(r["image_size"] for r in board) == [48, 64]
    assert board[0]["rank"] == 1 and board[0]["val_accuracy"] >= board[1]["val_accuracy"]
    assert (out / "leaderboard.csv").read_text().startswith("rank,model,image_size")
    kept = json.loads((out / "model" / "config.json").read_text())
    assert kept["pretrained_cfg"]["input_size"][-1] == board[0]["image_size"]


def test_time_budget_stops_cleanly_with_a_model(data: Path, tmp_path: Path) -> None:
    result = train(
        TrainConfig(data_path=str(data), out=str(tmp_path / "b"), **{**FAST, "epochs": 50}, time_budget="1s")
    )
    assert result.best.stopped == "time_budget"
    assert result.best.epochs < 50 and (result.model_dir / "model.safetensors").is_file()
    record = json.loads((result.run_dir / "sortsight.json").read_text())
    assert record["status"] == "done" and record["best"]["stopped"] == "time_budget"


@pytest.mark.slow
def test_torchrun_two_processes(data: Path, tmp_path: Path) -> None:
    torchrun = shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun not on PATH")
    out = tmp_path / "ddp"
    args = [
        torchrun,
        "--standalone",  # a free rendezvous port, not the fixed 29500 something else may hold
        "--nproc_per_node",
        "2",
        "-m",
        "sortsight",
        "train",
        str(data),
        "--out",
        str(out),
        "--image-size",
        "48",
        "--batch-size",
        "4",
        "--epochs",
        "1",
        "--mixed-precision",
        "no",
        "--augmentation",
        "none",
        "--strategy",
        "finetune",
    ]
    proc = subprocess.run(
        args, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    # the ranks' own errors, not only torchrun's summary at the end
    errors = [line for line in proc.stderr.splitlines() if "Error" in line or "error" in line]
    assert proc.returncode == 0, "\n".join(errors[:20]) + "\n" + proc.stderr[-1500:]
    record = json.loads((out / "sortsight.json").read_text())
    assert record["environment"]["processes"] == 2 and record["engine"]["processes"] == 2
    n_train = len(record["data"]["splits"]["train"])
    # each process takes half of every epoch
    assert record["best"]["steps"] == math.ceil(math.ceil(n_train / 2) / 4)
    assert (out / "model" / "model.safetensors").is_file()


@pytest.mark.parametrize(
    ("make", "args", "expected"),
    [
        ("exists", [], "already exists"),
        ("one_class", [], "only one class"),
        ("tiny", ["--valid-split", "0.5"], "few"),
        ("none", ["--resume"], "Nothing to resume"),
        ("none", ["--time-budget", "soon"], "not a duration"),
        ("none", ["--epochs", "0"], "epochs must be at least 1"),
        ("not_run", ["--overwrite"], "not a sortsight run folder"),
    ],
)
def test_cli_errors_are_one_line(
    make: str, args: list[str], expected: str, data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    source = data
    if make == "exists":
        out.mkdir()
        (out / "sortsight.json").write_text("{}")
    elif make == "not_run":
        out.mkdir()
        (out / "precious.txt").write_text("mine")
    elif make == "one_class":
        source = write_class_folder(tmp_path / "one", ("only",), per_class=6)
    elif make == "tiny":
        source = write_class_folder(tmp_path / "tiny", ("a", "b"), per_class=2)
    res = CliRunner().invoke(cli, ["train", str(source), "--out", str(out), *args])
    assert res.exit_code != 0
    assert "Traceback" not in res.output
    assert expected.lower() in res.output.lower(), res.output
    if make == "not_run":
        assert (out / "precious.txt").read_text() == "mine"


def test_autotrain_yaml_through_cli(data: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "autotrain.yml"
    cfg.write_text(
        f"task: image_classification\nbase_model: efficientnet_lite0\nproject_name: yaml-run\nlog: none\n"
        f"backend: local\ndata:\n  path: {data}\n  train_split: train\n  valid_split: null\n"
        f"  column_mapping:\n    image_column: image\n    target_column: target\n"
        f"params:\n  epochs: 1\n  batch_size: 8\n  lr: 2e-5\n  optimizer: adamw_torch\n  scheduler: linear\n"
        f"  mixed_precision: fp16\n  image_size: 48\n  early_stopping_patience: 2\n",
        encoding="utf-8",
    )
    out = tmp_path / "y"
    res = CliRunner().invoke(cli, ["train", "--config", str(cfg), "--out", str(out), "--strategy", "head"])
    assert res.exit_code == 0, res.output
    saved = json.loads((out / "sortsight.json").read_text())["config"]
    assert saved["lr"] == 2e-5 and saved["scheduler"] == "linear" and saved["project_name"] == "yaml-run"
    assert saved["image_size"] == 48 and saved["valid_split"] == 0.2


def test_resume_of_a_run_killed_while_saving(trained: tuple, tmp_path: Path) -> None:
    first, _ = trained
    out = copy_run(first.run_dir, tmp_path / "s")  # the shared run, finished; its copy is ours to break
    shutil.rmtree(out / "model")  # as if killed after the last checkpoint, before the model was saved
    (out / "checkpoints" / "result.json").unlink()
    again = train(TrainConfig(out=str(out), resume=True))
    assert again.run_dir == out and (first.model_dir / "model.safetensors").is_file()  # the copy resumed
    assert again.best.steps == first.best.steps and again.best.epochs == FAST["epochs"]
    # the features on the interrupted run's engine (a timing under load once chose the other one)
    assert again.best.engine["features_engine"] == first.best.engine["features_engine"]
    assert again.metrics == pytest.approx(first.metrics)
    assert (out / "model" / "model.safetensors").is_file()


def test_a_resumed_run_keeps_the_features_engine_of_its_checkpoint(trained: tuple, tmp_path: Path) -> None:
    import json

    from sortsight.training import run_dir

    first, _ = trained
    out = copy_run(first.run_dir, tmp_path / "e")
    state_file = next((out / "checkpoints").glob("epoch-*/state.json"))
    state = json.loads(state_file.read_text())
    assert state["features_engine"] == first.best.engine["features_engine"]
    other = "eager" if state["features_engine"] == "onnx" else "onnx"
    state_file.write_text(json.dumps({**state, "features_engine": other}))
    assert run_dir.features_engine(out, TrainConfig(out=str(out), resume=True)) == other
    assert run_dir.features_engine(out, TrainConfig(out=str(out))) == "auto"  # a new run chooses anew


def test_batch_too_large_suggests_auto_find_batch_size(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sortsight.training.loop as engine
    from sortsight.errors import TrainError

    real = engine.choose_precision

    def out_of_memory_above_4(requested: str, step: object, remembered: object = None) -> object:
        if engine_batch["size"] > 4:
            engine_batch["size"] //= 2
            raise RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 1 TB")
        return real("no", step)  # type: ignore[arg-type]

    engine_batch = {"size": 16}
    monkeypatch.setattr(engine, "choose_precision", out_of_memory_above_4)
    with pytest.raises(TrainError, match="auto_find_batch_size"):
        train(TrainConfig(data_path=str(data), out=str(tmp_path / "a"), **{**FAST, "batch_size": 16}))

    engine_batch["size"] = 16
    result = train(
        TrainConfig(
            data_path=str(data),
            out=str(tmp_path / "b"),
            **{**FAST, "batch_size": 16},
            auto_find_batch_size=True,
        )
    )
    assert result.best.engine["batch_size"] == 4
