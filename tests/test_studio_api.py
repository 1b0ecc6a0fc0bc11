"""Studio API tests (FastAPI TestClient): every route and every refusal.

Jobs run real subprocesses (the studio's runner) but a quick stand-in for the sortsight CLI
(tests/studio_fake_cli.py), so these tests check the studio, not training; the browser test
runs the real CLI.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient
from studio_helpers import (
    BASE,
    FAKE_CLI,
    client,
    home,
    make_zip,
    new_project,
    png_bytes,
    start_training,
    studio_client,
    wait_job,
)

from sortsight.studio.uploads import UploadLimits

__all__ = ["client", "home"]  # fixtures shared from studio_helpers


# projects -----------------------------------------------------------------------------------
def test_projects_create_list_rename_delete(client: TestClient, home: Path) -> None:
    pid = new_project(client, "Maps & Plans", with_data=False)
    assert "Maps &amp; Plans" in client.get("/").text
    assert client.get("/api/projects").json() == [{"id": pid, "name": "Maps & Plans", "slug": "maps-plans"}]
    assert (home / "projects" / "maps-plans" / "data").is_dir()
    r = client.post(f"/projects/{pid}/rename", data={"name": "Old maps"})
    assert r.status_code == 200 and "Old maps" in r.text
    assert client.post(f"/projects/{pid}/rename", data={"name": "  "}).status_code == 400
    # delete needs the name typed again
    r = client.post(f"/projects/{pid}/delete", data={"confirm": "wrong"})
    assert r.status_code == 400 and "type its name" in r.text
    assert (home / "projects" / "maps-plans").is_dir()
    r = client.post(f"/projects/{pid}/delete", data={"confirm": "Old maps"})
    assert r.status_code == 200 and "deleted" in r.text
    assert not (home / "projects" / "maps-plans").exists()
    assert len(list((home / "trash").iterdir())) == 1  # moved, not destroyed
    assert client.get(f"/projects/{pid}/data").status_code == 404
    assert client.get("/projects/999/train").status_code == 404
    assert client.get("/api/projects/999/data").json()["error"].startswith("Project 999 not found")


def test_two_projects_with_one_name_get_separate_folders(client: TestClient, home: Path) -> None:
    new_project(client, "Photos", with_data=False)
    new_project(client, "Photos", with_data=False)
    assert sorted(p.name for p in (home / "projects").iterdir()) == ["photos", "photos-2"]


# data ---------------------------------------------------------------------------------------
def test_zip_upload_counts_samples_and_skipped(client: TestClient, home: Path) -> None:
    pid = new_project(client, with_data=False)
    entries = {
        f"photos/{n}/{n}_{i}.png": png_bytes(ci, i) for ci, n in enumerate(("cats", "dogs")) for i in range(5)
    }
    entries["photos/dogs/broken.jpg"] = b"this is text, not a jpeg"
    entries["photos/notes.txt"] = b"hello"
    entries["photos/__MACOSX/._cats"] = b"junk"
    entries["photos/cats/.DS_Store"] = b"junk"
    r = client.post(
        f"/projects/{pid}/data/zip", files={"archive": ("p.zip", make_zip(entries), "application/zip")}
    )
    assert r.status_code == 200
    assert "Added 11 image(s)" in r.text and "notes.txt (not inside a class folder)" in r.text
    data = home / "projects" / "postcards" / "data"
    assert sorted(p.name for p in data.iterdir()) == ["cats", "dogs"]  # the wrapping folder is dropped
    summary = client.get(f"/api/projects/{pid}/data").json()
    assert summary["ok"] and summary["classes"] == ["cats", "dogs"]
    assert summary["counts"]["cats"]["total"] == 5 and summary["totals"]["total"] == 10
    assert [s["path"] for s in summary["skipped"]] == ["data/dogs/broken.jpg"]
    assert len(summary["samples"]["cats"]) == 5
    page = client.get(f"/projects/{pid}/data").text
    assert "broken.jpg" in page and page.count("/thumb?path=") == 10
    # the check is kept across restarts (a big collection is not decoded again)
    assert json.loads((home / "projects/postcards/.data-summary.json").read_text())["summary"]["classes"] == [
        "cats",
        "dogs",
    ]
    # uploading the same zip again adds nothing twice (identical content is recognised)
    client.post(
        f"/projects/{pid}/data/zip", files={"archive": ("p.zip", make_zip(entries), "application/zip")}
    )
    assert client.get(f"/api/projects/{pid}/data").json()["totals"]["total"] == 10


def test_zip_with_split_folders(client: TestClient) -> None:
    pid = new_project(client, with_data=False)
    entries = {
        f"{split}/{n}/{n}_{split}{i}.png": png_bytes(ci, i)
        for split in ("train", "validation")
        for ci, n in enumerate(("a", "b"))
        for i in range(3)
    }
    client.post(
        f"/projects/{pid}/data/zip", files={"archive": ("s.zip", make_zip(entries), "application/zip")}
    )
    summary = client.get(f"/api/projects/{pid}/data").json()
    assert summary["splits"] == ["train", "validation"] and summary["counts"]["a"] == {
        "train": 3,
        "validation": 3,
        "total": 6,
    }
    # files added to a class go to the train split
    client.post(
        f"/projects/{pid}/data/files",
        data={"label": "c"},
        files=[("files", ("c1.png", png_bytes(2), "image/png"))],
    )
    assert client.get(f"/api/projects/{pid}/data").json()["counts"]["c"]["train"] == 1


@pytest.mark.parametrize(
    ("entries", "symlink", "message"),
    [
        ({"../evil.png": b"x"}, None, "points outside its folder"),
        ({"cats/../../evil.png": b"x"}, None, "points outside its folder"),
        ({"/etc/evil.png": b"x"}, None, "absolute path"),
        ({"C:/evil.png": b"x"}, None, "absolute path"),
        ({"cats/a.png": b"x"}, "cats/link.png", "symbolic link"),
        ({"cats/bomb.png": b"\0" * (3 * 1024**2)}, None, "zip bomb"),
    ],
)
def test_unsafe_zips_are_refused(
    client: TestClient, home: Path, entries: dict, symlink: str | None, message: str
) -> None:
    pid = new_project(client, with_data=False)
    r = client.post(
        f"/projects/{pid}/data/zip",
        files={"archive": ("bad.zip", make_zip(entries, symlink=symlink), "application/zip")},
    )
    assert r.status_code == 400 and message in r.text
    project = home / "projects" / "postcards"
    assert not list((project / "data").rglob("*.png"))
    assert not (home / "evil.png").exists() and not (project / "evil.png").exists()
    assert not list((project / ".staging").iterdir())


def test_zip_size_caps_and_not_a_zip(home: Path) -> None:
    limits = UploadLimits(max_unzipped_bytes=50_000, max_zip_entries=30)
    with studio_client(home, limits=limits) as client:
        pid = new_project(client, with_data=False)
        big = make_zip({f"cats/{i}.png": os.urandom(20_000) for i in range(3)})  # 60 KB unpacked
        r = client.post(f"/projects/{pid}/data/zip", files={"archive": ("big.zip", big, "application/zip")})
        assert r.status_code == 400 and "unpacks to more than" in r.text
        many = make_zip({f"cats/{i}.png": b"x" for i in range(31)})
        r = client.post(f"/projects/{pid}/data/zip", files={"archive": ("many.zip", many, "application/zip")})
        assert r.status_code == 400 and "31 entries" in r.text
        r = client.post(
            f"/projects/{pid}/data/zip", files={"archive": ("x.zip", b"PK not a zip", "application/zip")}
        )
        assert r.status_code == 400 and "not a readable zip" in r.text


def test_upload_body_limit_with_and_without_content_length(home: Path) -> None:
    with studio_client(home, limits=UploadLimits(max_request_bytes=100_000)) as client:
        pid = new_project(client, with_data=False)
        r = client.post(
            f"/projects/{pid}/data/files",
            data={"label": "cats"},
            files=[("files", ("big.png", b"\0" * 200_000, "image/png"))],
        )
        assert r.status_code == 413 and "limit" in r.text

        def chunks() -> Iterator[bytes]:  # a valid multipart body, streamed with no Content-Length
            yield b'--xyz\r\nContent-Disposition: form-data; name="label"\r\n\r\ncats\r\n'
            yield b'--xyz\r\nContent-Disposition: form-data; name="files"; filename="big.png"\r\n'
            yield b"Content-Type: image/png\r\n\r\n"
            for _ in range(30):
                yield b"\1" * 10_000
            yield b"\r\n--xyz--\r\n"

        r = client.post(
            f"/projects/{pid}/data/files",
            content=chunks(),
            headers={"content-type": "multipart/form-data; boundary=xyz"},
        )
        assert r.status_code == 413
        assert not list((client.app.state.studio.home / "projects").rglob("*.png"))  # type: ignore[attr-defined]


def test_files_upload_into_a_class_and_bad_class_names(client: TestClient, home: Path) -> None:
    pid = new_project(client, with_data=False)
    r = client.post(
        f"/projects/{pid}/data/files",
        data={"label": "old maps"},
        files=[
            ("files", ("a.png", png_bytes(0), "image/png")),
            ("files", ("b.png", png_bytes(1), "image/png")),
            ("files", ("notes.txt", b"hello", "text/plain")),
        ],
    )
    assert (
        "Added 2 image(s) to &#39;old maps&#39;" in r.text and "notes.txt (not an image file type)" in r.text
    )
    assert sorted(p.name for p in (home / "projects/postcards/data/old maps").iterdir()) == ["a.png", "b.png"]
    for bad in ("../escape", ".hidden", "a/b", "train"):
        r = client.post(
            f"/projects/{pid}/data/files",
            data={"label": bad},
            files=[("files", ("c.png", png_bytes(0), "image/png"))],
        )
        assert r.status_code == 400, bad
    assert not (home / "projects/escape").exists()
    # a browser folder upload sends "folder/name.png": only the name is kept
    client.post(
        f"/projects/{pid}/data/files",
        data={"label": "old maps"},
        files=[("files", ("../../x/c.png", png_bytes(2), "image/png"))],
    )
    assert (home / "projects/postcards/data/old maps/c.png").is_file()


def test_data_page_with_one_class_says_what_to_do(client: TestClient) -> None:
    pid = new_project(client, with_data=False)
    assert (
        "No images" in client.get(f"/projects/{pid}/data").text
        or "no images" in client.get(f"/projects/{pid}/data").text.lower()
    )
    client.post(
        f"/projects/{pid}/data/files",
        data={"label": "cats"},
        files=[("files", ("a.png", png_bytes(0), "image/png"))],
    )
    r = client.post(f"/projects/{pid}/train", data={"model": "auto"})
    assert r.status_code == 400 and "at least two classes" in r.text


def test_thumbnails_and_path_escapes(client: TestClient, home: Path) -> None:
    pid = new_project(client)
    r = client.get(f"/projects/{pid}/thumb", params={"path": "data/cats/cats_0.png", "size": 64})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg" and r.content[:2] == b"\xff\xd8"
    (home / "secret.png").write_bytes(png_bytes(0))
    for bad in ("../../secret.png", str(home / "secret.png"), "data/../../../secret.png", "/etc/passwd"):
        r = client.get(f"/projects/{pid}/thumb", params={"path": bad})
        assert r.status_code == 400 and "outside this project" in r.text, bad
    assert client.get(f"/projects/{pid}/thumb", params={"path": "data/cats/nope.png"}).status_code == 400


# token --------------------------------------------------------------------------------------
def test_token_is_required_when_set(home: Path) -> None:
    with studio_client(home, token="s3cret") as client:
        assert client.get("/").status_code == 401
        assert client.get("/?token=wrong").status_code == 401
        assert client.post("/projects", data={"name": "x"}).status_code == 401
        assert client.get("/static/studio.css").status_code == 200
        assert client.get("/", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        r = client.get("/?token=s3cret")  # sets a cookie and drops the token from the address
        assert r.status_code == 200 and "token" not in str(r.url)
        assert client.get("/api/projects").status_code == 200


# training jobs ------------------------------------------------------------------------------
def test_train_job_progress_leaderboard_and_results(client: TestClient, home: Path) -> None:
    pid = new_project(client)
    page = client.get(f"/projects/{pid}/train").text
    assert "efficientnet_lite0" in page and "batch_size" in page and "warmup_ratio" in page
    jid = start_training(client, pid, candidates="1", lr="0.001", batch_size="8")
    view = wait_job(client, pid, jid)
    assert view["status"] == "finished", view
    assert view["has_model"] and view["has_evaluation"]
    assert view["series"]["efficientnet_lite0"]["val_accuracy"] == [[0.0, 0.8], [1.0, 0.6], [2.0, 0.7]]
    assert view["leaderboard"][0]["val_accuracy"] == 0.8
    steps = json.loads((home / f"projects/postcards/jobs/{jid}/steps.json").read_text())
    assert steps[0][-8:] == ["--epochs", "2", "--candidates", "1", "--lr", "0.001", "--batch-size", "8"]
    # followed through events.jsonl: the estimate, and the kept model (the head, 0.8) as headline
    assert view["estimate_seconds"] == 3.0 and view["model_ready"]["stage"] == "final"
    assert view["done"]["chosen"] == "head"
    assert view["headline"] == "Finished. Kept the first model: validation accuracy 80.0%."
    assert "$ " not in view["log_tail"]  # the runner's command lines stay in the full log only
    assert client.get(f"/projects/{pid}/jobs/{jid}").status_code == 200
    assert client.get(f"/projects/{pid}/jobs/{jid}/log").text.startswith("$ ")
    results = client.get(f"/projects/{pid}/results").text
    assert "F1 score (average over classes)</td><td>79.0%" in results and results.count('class="mistake') == 2
    # the fake evaluation: [[3, 2], [0, 5]] on validation images of cats, dogs
    assert "8 of 10 validation images right (80.0%); most confused: cats → dogs (2 images)." in results
    assert "n_images" not in results.split("All numbers")[0]  # raw keys only under "All numbers"
    assert client.get(f"/projects/{pid}/jobs/{jid}/files/report.html").status_code == 200
    for bad in ("../../../../studio.sqlite", "..%2F..%2F..%2F..%2Fstudio.sqlite", "%2e%2e/%2e%2e/log.txt"):
        r = client.get(f"/projects/{pid}/jobs/{jid}/files/{bad}")
        assert r.status_code >= 400 and b"SQLite" not in r.content, bad
    assert client.get(f"/projects/{pid}/jobs/{jid}/files/nothing.png").status_code == 400


def test_candidates_get_one_curve_each_and_a_leaderboard(client: TestClient) -> None:
    pid = new_project(client)
    view = wait_job(client, pid, start_training(client, pid, candidates="2", epochs="1"))
    assert {"efficientnet_lite0", "efficientnet_lite1"} <= set(view["series"])
    assert view["series"]["efficientnet_lite1"]["val_accuracy"] == [[0.0, 0.6], [1.0, 0.6]]
    assert [row["model"] for row in view["leaderboard"]] == ["efficientnet_lite1", "efficientnet_lite0"]
    assert all("model_dir" not in row for row in view["leaderboard"])


def test_train_form_is_validated(client: TestClient) -> None:
    pid = new_project(client)
    for form, message in (
        ({"model": "resnet9000"}, "Unknown model"),
        ({"epochs": "many"}, "whole number"),
        ({"epochs": "0"}, "between 1 and 1000"),  # TrainConfig's declared range, not the studio's own
        ({"lr": "fast"}, "must be a number"),
        ({"time_budget": "-1"}, "is not a duration"),  # TrainConfig's parser, not the studio's own
    ):
        r = client.post(f"/projects/{pid}/train", data=form)
        assert r.status_code == 400 and message in r.text, form
    assert client.get("/api/projects/1/jobs/999").status_code == 404


def test_estimate_before_training(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    pid = new_project(client)
    assert 'id="estimate-training"' in client.get(f"/projects/{pid}/train").text
    r = client.post(f"/api/projects/{pid}/estimate", data={"image_size": "32", "epochs": "1"})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "seconds": 3.0,
        "human": "about 3 s",
        "images": 12,
        "finetune_seconds": 6.0,
        "finetune_human": "6 s",
    }
    forced = client.post(f"/api/projects/{pid}/estimate", data={"strategy": "finetune"})
    assert forced.json()["finetune_human"] == ""  # then the estimate's seconds include it
    bad = client.post(f"/api/projects/{pid}/estimate", data={"epochs": "many"})
    assert bad.status_code == 400 and "whole number" in bad.json()["error"]
    monkeypatch.setenv("FAKE_CLI_MODE", "fail")
    failed = client.post(f"/api/projects/{pid}/estimate", data={})
    assert failed.status_code == 400
    assert failed.json()["error"] == "The time could not be measured: The model could not be measured."
    empty = new_project(client, "Empty", with_data=False)
    refused = client.post(f"/api/projects/{empty}/estimate", data={})
    assert refused.status_code == 400 and "has no images yet" in refused.json()["error"]


def test_lr_find_from_the_advanced_settings(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    pid = new_project(client)
    page = client.get(f"/projects/{pid}/train").text
    assert 'id="lr-find"' in page and 'id="lr-find-plot"' in page
    r = client.post(f"/api/projects/{pid}/lr-find", data={"image_size": "32", "lr": "0.001"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["suggested"] == 0.002 and body["steep"] == 0.01
    plot = client.get(body["plot_url"])
    assert plot.status_code == 200 and plot.content.startswith(b"\x89PNG")
    for bad in ("../project.json", "nothing.png", "..%2F..%2Fstudio.db"):
        assert client.get(f"/projects/{pid}/lr-find/{bad}").status_code >= 400, bad
    refused = client.post(f"/api/projects/{pid}/lr-find", data={"lr": "fast"})
    assert refused.status_code == 400 and "must be a number" in refused.json()["error"]
    monkeypatch.setenv("FAKE_CLI_MODE", "fail")
    failed = client.post(f"/api/projects/{pid}/lr-find", data={})
    assert failed.status_code == 400 and "too few steps" in failed.json()["error"]


def test_failed_job_shows_its_error(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    pid = new_project(client)
    monkeypatch.setenv("FAKE_CLI_MODE", "fail")
    jid = start_training(client, pid)
    view = wait_job(client, pid, jid)
    assert view["status"] == "failed"
    assert view["error"] == "Class 'dogs' has 1 image; add images or lower valid_split."
    assert "add images or lower valid_split" in client.get(f"/projects/{pid}/train").text


def test_stop_and_one_training_at_a_time(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    pid = new_project(client)
    monkeypatch.setenv("FAKE_CLI_MODE", "sleep")
    jid = start_training(client, pid)
    r = client.post(f"/projects/{pid}/train", data={"model": "auto"})
    assert r.status_code == 400 and "already running" in r.text
    r = client.post(f"/projects/{pid}/delete", data={"confirm": "Postcards"})
    assert r.status_code == 400 and "Stop it first" in r.text
    r = client.post(f"/projects/{pid}/jobs/{jid}/stop")
    assert r.status_code == 200 and "Job stopped" in r.text
    assert client.get(f"/api/projects/{pid}/jobs/{jid}").json()["status"] == "stopped"


def test_restart_shows_true_state_never_stuck_running(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_CLI_MODE", "sleep")
    with studio_client(home, cli=FAKE_CLI) as first:
        pid = new_project(first)
        jid = start_training(first, pid)
        pid_of_runner = first.app.state.studio.store.get_job(jid).pid  # type: ignore[attr-defined]
    # a new studio (restart) sees the runner still alive
    with studio_client(home, cli=FAKE_CLI) as second:
        assert second.get(f"/api/projects/{pid}/jobs/{jid}").json()["status"] == "running"
        # the job's processes die without a word (kill -9 of the whole group, e.g. out of memory)
        os.killpg(pid_of_runner, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid_of_runner, 0)
                # not our child any more in this app, but the first app's Popen still holds it: reap
                first.app.state.studio.jobs.refresh(  # type: ignore[attr-defined]
                    first.app.state.studio.store.get_job(jid)
                )  # type: ignore[attr-defined]
            except ProcessLookupError:
                break
            time.sleep(0.05)
    with studio_client(home, cli=FAKE_CLI) as third:
        view = third.get(f"/api/projects/{pid}/jobs/{jid}").json()
        assert view["status"] == "failed" and "ended without reporting a result" in view["error"]


# fixes --------------------------------------------------------------------------------------
def test_relabel_delete_undo_and_retrain(client: TestClient, home: Path) -> None:
    pid = new_project(client)
    jid = start_training(client, pid)
    assert wait_job(client, pid, jid)["status"] == "finished"
    data = home / "projects/postcards/data"
    assert 'id="undo"' not in client.get(f"/projects/{pid}/results").text  # nothing to undo yet
    r = client.post(
        f"/projects/{pid}/fix/relabel",
        data={"path": "data/cats/cats_0.png", "label": "dogs"},
        headers={"referer": f"{BASE}/projects/{pid}/results"},
    )
    assert 'id="undo"' in r.text and "relabelled cats_0.png → dogs" in r.text
    assert re.search(r"<li>\d{1,2} [A-Z][a-z]{2} \d{4}, \d\d:\d\d: relabelled", r.text)  # a human time
    assert r.status_code == 200 and "Moved cats_0.png to &#39;dogs&#39;" in r.text
    assert (data / "dogs/cats_0.png").is_file() and not (data / "cats/cats_0.png").exists()
    assert "moved or fixed" in r.text  # the gallery knows the file left
    r = client.post(
        f"/projects/{pid}/fix/delete",
        data={"path": "data/cats/cats_1.png"},
        headers={"accept": "application/json"},
    )
    assert r.json()["ok"] and (home / "projects/postcards/trash/cats/cats_1.png").is_file()
    assert not (data / "cats/cats_1.png").exists()
    client.post(f"/projects/{pid}/fix/undo")
    assert (data / "cats/cats_1.png").is_file()
    client.post(f"/projects/{pid}/fix/undo")
    assert (data / "cats/cats_0.png").is_file() and not (data / "dogs/cats_0.png").exists()
    assert 'id="undo"' not in client.get(f"/projects/{pid}/results").text  # all undone
    r = client.post(f"/projects/{pid}/fix/undo")
    assert r.status_code == 400 and "nothing to undo" in r.text
    for bad in ("../../studio.sqlite", "trash/x.png", "data/cats/none.png", "jobs/1/run/model/config.json"):
        r = client.post(f"/projects/{pid}/fix/delete", data={"path": bad})
        assert r.status_code == 400, bad
    assert (home / "studio.sqlite").is_file()
    r = client.post(f"/projects/{pid}/fix/relabel", data={"path": "data/cats/cats_2.png", "label": "../../x"})
    assert r.status_code == 400
    other = new_project(client, "Other", with_data=False)  # a job is reachable only through its own project
    assert client.get(f"/api/projects/{other}/jobs/{jid}").status_code == 404
    assert client.get(f"/projects/{other}/jobs/{jid}/model.zip").status_code == 404
    r = client.post(f"/projects/{pid}/jobs/{jid}/retrain")
    assert r.status_code == 200
    new = int(str(r.url).split("/jobs/")[1].split("?")[0])
    assert new != jid and wait_job(client, pid, new)["params"] == {"model": "auto", "epochs": 2}


# use ----------------------------------------------------------------------------------------
@pytest.fixture
def allowed(tmp_path: Path) -> Path:
    """A folder the studio of ``folder_client`` may read."""
    folder = tmp_path / "allowed"
    folder.mkdir()
    return folder


@pytest.fixture
def folder_client(home: Path, allowed: Path) -> Iterator[TestClient]:
    with studio_client(home, cli=FAKE_CLI, folders=[allowed]) as c:
        yield c


def test_predict_uploads_folder_csv_sort_and_model_zip(
    folder_client: TestClient, home: Path, allowed: Path
) -> None:
    client = folder_client
    pid = new_project(client)
    r = client.post(f"/projects/{pid}/use/folder", data={"folder": str(allowed)})
    assert r.status_code == 400 and "no trained model" in r.text
    jid = start_training(client, pid)
    wait_job(client, pid, jid)
    r = client.post(
        f"/projects/{pid}/use/upload",
        data={"threshold": "0.6", "sort": "1"},
        files=[
            ("files", ("new1.png", png_bytes(0), "image/png")),
            ("files", ("new2.png", png_bytes(1), "image/png")),
        ],
    )
    assert r.status_code == 200
    prid = int(str(r.url).split("/jobs/")[1].split("?")[0])
    view = wait_job(client, pid, prid)
    assert view["status"] == "finished" and view["predicted"] == 2 and view["expected"] == 2
    page = client.get(f"/projects/{pid}/use?job={prid}").text
    assert "new1.png" in page and "unsure" in page and page.count("/thumb?path=uploads") == 2
    csv_text = client.get(f"/projects/{pid}/jobs/{prid}/predictions.csv").text
    assert csv_text.startswith("path,label,score,top_k,status,model") and csv_text.count("\n") == 3
    sorted_zip = zipfile.ZipFile(io.BytesIO(client.get(f"/projects/{pid}/jobs/{prid}/sorted.zip").content))
    assert sorted(sorted_zip.namelist()) == [f"sorted-{prid}/cats/new1.png", f"sorted-{prid}/cats/new2.png"]
    model_zip = zipfile.ZipFile(io.BytesIO(client.get(f"/projects/{pid}/jobs/{jid}/model.zip").content))
    assert "postcards-model/config.json" in model_zip.namelist()
    assert client.get(f"/projects/{pid}/jobs/{prid}/model.zip").status_code == 400
    assert client.get(f"/projects/{pid}/jobs/{jid}/predictions.csv").status_code == 400
    # a folder on the server
    use_page = client.get(f"/projects/{pid}/use").text
    assert "may read these folders" in use_page and f"<code>{allowed}</code>" in use_page
    box = re.search(r'<input name="threshold" type="number" min="([\d.]+)" max="([\d.]+)"', use_page)
    assert box is not None and (float(box[1]), float(box[2])) == (0.0, 1.0)  # PredictConfig.threshold
    folder = allowed / "incoming"
    folder.mkdir()
    for i in range(3):
        (folder / f"scan{i}.png").write_bytes(png_bytes(i % 2, i))
    r = client.post(f"/projects/{pid}/use/folder", data={"folder": str(folder), "model_job": str(jid)})
    view = wait_job(client, pid, int(str(r.url).split("/jobs/")[1].split("?")[0]))
    assert view["predicted"] == 3
    for form, message in (
        ({"folder": str(allowed / "missing")}, "not found"),
        ({"folder": str(folder), "threshold": "2"}, "between 0 and 1"),
        ({"folder": str(folder), "model_job": "999"}, "has no model"),
        ({"folder": str(home / "projects/postcards/data")}, "only read folders you allowed"),
        ({"folder": f"{allowed}/../../home"}, "only read folders you allowed"),
        ({"folder": "incoming"}, "not a full path"),
    ):
        r = client.post(f"/projects/{pid}/use/folder", data=form)
        assert r.status_code == 400 and message in r.text, form


def test_data_doctor_findings_and_fix_from_the_data_page(client: TestClient, home: Path) -> None:
    pid = new_project(client)
    r = client.post(f"/projects/{pid}/doctor")
    jid = int(str(r.url).split("/jobs/")[1].split("?")[0])
    assert f"Data doctor #{jid}" in r.text
    assert wait_job(client, pid, jid)["status"] == "finished"
    steps = json.loads((home / f"projects/postcards/jobs/{jid}/steps.json").read_text())
    assert steps[0][2:4] == ["check", str(home / "projects/postcards/data")] and "--doctor" in steps[0]
    page = client.get(f"/projects/{pid}/data").text
    assert "1 leaking across splits" in page and "leakage across splits" in page and "dark" in page
    assert "&size=64" in page  # the duplicates table shows each file's thumbnail
    assert "Relabel as dogs" in page
    r = client.post(
        f"/projects/{pid}/fix/relabel",
        data={"path": "data/cats/cats_0.png", "label": "dogs"},
        headers={"referer": f"{BASE}/projects/{pid}/data"},
    )
    assert r.status_code == 200 and "<h1>Data</h1>" in r.text and "moved or fixed" in r.text
    assert (home / "projects/postcards/data/dogs/cats_0.png").is_file()


def test_space_export_needs_a_model(client: TestClient) -> None:
    pid = new_project(client)
    r = client.post(f"/projects/{pid}/doctor")
    jid = int(str(r.url).split("/jobs/")[1].split("?")[0])
    wait_job(client, pid, jid)
    assert client.post(f"/projects/{pid}/jobs/{jid}/space").status_code == 400
    assert client.get(f"/projects/{pid}/jobs/{jid}/space.zip").status_code == 400


def test_cross_site_posts_are_refused(client: TestClient) -> None:
    r = client.post("/projects", data={"name": "x"}, headers={"origin": "http://evil.example"})
    assert r.status_code == 403 and client.get("/api/projects").json() == []
    r = client.post("/projects", data={"name": "x"}, headers={"origin": BASE})
    assert r.status_code == 200


def test_studio_command_prints_address_and_warns_on_open_host(tmp_path: Path) -> None:
    import socket
    import subprocess

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sortsight",
            "studio",
            "--host",
            "0.0.0.0",
            "--port",
            str(port),
            "--home",
            str(tmp_path / "h"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()
        warning = proc.stderr.readline()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert "WARNING" in warning and "reachable by every machine" in warning
    assert f"http://127.0.0.1:{port}/?token=" in line  # an open host always gets a token


def test_pages_render(client: TestClient) -> None:
    pid = new_project(client)
    for url in (
        "/",
        f"/projects/{pid}",
        f"/projects/{pid}/data",
        f"/projects/{pid}/train",
        f"/projects/{pid}/results",
        f"/projects/{pid}/use",
        "/static/studio.js",
    ):
        assert client.get(url).status_code == 200, url
    assert "No trained model yet" in client.get(f"/projects/{pid}/results").text
    assert client.get("/no/such/page").status_code == 404


def test_job_commands_parse_with_the_real_cli(tmp_path: Path) -> None:
    """The commands the studio writes are accepted by sortsight's own CLI (parsed, not run)."""
    from sortsight.cli import cli
    from sortsight.studio.routes_train import _train_params, advanced_options, train_args

    form = {"model": "efficientnet_lite1", "epochs": "3", "candidates": "2", "time_budget": "5"}
    for name, spec in advanced_options().items():
        low = spec["min"] if spec["min"] is not None else 4
        form[name] = spec["choices"][0] if spec["choices"] else str(low)
    args = train_args(tmp_path / "data", tmp_path / "run", _train_params(form))
    commands = [
        args,
        [*train_args(tmp_path / "data", None, _train_params(form)), "--estimate-only", "--json"],
        ["evaluate", str(tmp_path / "run")],
        [
            "predict",
            str(tmp_path / "model"),
            str(tmp_path / "in"),
            "--csv",
            "p.csv",
            "--threshold",
            "0.6",
            "--sort-into",
            "out",
        ],
        ["check", str(tmp_path / "data"), "--doctor", "--doctor-out", str(tmp_path / "doc")],
    ]
    for command in commands:
        sub = cli.get_command(None, command[0])  # type: ignore[arg-type]
        assert sub is not None, command[0]
        ctx = sub.make_context(command[0], list(command[1:]))
        assert ctx.params, command
    assert "--time-budget" in args and "5m" in args


def test_the_advanced_panel_comes_from_the_config_declarations() -> None:
    """Each option is declared once: the studio's choices, ranges and help are TrainConfig's own."""
    from sortsight.config import TrainConfig, describe_fields
    from sortsight.errors import ConfigError
    from sortsight.studio.routes_train import _train_params, advanced_options

    declared = {d["name"]: d for d in describe_fields(TrainConfig)}
    panel = advanced_options()
    assert panel["optimizer"]["choices"] == declared["optimizer"]["choices"]
    assert panel["lr"]["help"] == declared["lr"]["help"] and panel["lr"]["max"] == declared["lr"]["max"]
    with pytest.raises(ConfigError, match="'lr' must be between"):
        _train_params({"lr": str(declared["lr"]["max"] * 10)})
    with pytest.raises(ConfigError, match="'batch_size' must be a whole number"):
        _train_params({"batch_size": "many"})
    with pytest.raises(ConfigError, match="'strategy' must be one of auto, head, finetune"):
        _train_params({"strategy": "fast"})
    assert _train_params({"valid_split": "validation", "epochs": "3"}) == {
        "model": "auto",
        "valid_split": "validation",
        "epochs": 3,
    }


def test_the_train_form_ranges_are_the_config_ranges(client: TestClient) -> None:
    """The Candidates and Epochs boxes allow exactly what TrainConfig accepts (once: max 6 vs 5)."""
    from sortsight.config import TrainConfig, describe_fields
    from sortsight.errors import ConfigError
    from sortsight.studio.routes_train import _train_params

    declared = {d["name"]: d for d in describe_fields(TrainConfig)}
    page = client.get(f"/projects/{new_project(client)}/train").text
    for name in ("candidates", "epochs"):
        box = re.search(rf'<input name="{name}" type="number" min="(\d+)" max="(\d+)"', page)
        assert box is not None, name
        assert (int(box[1]), int(box[2])) == (declared[name]["min"], declared[name]["max"]), name
    with pytest.raises(ConfigError, match="'candidates' must be between 1 and 5"):
        _train_params({"candidates": str(declared["candidates"]["max"] + 1)})
    with pytest.raises(ConfigError, match="Time budget must be positive, got '0m'"):
        _train_params({"time_budget": "0"})
    # the box counts minutes; a duration written out is kept; TrainConfig reads all of them
    for typed, seconds in (("5", 300.0), ("2.5", 150.0), ("90s", 90.0), ("1h30m", 5400.0)):
        budget = _train_params({"time_budget": typed})["time_budget"]
        assert TrainConfig(data_path=".", time_budget=budget).time_budget == seconds, typed


def test_an_empty_project_points_to_the_data_step(client: TestClient) -> None:
    pid = new_project(client, with_data=False)
    data_page = client.get(f"/projects/{pid}/data").text
    message = data_page.split('<p class="empty">')[1].split("</p>")[0]
    assert "This project has no images yet" in message and "CSV" not in message  # not the CLI's text
    assert 'id="zip-form"' in data_page and 'id="tagged-form"' in data_page  # either kind of project
    train = client.get(f"/projects/{pid}/train").text
    assert 'id="data-not-ready"' in train and f'href="/projects/{pid}/data">Go to 1 · Data' in train
    r = client.post(f"/projects/{pid}/train", data={"model": "auto"})
    assert r.status_code == 400 and "Not ready for training yet. This project has no images yet" in r.text
    assert client.get("/favicon.ico").url.path == "/static/favicon.svg"
