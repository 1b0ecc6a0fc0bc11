"""Studio uploads and downloads under awkward input: reserved class names, repeated and hidden zip
entries, concurrent downloads of one model zip."""

from __future__ import annotations

import io
import logging
import threading
import warnings
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient
from studio_helpers import client, home, make_zip, new_project, png_bytes, start_training, wait_job

__all__ = ["client", "home"]  # fixtures shared from studio_helpers

RESERVED = ("train", "Validation", "test", "val", "valid", "dev", "training", "TESTING")


def upload_zip(client: TestClient, pid: int, data: bytes) -> str:
    r = client.post(f"/projects/{pid}/data/zip", files={"archive": ("z.zip", data, "application/zip")})
    assert r.status_code == 200, r.text
    return r.text


def test_relabel_to_a_split_name_is_refused(client: TestClient, home: Path) -> None:
    pid = new_project(client)
    data = home / "projects/postcards/data"
    for name in RESERVED:
        r = client.post(f"/projects/{pid}/fix/relabel", data={"path": "data/cats/cats_0.png", "label": name})
        assert r.status_code == 400 and "is the name of a split folder" in r.text, name
    assert sorted(p.name for p in data.iterdir()) == ["cats", "dogs"]
    assert (data / "cats/cats_0.png").is_file() and not list((home / "projects/postcards").glob("fixes/*"))


def test_adding_files_to_a_split_name_is_refused(client: TestClient, home: Path) -> None:
    pid = new_project(client)
    for name in RESERVED:
        r = client.post(
            f"/projects/{pid}/data/files",
            data={"label": name},
            files=[("files", ("x.png", png_bytes(0), "image/png"))],
        )
        assert r.status_code == 400 and "is the name of a split folder" in r.text, name
    assert sorted(p.name for p in (home / "projects/postcards/data").iterdir()) == ["cats", "dogs"]


def test_zip_class_folders_named_like_splits_are_left_out(client: TestClient, home: Path) -> None:
    pid = new_project(client, with_data=False)
    entries = {f"cats/c{i}.png": png_bytes(0, i) for i in range(3)}
    entries.update({f"dogs/d{i}.png": png_bytes(1, i) for i in range(3)})
    entries["test/t.png"] = png_bytes(2)  # no train/: not split folders, so "test" would be a class
    text = upload_zip(client, pid, make_zip(entries))
    assert "Added 6 image(s)" in text and "test/t.png (&#39;test&#39; is the name of a split folder" in text
    assert sorted(p.name for p in (home / "projects/postcards/data").iterdir()) == ["cats", "dogs"]
    # inside real split folders a class may not be named like a split either
    split = {
        f"{s}/{c}/{c}{i}.png": png_bytes(ci, i)
        for s in ("train", "test")
        for ci, c in enumerate("ab")
        for i in range(2)
    }
    split["train/validation/v.png"] = png_bytes(2)
    text = upload_zip(client, new_project(client, "Split", with_data=False), make_zip(split))
    assert "Added 8 image(s)" in text and "train/validation/v.png" in text


def test_zip_entries_with_one_name_are_all_kept_or_reported(client: TestClient, home: Path) -> None:
    pid = new_project(client, with_data=False)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w") as archive:
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate names we make on purpose
        for i in range(3):
            archive.writestr(f"cats/c{i}.png", png_bytes(0, i))
            archive.writestr(f"dogs/d{i}.png", png_bytes(1, i))
        archive.writestr("cats/c0.png", png_bytes(0, 50))  # same name, other picture
        archive.writestr("cats/C0.png", png_bytes(0, 51))  # same name on a case-insensitive disk
        archive.writestr("dogs/d1.png", png_bytes(1, 1))  # same name, same picture
    text = upload_zip(client, pid, buffer.getvalue())
    assert "Added 8 image(s)" in text
    assert "kept under a new name: cats/c0.png → c0 (2).png; cats/C0.png → C0 (3).png" in text
    assert "dogs/d1.png (a repeat of an earlier entry with the same name and content)" in text
    cats = home / "projects/postcards/data/cats"
    assert sorted(p.name for p in cats.iterdir()) == [
        "C0 (3).png",
        "c0 (2).png",
        "c0.png",
        "c1.png",
        "c2.png",
    ]
    assert (cats / "c0.png").read_bytes() == png_bytes(0, 0) and (
        cats / "c0 (2).png"
    ).read_bytes() == png_bytes(0, 50)


def test_zip_entries_in_hidden_folders_are_reported_not_counted(client: TestClient, home: Path) -> None:
    pid = new_project(client, with_data=False)
    entries = {f"{c}/{c}{i}.png": png_bytes(ci, i) for ci, c in enumerate(("cats", "dogs")) for i in range(3)}
    entries["cats/.thumbnails/t.png"] = png_bytes(0, 9)
    entries[".hidden/cats/h.png"] = png_bytes(0, 8)
    entries["dogs/@eaDir/e.png"] = png_bytes(1, 8)
    entries["dogs/.secret.png"] = png_bytes(1, 9)
    text = upload_zip(client, pid, make_zip(entries))
    assert "Added 6 image(s)" in text and "Left out 4" in text
    assert "cats/.thumbnails/t.png (inside a hidden or system folder" in text
    assert "dogs/.secret.png (a hidden file" in text
    summary = client.get(f"/api/projects/{pid}/data").json()
    assert summary["totals"]["total"] == 6  # what was counted as added is what training sees


def test_six_concurrent_model_downloads_build_the_zip_once(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    pid = new_project(client)
    jid = start_training(client, pid)
    assert wait_job(client, pid, jid)["status"] == "finished"
    url = f"/projects/{pid}/jobs/{jid}/model.zip"
    answers: list[tuple[int, bytes]] = []
    barrier = threading.Barrier(6)

    def download() -> None:
        barrier.wait()
        r = client.get(url)
        answers.append((r.status_code, r.content))

    caplog.set_level(logging.INFO, logger="sortsight.studio")
    threads = [threading.Thread(target=download) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert [status for status, _ in answers] == [200] * 6
    for _, content in answers:
        assert "postcards-model/config.json" in zipfile.ZipFile(io.BytesIO(content)).namelist()
    assert len([r for r in caplog.records if r.getMessage().startswith("zipped ")]) == 1
    job_folder = Path(client.app.state.studio.home) / "projects/postcards/jobs" / str(jid)  # type: ignore[attr-defined]
    assert not [p.name for p in job_folder.iterdir() if "tmp" in p.name]
