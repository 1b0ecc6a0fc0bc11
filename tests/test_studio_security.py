"""Studio security: DNS rebinding (foreign Host), cross-site writes (foreign Origin), allowed folders."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient
from studio_helpers import BASE, client, home, new_project, start_training, studio_client, wait_job

from sortsight.studio.security import check_folder, host_names, own_host_names

__all__ = ["client", "home"]  # fixtures shared from studio_helpers


def test_a_foreign_host_is_refused_for_every_request(client: TestClient) -> None:
    """A page of evil.example whose name resolves to 127.0.0.1 (DNS rebinding) reaches nothing."""
    evil = {"host": "evil.example:7860"}
    for method, url in (("GET", "/"), ("GET", "/api/projects"), ("GET", "/static/studio.js")):
        r = client.request(method, url, headers=evil)
        assert r.status_code == 400 and "does not answer to the address 'evil.example:7860'" in r.text
    r = client.post(
        "/projects", data={"name": "stolen"}, headers={**evil, "origin": "http://evil.example:7860"}
    )
    assert r.status_code == 400
    assert client.get("/api/projects").json() == []  # nothing was created
    for name in ("127.0.0.1:7860", "localhost", "[::1]:7860", "LOCALHOST:1"):
        assert client.get("/api/projects", headers={"host": name}).status_code == 200, name


def test_a_foreign_origin_cannot_change_anything(client: TestClient) -> None:
    for headers in (
        {"origin": "http://evil.example"},
        {"origin": "null"},
        {"origin": "http://127.0.0.1:9999"},  # another local server is another site too
        {"sec-fetch-site": "cross-site"},
    ):
        r = client.post("/projects", data={"name": "x"}, headers=headers)
        assert r.status_code == 403 and "other sites are refused" in r.text, headers
    assert client.get("/api/projects").json() == []
    assert client.post("/projects", data={"name": "x"}, headers={"origin": BASE}).status_code == 200


def test_more_host_names_can_be_allowed(home: Path) -> None:
    with studio_client(home, hosts=("127.0.0.1", "studio.lan")) as c:
        assert c.get("/", headers={"host": "studio.lan:8080"}).status_code == 200
        assert c.get("/", headers={"host": "localhost"}).status_code == 400


def test_host_names_of_a_bound_address() -> None:
    assert host_names("[::1]:7860") == "::1" and host_names("a.b:1") == "a.b" and host_names("") is None
    assert own_host_names("127.0.0.1") == ("127.0.0.1", "::1", "localhost")
    assert "192.168.1.5" in own_host_names("192.168.1.5")
    open_names = own_host_names("0.0.0.0")
    assert {"127.0.0.1", "localhost"} <= set(open_names) and "evil.example" not in open_names


def test_use_folder_reads_only_allowed_folders(client: TestClient, tmp_path: Path) -> None:
    """Without --allow-folder no folder of the computer can be read, even one that exists."""
    pid = new_project(client)
    wait_job(client, pid, start_training(client, pid))
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "a.png").write_bytes(b"x")
    r = client.post(f"/projects/{pid}/use/folder", data={"folder": str(secret)})
    assert r.status_code == 400 and "only read folders you allowed (allowed: none yet)" in r.text
    assert "--allow-folder" in r.text
    page = client.get(f"/projects/{pid}/use").text
    assert 'id="no-folders"' in page and 'name="folder"' not in page
    jobs = client.get(f"/projects/{pid}/use").text
    assert "Predictions of job" not in jobs  # no predict job was started


def test_check_folder(tmp_path: Path) -> None:
    inside = tmp_path / "a" / "b"
    inside.mkdir(parents=True)
    assert check_folder(str(inside), [tmp_path / "a"]) == inside.resolve()
    assert check_folder(f"  {tmp_path / 'a'}  ", [tmp_path / "a"]) == (tmp_path / "a").resolve()
    link = tmp_path / "a" / "out"
    link.symlink_to(tmp_path)  # a link inside an allowed folder pointing out of it
    for bad in (str(tmp_path), str(link), f"{inside}/../../..", "relative/path", "", "a\x00b"):
        with pytest.raises(Exception) as info:
            check_folder(bad, [tmp_path / "a"])
        assert type(info.value).__name__ == "DataError", bad


def test_studio_command_allows_folders_from_option_and_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn
    from click.testing import CliRunner

    from sortsight.cli import cli

    seen: dict = {}

    def fake_run(app: object, **kwargs: object) -> None:
        studio = app.state.studio  # type: ignore[attr-defined]
        seen["folders"] = studio.folders

    monkeypatch.setattr(uvicorn, "run", fake_run)
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    home_dir = str(tmp_path / "h")
    result = CliRunner().invoke(cli, ["studio", "--home", home_dir, "--allow-folder", str(one)])
    assert result.exit_code == 0, result.output
    assert seen["folders"] == (one.resolve(),) and f"Folders it may sort: {one.resolve()}" in result.output
    result = CliRunner().invoke(
        cli, ["studio", "--home", home_dir], env={"SORTSIGHT_STUDIO_FOLDERS": f"{one}:{two}"}
    )
    assert result.exit_code == 0, result.output
    assert seen["folders"] == (one.resolve(), two.resolve())
