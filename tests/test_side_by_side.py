"""Backbones side by side (``--model lite0+lite2``): features concatenated, one head, one folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import write_class_folder
from PIL import Image

from sortsight.config import TrainConfig
from sortsight.errors import ConfigError, ModelError


def test_each_backbone_sees_its_own_input_size() -> None:
    from sortsight.models import create_model, resolve_model_name

    assert resolve_model_name("lite0+lite2") == "efficientnet_lite0+efficientnet_lite2"
    model, cfg = create_model("lite0+lite2", ["a", "b", "c"])
    assert cfg.input_size == 260 and model.sizes == [224, 260]
    lite0, _ = create_model("lite0", 3)
    lite0.reset_classifier(0)
    x = torch.randn(2, 3, 260, 260)
    with torch.no_grad():
        feats = model.eval().forward_features(x)
        alone = lite0.eval()(torch.nn.functional.interpolate(x, size=(224, 224), mode="bilinear"))
    assert feats.shape == (2, 1280 + 1280)
    assert torch.allclose(feats[:, :1280], alone, atol=1e-5)  # the first part is Lite0 at 224 px
    assert model(x).shape == (2, 3)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("lite0+lite0", "two different backbones"),
        ("lite0+no_such_net", "'no_such_net' in 'efficientnet_lite0\\+no_such_net' is not a bundled or timm"),
    ],
)
def test_bad_pairs_are_one_line_errors(name: str, message: str) -> None:
    from sortsight.models import create_model

    with pytest.raises(ModelError, match=message) as err:
        create_model(name, 2)
    assert "\n" not in str(err.value)


def test_side_by_side_is_head_only(tmp_path: Path) -> None:
    from sortsight.training.plan import candidate_specs, make_plan

    with pytest.raises(ConfigError, match="fits only their head"):
        make_plan(TrainConfig(data_path=str(tmp_path), model="lite0+lite2", strategy="finetune"))
    with pytest.raises(ConfigError, match="no random weights"):
        make_plan(TrainConfig(data_path=str(tmp_path), model="lite0+lite2", pretrained=False))
    assert make_plan(TrainConfig(data_path=str(tmp_path), model="lite0+lite2")).finetune == "auto"
    folder = tmp_path / "my+model"  # a model folder whose name holds a '+' is not a pair
    folder.mkdir()
    make_plan(TrainConfig(data_path=str(tmp_path), model=str(folder), strategy="finetune"))
    five = candidate_specs(TrainConfig(data_path=str(tmp_path), candidates=5))
    assert five[-1] == ("efficientnet_lite0+efficientnet_lite2", None)


def test_train_predict_and_pipeline_load_the_same_model(tmp_path: Path) -> None:
    from transformers import pipeline

    from sortsight.cli import cli
    from sortsight.model_folder import load_model_folder

    data = write_class_folder(tmp_path / "d", ("a", "b", "c"), per_class=8, size=40)
    run = tmp_path / "run"
    args = ["train", str(data), "--model", "lite0+lite2", "--image-size", "48", "--out", str(run)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "backbones side by side: the head is the model" in result.output
    assert "fine-tuning, where it pays" not in result.output  # no such promise: it never fine-tunes
    record = json.loads((run / "sortsight.json").read_text())
    assert record["best"]["chosen"] == "head" and record["best"]["stopped"] == "side_by_side"
    assert record["engine"]["split"] == "linear" and record["refit"]["applied"] is True
    model_dir = run / "model"
    assert (model_dir / "side_by_side.py").is_file()
    card = (model_dir / "README.md").read_text()
    assert "trust_remote_code=True" in card and "side by side" in card

    loaded = load_model_folder(run)
    assert loaded.labels == ["a", "b", "c"] and loaded.data_config.input_size == 48
    image = next((data / "b").iterdir())
    classify = pipeline("image-classification", model=str(model_dir), trust_remote_code=True)
    theirs = {o["label"]: o["score"] for o in classify(str(image), top_k=3)}

    out_csv = tmp_path / "p.csv"
    args = ["predict", str(run), str(image), "--out", str(out_csv), "--engine", "onnx"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    row = out_csv.read_text().splitlines()[1].split(",")
    assert row[1] == max(theirs, key=theirs.__getitem__)
    assert abs(float(row[2]) - max(theirs.values())) < 2e-3  # same network, same preprocessing
    assert "(onnx)" in result.output  # exported (checked against the eager network) and run by ORT
    # without --engine, one image is too few for a first export to pay, unless one exists (it does now)
    again = CliRunner().invoke(cli, ["predict", str(run), str(image), "--out", str(tmp_path / "q.csv")])
    assert again.exit_code == 0 and "(onnx)" in again.output, again.output


def test_the_folder_loads_without_sortsight_classes_registered(tmp_path: Path) -> None:
    """The folder is plain transformers custom code: a fresh process with only transformers, timm
    and torch imported (no sortsight) classifies with it."""
    import subprocess
    import sys

    from sortsight.model_folder import save_model_folder
    from sortsight.models import create_model

    model, cfg = create_model("lite0+lite2", ["x", "y"], input_size=48)
    folder = save_model_folder(model.eval(), ["x", "y"], cfg, tmp_path / "m", name="lite0+lite2")
    Image.fromarray((np.random.default_rng(0).random((50, 60, 3)) * 255).astype("uint8")).save(
        tmp_path / "i.png"
    )
    code = (
        "import sys; from transformers import pipeline; "
        f"p = pipeline('image-classification', model={str(folder)!r}, trust_remote_code=True); "
        f"out = p({str(tmp_path / 'i.png')!r}); "
        "assert 'sortsight' not in sys.modules, 'sortsight was imported'; "
        "print(sorted(o['label'] for o in out))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "['x', 'y']"


def test_a_space_of_a_side_by_side_model_trusts_its_own_code(tmp_path: Path) -> None:
    from sortsight.model_folder import save_model_folder
    from sortsight.models import create_model
    from sortsight.space import export_space

    model, cfg = create_model("lite0+lite2", ["x", "y"], input_size=48)
    folder = save_model_folder(
        model.eval(), ["x", "y"], cfg, tmp_path / "m", name="lite0+lite2", card="# m\n"
    )
    space = export_space(folder, tmp_path / "space")
    app = (space / "app.py").read_text()
    compile(app, "app.py", "exec")
    assert 'device="cpu", trust_remote_code=True)' in app
    assert (space / "model" / "side_by_side.py").is_file()


def test_the_studio_offers_the_pair_and_accepts_it() -> None:
    from sortsight.studio.routes_train import _train_params, model_choices

    pair = next(c for c in model_choices() if "+" in c["name"])
    assert pair["name"] == "efficientnet_lite0+efficientnet_lite2" and "trust_remote_code" in pair["note"]
    assert _train_params({"model": pair["name"]})["model"] == pair["name"]
