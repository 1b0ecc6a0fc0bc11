"""Training starts from a Hugging Face model folder too (a transformers model, not timm)."""

from __future__ import annotations

from pathlib import Path

from conftest import write_trainer_style_vit

from sortsight.config import TrainConfig
from sortsight.model_folder import load_model_folder
from sortsight.predict import Classifier
from sortsight.train import train


def test_train_from_a_transformers_folder(image_folder: Path, tmp_path: Path) -> None:
    base = write_trainer_style_vit(tmp_path / "vit", ("x", "y"))
    result = train(
        TrainConfig(
            data_path=str(image_folder), model=str(base), out=str(tmp_path / "run"), epochs=2, lr=1e-3
        )
    )
    loaded = load_model_folder(result.model_dir)
    assert loaded.labels == ["cats", "dogs"]  # the new head has the user's labels
    assert loaded.name == "vit"
    assert result.best.head_metrics["accuracy"] >= 0.5 and result.best.epochs <= 2
    # the saved folder is a plain HF folder: the pipeline and sortsight agree on it
    from transformers import pipeline

    image = next((image_folder / "cats").iterdir())
    theirs = pipeline("image-classification", model=str(result.model_dir))(str(image))
    ours = Classifier.load(result.model_dir, engine="eager").predict(str(image))
    assert theirs[0]["label"] == ours[0]["label"]
    assert abs(theirs[0]["score"] - ours[0]["score"]) < 1e-3
