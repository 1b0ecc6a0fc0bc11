"""One eval geometry: the training cache, predict and timm's eval transform (which
``transformers.pipeline`` applies to a saved model) give the same pixels."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from sortsight.geometry import eval_pixels, eval_transform
from sortsight.models import DataConfig
from sortsight.training.views import build_cache


def _image(w: int, h: int) -> Image.Image:
    g = torch.Generator().manual_seed(w * 1000 + h)
    return Image.fromarray(torch.randint(0, 256, (h, w, 3), generator=g, dtype=torch.uint8).numpy())


@pytest.mark.parametrize("crop_mode", ["center", "squash"])
@pytest.mark.parametrize(("w", "h"), [(97, 61), (61, 97), (64, 64), (300, 41)])
def test_eval_transform_matches_timm(w: int, h: int, crop_mode: str) -> None:
    import timm.data

    dc = DataConfig(input_size=48, crop_pct=0.875 if crop_mode == "center" else 1.0, crop_mode=crop_mode)
    ours = eval_transform(dc)(_image(w, h))
    theirs = timm.data.create_transform(**dc.to_timm(), is_training=False)(_image(w, h))
    assert ours.shape == theirs.shape == (3, 48, 48)
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_training_cache_stores_the_predict_pixels(tmp_path: object) -> None:
    from pathlib import Path

    folder = Path(str(tmp_path))
    paths = []
    for i, (w, h) in enumerate([(97, 61), (50, 120)]):
        paths.append(folder / f"{i}.png")
        _image(w, h).save(paths[-1])
    dc = DataConfig(input_size=40)
    cache = build_cache(paths, dc)
    for i, path in enumerate(paths):
        with Image.open(path) as img:
            assert torch.equal(cache.eval[i], eval_pixels(img.convert("RGB"), dc))
