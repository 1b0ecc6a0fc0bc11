"""The Space folder: its files, its refusals, and its app.py running alone in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from PIL import Image
from share_helpers import LABELS, free_port, tiny_run, tree_digest

from sortsight.errors import ExportError
from sortsight.space import SPACE_COLORS, export_space, find_examples, read_card

# Runs the Space's app.py with sortsight made unimportable, and reports (on stderr) any attempt to
# reach a host that is not this machine.
_GUARD = r'''
import runpy, sys
sys.modules["sortsight"] = None  # the Space must run without sortsight
LOCAL = {"127.0.0.1", "::1", "localhost", "0.0.0.0", None}
def hook(event, args):
    if event == "socket.getaddrinfo" and args[0] not in LOCAL:
        sys.stderr.write(f"NETWORK-ATTEMPT {args[0]!r}\n")
    elif event == "socket.connect" and isinstance(args[1], tuple) and args[1][0] not in LOCAL:
        sys.stderr.write(f"NETWORK-ATTEMPT {args[1]!r}\n")
sys.addaudithook(hook)
sys.argv = ["app.py"]
runpy.run_path("app.py", run_name="__main__")
'''


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_run(tmp_path_factory.mktemp("share"))


@pytest.fixture(scope="module")
def space(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_space(run_dir, tmp_path_factory.mktemp("out") / "space", top_k=2)


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_space_folder_has_everything_a_space_needs(space: Path, run_dir: Path) -> None:
    meta = _front_matter((space / "README.md").read_text(encoding="utf-8"))
    import gradio

    assert meta["sdk"] == "gradio"
    assert meta["sdk_version"] == gradio.__version__
    assert meta["app_file"] == "app.py"
    assert meta["pinned"] is False
    assert meta["license"] == "mit"  # from the model card
    assert meta["title"] == "Shapes sorter"
    assert meta["colorFrom"] in SPACE_COLORS and meta["colorTo"] in SPACE_COLORS
    assert meta["emoji"]

    reqs = (space / "requirements.txt").read_text().split("\n")
    pinned = {line.split("==")[0]: line.split("==")[1] for line in reqs if "==" in line}
    assert {"torch", "transformers", "timm", "Pillow"} <= set(pinned)
    assert not any(line.startswith("sortsight") for line in reqs)  # standalone by design

    lfs = (space / ".gitattributes").read_text()
    assert "*.safetensors filter=lfs diff=lfs merge=lfs -text" in lfs
    assert "*.jpg filter=lfs" in lfs

    for name in ("config.json", "model.safetensors", "README.md"):
        assert (space / "model" / name).read_bytes() == (run_dir / "model" / name).read_bytes()

    examples = sorted((space / "examples").iterdir())
    assert len(examples) == 4  # the whole validation split: 2 per class
    for path in examples:
        with Image.open(path) as im:
            assert im.format == "JPEG" and not im.getexif()  # re-encoded, no EXIF (GPS) carried over
    app = (space / "app.py").read_text()
    assert "TOP_K = 2" in app and "import sortsight" not in app
    compile(app, "app.py", "exec")


def test_examples_come_from_the_validation_split_round_robin(run_dir: Path) -> None:
    picked = find_examples(run_dir, limit=3)
    assert [p.parent.name for p in picked] == ["circle", "square", "circle"]
    assert all(p.stem.endswith(("_002", "_003")) for p in picked)


def test_examples_folder_flag_and_bad_folder(run_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "ex"
    folder.mkdir()
    Image.new("RGB", (20, 20)).save(folder / "A.PNG")
    (folder / ".DS_Store").write_bytes(b"junk")
    assert [p.name for p in find_examples(run_dir, folder)] == ["A.PNG"]
    with pytest.raises(ExportError, match="does not exist"):
        find_examples(run_dir, tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportError, match="no images found"):
        find_examples(run_dir, tmp_path / "empty")


def test_card_texts(run_dir: Path) -> None:
    card = read_card(run_dir / "model")
    assert card.title == "Shapes sorter"
    assert card.description.startswith("Tells drawn circles")
    assert card.article.startswith("## Limitations")
    assert card.labels == LABELS and card.license == "mit"


def test_refuses_a_non_empty_folder_and_leaves_it_alone(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    before = tree_digest(out)
    with pytest.raises(ExportError, match="not empty"):
        export_space(run_dir, out)
    assert tree_digest(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # no staging folder left behind


def test_empty_existing_folder_is_used_and_flags_win(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    export_space(run_dir / "model", out, title="My demo", license="apache-2.0", color_from="green",
                 examples=[])
    meta = _front_matter((out / "README.md").read_text(encoding="utf-8"))
    assert (meta["title"], meta["license"], meta["colorFrom"]) == ("My demo", "apache-2.0", "green")
    assert list((out / "examples").iterdir()) == []
    assert "EXAMPLES = []" in (out / "app.py").read_text()


def test_the_folder_you_are_in_is_refused_and_a_trailing_slash_is_fine(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--space .`` in an empty folder ended in a traceback (a path with no name to stage beside)."""
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    with pytest.raises(ExportError, match="the folder you are in") as err:
        export_space(run_dir, ".", examples=[])
    assert "\n" not in str(err.value) and list(here.iterdir()) == []
    (tmp_path / "link").symlink_to(here)
    with pytest.raises(ExportError, match="the folder you are in"):
        export_space(run_dir, tmp_path / "link", examples=[])
    assert list(here.iterdir()) == []
    export_space(run_dir, "space/", examples=[])
    assert (here / "space" / "app.py").is_file() and sorted(p.name for p in here.iterdir()) == ["space"]


def test_bad_inputs_are_one_line_errors(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="not a Space colour") as err:
        export_space(run_dir, tmp_path / "a", color_from="teal")
    assert "\n" not in str(err.value)
    with pytest.raises(ExportError, match="no model found"):
        export_space(tmp_path, tmp_path / "b")


@pytest.mark.slow
def test_space_app_runs_alone_and_answers(space: Path, tmp_path: Path) -> None:
    """app.py starts from the Space folder alone (no sortsight, no network) and predicts over HTTP."""
    guard = tmp_path / "guard.py"
    guard.write_text(_GUARD)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRADIO_", "HF_", "PYTHONPATH"))}
    env.update(GRADIO_ANALYTICS_ENABLED="False", GRADIO_SERVER_PORT=str(port), HF_HUB_OFFLINE="1",
               GRADIO_SERVER_NAME="127.0.0.1", OMP_NUM_THREADS="1", HF_HOME=str(tmp_path / "hf"))
    log = tmp_path / "space.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(guard)], cwd=space, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
        try:
            _wait_for_port(port, proc, log, timeout=90)
            from gradio_client import Client, handle_file

            client = Client(f"http://127.0.0.1:{port}", verbose=False, analytics_enabled=False,
                            download_files=False)
            example = sorted((space / "examples").iterdir())[0]
            answer = client.predict(handle_file(str(example)), api_name="/predict")
        finally:
            proc.kill()
            proc.wait(timeout=10)
    text = log.read_text(errors="replace")
    assert "NETWORK-ATTEMPT" not in text, text
    assert "ModuleNotFoundError" not in text and "Traceback" not in text, text
    got = {c["label"]: c["confidence"] for c in answer["confidences"]}
    assert set(got) == set(LABELS) and answer["label"] in LABELS

    from sortsight.predict import Classifier

    expected = Classifier.load(space / "model", engine="eager").predict(str(example), top_k=2)
    for item in expected:  # the pipeline in the Space agrees with sortsight's own predict
        assert got[item["label"]] == pytest.approx(item["score"], abs=2e-3)


def _wait_for_port(port: int, proc: subprocess.Popen, log: Path, *, timeout: float) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the Space app exited early:\n{log.read_text(errors='replace')[-3000:]}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    pytest.fail(f"the Space app did not listen on port {port} within {timeout}s")


def test_cli_export_space(run_dir: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from sortsight.cli import cli

    out = tmp_path / "cli-space"
    result = CliRunner().invoke(cli, ["export", str(run_dir), "--space", str(out), "--title", "From CLI"])
    assert result.exit_code == 0, result.output
    assert "python app.py" in result.output
    assert _front_matter((out / "README.md").read_text(encoding="utf-8"))["title"] == "From CLI"
    assert len(list((out / "examples").iterdir())) == 4

    again = CliRunner().invoke(cli, ["export", str(run_dir), "--space", str(out)])
    assert again.exit_code == 1 and "Error:" in again.output and "not empty" in again.output
    assert "Traceback" not in again.output


def test_card_written_by_training_gives_a_demo_page(tmp_path: Path) -> None:
    import json

    from sortsight.card import model_card

    (tmp_path / "config.json").write_text(json.dumps({"id2label": {"0": "maps", "1": "letters"}}))
    (tmp_path / "README.md").write_text(model_card(
        model_name="efficientnet_lite0", labels=["maps", "letters"],
        counts={"maps": {"train": 8, "validation": 2}, "letters": {"train": 8, "validation": 2}},
        metrics={"accuracy": 0.9, "f1_macro": 0.88, "loss": 0.3}, parameters={"epochs": 3}))
    card = read_card(tmp_path)
    assert card.title == "efficientnet_lite0 fine-tuned with sortsight"
    assert card.description.startswith("An image classifier that sorts images into 2 classes")
    assert "## Limitations" in card.article and "## Validation results" in card.article
    assert "## Use" not in card.article and "## Training parameters" not in card.article
    assert card.labels == ("maps", "letters") and card.license is None


def test_cli_space_options_need_space(run_dir: Path) -> None:
    from click.testing import CliRunner

    from sortsight.cli import cli

    result = CliRunner().invoke(cli, ["export", str(run_dir), "--title", "X"])
    assert result.exit_code == 1 and "add --space DIR" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(cli, ["export", str(run_dir), "--public"])
    assert result.exit_code == 1 and "add --push-to-hub" in result.output
