"""The studio's Label page over HTTP (FastAPI's TestClient; the fake CLI stands in for training)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from conftest import write_class_folder
from fastapi.testclient import TestClient
from studio_helpers import studio_client

from sortsight.index import build_index

FAKE_CLI = (sys.executable, str(Path(__file__).parent / "studio_fake_cli.py"))
CLASSES = ("red", "green", "blue")


@pytest.fixture(scope="module")
def pile_index(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("labelpile")
    pile = write_class_folder(base / "pile", CLASSES, per_class=8, size=40)
    build_index(pile, base / "pile.index", image_size=64, engine="eager", num_workers=0)
    return pile, base / "pile.index"


def wait_finished(client: TestClient, project: int, job: int) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        view = client.get(f"/api/projects/{project}/jobs/{job}").json()
        if view["status"] not in ("queued", "running"):
            return dict(view)
        time.sleep(0.2)
    raise AssertionError("job did not finish")


def test_label_page_labels_survive_a_restart_and_train(pile_index: tuple[Path, Path], tmp_path: Path) -> None:
    pile, index_dir = pile_index
    home = tmp_path / "home"
    allowed = [pile.parent]  # the pile and its index; nothing else may be read
    with studio_client(home, cli=FAKE_CLI, folders=allowed) as c:
        c.post("/projects", data={"name": "Pile"})
        assert 'href="/projects/1/label"' in c.get("/projects/1/data").text  # a tab on every page
        assert "Start from an unlabelled pile" in c.get("/projects/1/label").text
        bad = c.post("/projects/1/label/start", data={"source": str(pile.parent / "nowhere")})
        assert "is not a folder on the studio" in bad.text
        outside = c.post("/projects/1/label/start", data={"source": str(tmp_path)})
        assert "may only read folders you allowed" in outside.text
        assert (
            c.post("/projects/1/label/start", data={"source": str(index_dir)}).url.path == "/projects/1/label"
        )
        state = c.get("/api/projects/1/label").json()
        assert state["labelled"] == 0 and len(state["suggestions"]) == 8 and state["fitted"] == []
        for name in CLASSES:
            state = c.post("/api/projects/1/label", json={"action": "class", "label": name}).json()
        assert state["classes"] == list(CLASSES)
        for _ in range(9):
            pick = state["suggestions"][0]
            state = c.post(
                "/api/projects/1/label",
                json={"positions": [pick["position"]], "label": pick["rel"].split("/")[0]},
            ).json()
        assert state["labelled"] == 9 and state["fitted"] == list(CLASSES)
        assert all(s["guess"] in CLASSES for s in state["suggestions"])
        likely = c.get("/api/projects/1/label", params={"mode": "likely", "target": "blue"}).json()
        assert (
            likely["mode"] == "likely"
            and [s["rel"].split("/")[0] for s in likely["suggestions"][:3]] == ["blue"] * 3
        )
        by_path = c.post(
            "/api/projects/1/label", json={"paths": [str(pile / "red/red_007.png")], "label": "red"}
        ).json()
        assert by_path["counts"]["red"] >= 1 and by_path["labelled"] in (9, 10)
        refused = c.post("/api/projects/1/label", json={"paths": ["/etc/passwd"], "label": "red"})
        assert refused.status_code == 400 and "not an image of this index" in refused.json()["error"]
        assert c.get("/projects/1/label/thumb/999").status_code == 400
        assert c.get("/projects/1/label/thumb/0").headers["content-type"] == "image/jpeg"
        labelled = by_path["labelled"]
    with studio_client(home, cli=FAKE_CLI, folders=allowed) as c:  # a restart: the session is read back
        state = c.get("/api/projects/1/label").json()
        assert state["labelled"] == labelled and state["classes"] == list(CLASSES)
        csv_text = c.get("/projects/1/label/labels.csv").text
        assert csv_text.startswith("image,label\n") and len(csv_text.strip().splitlines()) == labelled + 1
        page = c.get("/projects/1/label/map").text
        assert '"/api/projects/1/label"' in page and "/projects/1/label/thumb/0" in page
        job = c.post("/projects/1/label/train").url.path.rsplit("/", 1)[-1]
        view = wait_finished(c, 1, int(job))
        assert view["kind"] == "train" and view["status"] == "finished", view
        data = home / "projects" / "pile" / "data"
        copied = sorted(p.relative_to(data).as_posix() for p in data.rglob("*.png"))
        assert len(copied) == labelled and all(p.split("/")[0] in CLASSES for p in copied)
        assert (pile / copied[0]).is_file()  # copies: the pile is untouched
        assert list((home / "projects" / "pile" / "fixes").glob("*-label.jsonl"))


def test_a_folder_starts_an_index_job(pile_index: tuple[Path, Path], tmp_path: Path) -> None:
    pile, _ = pile_index
    with studio_client(tmp_path / "home", cli=FAKE_CLI, folders=[pile.parent]) as c:
        c.post("/projects", data={"name": "Scans"})
        response = c.post("/projects/1/label/start", data={"source": str(pile)})
        job = int(response.url.path.rsplit("/", 1)[-1])
        folder = tmp_path / "home" / "projects" / "scans" / "jobs" / str(job)
        steps = json.loads((folder / "steps.json").read_text())
        assert steps[0][len(FAKE_CLI) :] == [
            "index",
            str(pile.resolve()),
            "--out",
            str(folder.parent.parent / "pile.index"),
        ]
        wait_finished(c, 1, job)  # the fake CLI cannot index: the page then offers the form again
        assert "Start from an unlabelled pile" in c.get("/projects/1/label").text
