"""Shared helpers of the studio tests: a studio client, generated zips, projects and jobs."""

from __future__ import annotations

import io
import stat
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import make_image
from fastapi.testclient import TestClient

from sortsight.studio import create_app

#: where the tests' studio is reached (a loopback address: the studio refuses other Host names)
BASE = "http://127.0.0.1:7860"
FAKE_CLI = (sys.executable, str(Path(__file__).parent / "studio_fake_cli.py"))


def png_bytes(label_index: int = 0, seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    make_image(label_index, seed=seed).save(buffer, "PNG")
    return buffer.getvalue()


def make_zip(entries: dict[str, bytes], *, symlink: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
    return buffer.getvalue()


def class_zip(per_class: int = 6, prefix: str = "") -> bytes:
    return make_zip(
        {
            f"{prefix}{name}/{name}_{i}.png": png_bytes(ci, i)
            for ci, name in enumerate(("cats", "dogs"))
            for i in range(per_class)
        }
    )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def studio_client(home: Path, **options: Any) -> TestClient:
    """A test client of a studio over ``home``, addressed like a browser on this computer would."""
    return TestClient(create_app(home, **options), base_url=BASE)


@pytest.fixture
def client(home: Path) -> Iterator[TestClient]:
    with studio_client(home, cli=FAKE_CLI) as c:
        yield c


def new_project(client: TestClient, name: str = "Postcards", with_data: bool = True) -> int:
    r = client.post("/projects", data={"name": name})
    assert r.status_code == 200
    pid = int(str(r.url).split("/projects/")[1].split("/")[0])
    if with_data:
        r = client.post(
            f"/projects/{pid}/data/zip", files={"archive": ("d.zip", class_zip(), "application/zip")}
        )
        assert "Added 12 image(s)" in r.text
    return pid


def wait_job(client: TestClient, pid: int, jid: int, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = client.get(f"/api/projects/{pid}/jobs/{jid}").json()
        if view["status"] not in ("queued", "running"):
            return view
        time.sleep(0.1)
    raise AssertionError(f"job {jid} still running after {timeout}s")


def start_training(client: TestClient, pid: int, **form: str) -> int:
    r = client.post(f"/projects/{pid}/train", data={"model": "auto", "epochs": "2", **form})
    assert r.status_code == 200, r.text
    return int(str(r.url).rstrip("/").split("/jobs/")[1].split("?")[0])
