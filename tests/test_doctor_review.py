"""Keyboard review of the doctor's flags in the studio (routes_review), through the studio API."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
from studio_helpers import FAKE_CLI, new_project, studio_client, wait_job

from sortsight.data import load_dataset
from sortsight.doctor import doctor


def test_review_take_keep_delete_and_undo(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with studio_client(home, cli=FAKE_CLI) as client:
        pid = new_project(client)
        assert client.get(f"/api/projects/{pid}/review").status_code == 400  # no doctor report yet
        jid = int(str(client.post(f"/projects/{pid}/doctor").url).split("/jobs/")[1].split("?")[0])
        assert wait_job(client, pid, jid)["status"] == "finished"
        # a real doctor report of the project's 12 images: two planted flips and an odd image
        data = home / "projects/postcards/data"
        ds = load_dataset(data)
        y = np.array([item.label == "dogs" for item in ds.items], dtype=np.int64)
        flip = [i for i, item in enumerate(ds.items) if item.path.name in ("cats_0.png", "dogs_3.png")]
        rng = np.random.default_rng(0)
        feats = np.where(y[:, None] == 1, 3.0, -3.0) * np.ones((len(y), 8)) + rng.normal(size=(len(y), 8))
        feats[flip] = -feats[flip]  # these two look like the other class
        feats[5] = 50 * np.eye(8)[3]
        report = doctor(ds, embeddings=feats.astype(np.float32))
        (home / f"projects/postcards/jobs/{jid}/doctor/doctor.json").write_text(json.dumps(report.to_dict()))

        state = client.get(f"/api/projects/{pid}/review").json()
        kinds = [f["kind"] for f in state["flags"]]
        assert kinds[:2] == ["label", "label"] and "outlier" in kinds  # label errors first, then out of place
        assert {Path(f["path"]).name for f in state["flags"][:2]} == {"cats_0.png", "dogs_3.png"}
        assert state["next"] == 0 and state["decided"] == 0 and not state["can_undo"]
        first, second = state["flags"][0], state["flags"][1]
        outlier = next(f for f in state["flags"] if f["kind"] == "outlier")

        state = client.post(f"/api/projects/{pid}/review/0/take").json()  # relabel to the suggestion
        moved = data / first["suggested"] / Path(first["path"]).name
        assert moved.is_file() and not Path(first["path"]).exists()
        assert state["flags"][0]["decision"] == "take" and state["next"] == 1
        state = client.post(f"/api/projects/{pid}/review/1/keep").json()
        assert Path(second["path"]).is_file() and state["flags"][1]["decision"] == "keep"
        r = client.post(f"/api/projects/{pid}/review/{outlier['n']}/take")
        assert r.status_code == 400 and "no label to take" in r.json()["error"]
        state = client.post(f"/api/projects/{pid}/review/{outlier['n']}/delete").json()
        trashed = home / "projects/postcards/trash" / Path(outlier["path"]).relative_to(data)
        assert trashed.is_file() and not Path(outlier["path"]).exists()
        assert client.post(f"/api/projects/{pid}/review/0/keep").status_code == 400  # decided already
        log = home / f"projects/postcards/review/job-{jid}.jsonl"
        actions = [json.loads(line)["action"] for line in log.read_text().splitlines()]
        assert actions == ["take", "keep", "delete"]

        # undo, newest first: the delete, the keep, the relabel — the files are back where they were
        state = client.post(f"/api/projects/{pid}/review/undo").json()
        assert Path(outlier["path"]).is_file() and not trashed.exists()
        assert state["flags"][outlier["n"]]["decision"] is None
        state = client.post(f"/api/projects/{pid}/review/undo").json()
        assert state["flags"][1]["decision"] is None and Path(second["path"]).is_file()
        state = client.post(f"/api/projects/{pid}/review/undo").json()
        assert Path(first["path"]).is_file() and not moved.exists()
        assert state["decided"] == 0 and state["next"] == 0 and not state["can_undo"]
        assert client.post(f"/api/projects/{pid}/review/undo").status_code == 400
        assert client.post(f"/api/projects/{pid}/review/0/take").json()["flags"][0]["decision"] == "take"

        page = client.get(f"/projects/{pid}/review")
        assert page.status_code == 200 and "review.js" in page.text and "Take suggested" in page.text
        assert client.get("/static/review.js").status_code == 200
