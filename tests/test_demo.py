"""The Gradio demo: build_demo's page, its predictions, and `sortsight app`."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from PIL import Image
from share_helpers import LABELS, tiny_run

from sortsight.cli import cli
from sortsight.demo import build_demo
from sortsight.errors import SortsightError

gr = pytest.importorskip("gradio")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_run(tmp_path_factory.mktemp("share"))


@pytest.fixture(scope="module")
def demo(run_dir: Path) -> Any:
    return build_demo(run_dir, top_k=2, engine="eager")


def test_demo_page_comes_from_the_model_card(demo: Any) -> None:
    assert isinstance(demo, gr.Blocks)
    assert demo.title == "Shapes sorter"
    assert demo.description.startswith("Tells drawn circles")
    assert "Limitations" in demo.article
    assert demo.analytics_enabled is False
    (image_in,) = demo.input_components
    (label_out,) = demo.output_components
    assert isinstance(image_in, gr.Image) and isinstance(label_out, gr.Label)
    assert label_out.num_top_classes == 2
    assert len(demo.examples) == 4  # the run's validation images


def test_demo_predicts_like_the_classifier(demo: Any, run_dir: Path) -> None:
    from sortsight.predict import Classifier

    image = Image.open(run_dir.parent / "data" / "square" / "square_002.png").convert("RGB")
    got = demo.fn(image)
    expected = Classifier.load(run_dir, engine="eager").predict(image, top_k=2)
    assert list(got) == [e["label"] for e in expected]
    assert list(got.values()) == pytest.approx([e["score"] for e in expected], abs=1e-6)
    assert sum(got.values()) == pytest.approx(1.0, abs=1e-5) and set(got) == set(LABELS)
    assert demo.fn(None) == {}


def test_flags_override_the_card_and_examples_folder(run_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "examples"
    folder.mkdir()
    Image.new("RGB", (30, 20), (10, 200, 10)).save(folder / "green.JPG")
    demo = build_demo(run_dir / "model", examples=folder, title="T", description="D", article="A",
                      engine="eager")
    assert (demo.title, demo.description, demo.article) == ("T", "D", "A")
    assert len(demo.examples) == 1
    assert len(build_demo(run_dir / "model", engine="eager").examples) == 4  # model/ of a run: its examples
    bare = shutil.copytree(run_dir / "model", tmp_path / "bare")  # a model folder alone: no examples
    assert build_demo(bare, engine="eager").examples is None


def test_missing_gradio_says_how_to_install(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gradio", None)
    with pytest.raises(SortsightError, match=r"pip install 'sortsight\[app\]'"):
        build_demo(run_dir)


def test_cli_app_launches_on_loopback_by_default(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    blocked: list[bool] = []
    monkeypatch.setattr(gr.Interface, "launch",
                        lambda self, **kw: (calls.append(kw), "http://127.0.0.1:7860/", None))
    monkeypatch.setattr(gr.Interface, "block_thread", lambda self: blocked.append(True))
    result = CliRunner().invoke(cli, ["app", str(run_dir), "--engine", "eager"])
    assert result.exit_code == 0, result.output
    assert calls[0]["server_name"] == "127.0.0.1" and calls[0]["share"] is False
    assert calls[0]["quiet"] is True and blocked == [True]  # serves until Ctrl+C
    assert "Demo running at http://127.0.0.1:7860/" in result.output
    assert "Warning" not in result.output and "share=True" not in result.output

    result = CliRunner().invoke(cli, ["app", str(run_dir), "--engine", "eager", "--host", "0.0.0.0",
                                      "--port", "7999", "--share"])
    assert result.exit_code == 0, result.output
    assert (calls[1]["server_name"], calls[1]["server_port"], calls[1]["share"]) == ("0.0.0.0", 7999, True)
    assert "anyone who can reach this machine" in result.output and "public" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["app", "{tmp}/nothing"], "no model found"),
        (["app", "{run}", "--examples", "{tmp}/missing"], "does not exist"),
        (["app", "{run}", "--top-k", "0"], "top_k must be at least 1 and at most 1000, got 0"),
        (["app", "{run}", "--port", "70000"], "port must be at least 1 and at most 65535, got 70000"),
    ],
)
def test_cli_app_user_errors(run_dir: Path, tmp_path: Path, args: list[str], message: str) -> None:
    args = [a.format(tmp=tmp_path, run=run_dir) for a in args]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_cli_app_port_taken_is_a_one_line_error(run_dir: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli, ["app", str(run_dir), "--engine", "eager", "--port", str(port)])
    assert result.exit_code == 1
    assert f"Error: cannot start the demo on 127.0.0.1:{port}" in result.output
    assert "Traceback" not in result.output


def test_demo_texts_for_a_generated_card(run_dir: Path, tmp_path: Path) -> None:
    """A card sortsight wrote: no "fine-tuned" title, the test accuracy, no dataset fingerprint."""
    from sortsight.demo import demo_texts
    from sortsight.space import CardText

    card = CardText(
        title="efficientnet_lite0 fine-tuned with sortsight",
        description="An image classifier that sorts images into 2 classes: `circle`, `square`.",
        article="## Validation results\n\n| accuracy | 97.0% |\n\n## Training data\n\n"
        "Images per label and split (dataset fingerprint `ab12cd`):\n\n"
        "## Limitations\n\n- Only these labels.",
        license=None,
        labels=LABELS,
    )
    run = tmp_path / "postcards" / "run"
    run.mkdir(parents=True)
    title, description, article = demo_texts(card, run)
    assert title == "postcards image classifier" and "fine-tuned" not in title
    assert description == "Upload an image to see which of these 2 labels it gets: circle, square."
    assert "fingerprint" not in article and "Validation results" in article  # no evaluation: kept
    evaluation = {"split": "test", "metrics": {"accuracy": 0.9933, "n_images": 150}}
    (run / "evaluation.json").write_text(json.dumps(evaluation), encoding="utf-8")
    title, description, article = demo_texts(card, run)
    assert description.endswith("Right on 99.3% of 150 test images held out from training.")
    assert "Validation results" not in article and article.startswith("## Training data")
    assert "Limitations" in article
