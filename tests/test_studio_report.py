"""The evaluation report as a studio user (not a programmer) reads it: title, header, sentence, cards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import make_image

pytest.importorskip("matplotlib")
from sortsight.evaluate import Evaluation, calibration_bins
from sortsight.report import render_report


def test_report_reads_plainly(tmp_path: Path) -> None:
    model = tmp_path / "projects/postcards/jobs/3/run/model"
    image = tmp_path / "projects/postcards/data/t-shirt/x1.png"
    image.parent.mkdir(parents=True)
    make_image(0, size=28).save(image)  # a 28-px image, as in Fashion-MNIST
    probs = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    ev = Evaluation(
        model=str(model),
        data=str(image.parent.parent),
        split="test",
        note="",
        labels=["pullover", "t-shirt"],
        metrics={"accuracy": 0.99, "n_images": 100, "log_loss": 0.05},
        per_class=[
            {"label": "pullover", "precision": 0.98, "recall": 1.0, "f1": 0.99, "support": 50},
            {"label": "t-shirt", "precision": 1.0, "recall": 0.98, "f1": 0.99, "support": 50},
        ],
        confusion=[[50, 0], [1, 49]],
        most_confused=[{"true": "t-shirt", "predicted": "pullover", "count": 1}],
        top_losses=[
            {
                "path": str(image),
                "true": "t-shirt",
                "predicted": "pullover",
                "probability": 0.88,
                "probability_true": 0.12,
                "loss": 2.12,
            }
        ],
        calibration=calibration_bins(probs, np.array([1, 0, 1])),
        engine="onnx",
    )
    html = render_report(ev)
    assert "<title>Evaluation report: postcards</title>" in html
    assert "<h1>Evaluation report: postcards</h1>" in html
    assert "100 test images · 2 labels" in html and "engine:" not in html
    assert "99 of 100 test images right (99.0%); most confused: t-shirt → pullover (1 image)." in html
    card = html.split('class="losses"')[1].split("</div>\n</div>")[0]
    assert "labelled <b>t-shirt</b>" in card and "model says <b>pullover</b>" in card and "88% sure" in card
    assert "p(true)" not in card and "loss 2.12" not in card
    assert f'title="{image}">x1.png<' in card  # the file's name shown, its full path on hover
    assert "for <code>sortsight fix</code>" not in html
    assert "width: 160px; height: 160px" in html  # small images are shown enlarged, not at 28 px
