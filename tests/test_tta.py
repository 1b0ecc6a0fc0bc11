"""Flip test-time augmentation (``--tta``): the mean of the image's and its mirror's probabilities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import make_image
from PIL import ImageOps

from sortsight.predict import Classifier


def test_flip_tta_averages_the_mirror_image(tiny_model_dir: Path) -> None:
    plain = Classifier.load(tiny_model_dir, engine="eager")
    tta = Classifier.load(tiny_model_dir, engine="eager", tta=True)
    image = make_image(1, size=64, seed=7)
    both = plain.predict_proba([image, ImageOps.mirror(image)])
    assert tta.engine.name == "eager+flip"
    assert np.allclose(tta.predict_proba([image])[0], both.mean(0), atol=1e-5)
