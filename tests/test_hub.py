"""Hub push: private by default, fails fast offline, never shows the token or alters the folder."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from share_helpers import free_port, tiny_run, tree_digest

from sortsight.errors import ExportError
from sortsight.export import push
from sortsight.hub import check_hub_reachable, push_to_hub

FAKE_TOKEN = "hf_FakeTokenForTests0123456789abcdefXYZ"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_run(tmp_path_factory.mktemp("share"))


@pytest.fixture
def no_login(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No token in the environment and no stored login; the Hub address is a closed port on 127.0.0.1,
    so no test can reach the real Hub with a fake token, even on a machine with network."""
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))


@pytest.fixture
def listening() -> Iterator[str]:
    """An endpoint on 127.0.0.1 that accepts connections (the probe passes; the fake API does the rest)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()


class FakeApi:
    """Records what push_to_hub asks of the Hub; optionally fails like the real client."""

    def __init__(self, endpoint: str, fail: Exception | None = None) -> None:
        self.endpoint = endpoint
        self.fail = fail
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def create_repo(self, repo_id: str, **kwargs: Any) -> str:
        self.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))
        if self.fail is not None:
            raise self.fail
        return f"{self.endpoint}/{'spaces/' if kwargs['repo_type'] == 'space' else ''}{repo_id}"

    def upload_folder(self, **kwargs: Any) -> None:
        self.calls.append(("upload_folder", kwargs))


def test_unreachable_hub_fails_fast_clearly_and_keeps_the_folder(
    run_dir: Path, no_login: None, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """The default endpoint (HF_ENDPOINT, a closed port here): fails at once, clearly."""
    before = tree_digest(run_dir)
    caplog.set_level(logging.DEBUG)
    start = time.monotonic()
    with pytest.raises(ExportError) as err:
        push_to_hub(run_dir, "me/shapes", token=FAKE_TOKEN)
    elapsed = time.monotonic() - start
    message = str(err.value)
    assert elapsed < 15, f"took {elapsed:.1f}s"
    assert "\n" not in message
    assert "cannot reach the Hugging Face Hub" in message
    assert "unchanged" in message
    captured = capsys.readouterr()
    assert FAKE_TOKEN not in message + caplog.text + captured.out + captured.err
    assert tree_digest(run_dir) == before


def test_closed_port_is_reported_at_once(run_dir: Path, no_login: None) -> None:
    start = time.monotonic()
    with pytest.raises(ExportError, match=r"cannot reach .*connection refused"):
        check_hub_reachable(f"http://127.0.0.1:{free_port()}", timeout=2)
    assert time.monotonic() - start < 3


def test_no_token_says_how_to_log_in(run_dir: Path, no_login: None) -> None:
    with pytest.raises(ExportError, match=r"no Hugging Face token found.*hf auth login"):
        push_to_hub(run_dir / "model", "me/shapes")


def test_offline_flag_is_respected(run_dir: Path, no_login: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ExportError, match="HF_HUB_OFFLINE"):
        push_to_hub(run_dir / "model", "me/shapes", token=FAKE_TOKEN)


def test_model_push_is_private_by_default(run_dir: Path, listening: str, no_login: None) -> None:
    api = FakeApi(listening)
    url = push_to_hub(run_dir, "me/shapes", token=FAKE_TOKEN, api=api)  # a run folder pushes its model/
    (name, create), (_, upload) = api.calls
    assert name == "create_repo"
    assert create["private"] is True and create["repo_type"] == "model" and create["exist_ok"] is True
    assert upload["folder_path"] == str(run_dir / "model") and upload["repo_id"] == "me/shapes"
    assert ".gradio/**" in upload["ignore_patterns"]
    assert url.endswith("/me/shapes")


def test_space_push_and_public_opt_in(
    run_dir: Path, listening: str, tmp_path: Path, no_login: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sortsight.space import export_space

    space = export_space(run_dir, tmp_path / "space", examples=[])
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)  # the token from the environment
    api = FakeApi(listening)
    push_to_hub(space, "me/shapes-demo", repo_type="space", private=False, api=api)
    create = api.calls[0][1]
    assert (create["repo_type"], create["private"], create["space_sdk"]) == ("space", False, "gradio")


def test_hub_refusal_is_one_line_without_the_token(
    run_dir: Path, listening: str, no_login: None, caplog: pytest.LogCaptureFixture
) -> None:
    import httpx
    from huggingface_hub.errors import HfHubHTTPError

    request = httpx.Request("POST", f"{listening}/api/repos/create")
    response = httpx.Response(401, request=request)
    refusal = HfHubHTTPError(f"401 Unauthorized: bad token {FAKE_TOKEN}\nmore", response=response)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ExportError) as err:
        push_to_hub(run_dir, "me/shapes", token=FAKE_TOKEN, api=FakeApi(listening, fail=refusal))
    assert "rejected the token (401)" in str(err.value) and "\n" not in str(err.value)
    assert FAKE_TOKEN not in str(err.value) + caplog.text
    assert err.value.__cause__ is None and err.value.__suppress_context__  # no chained token text

    with pytest.raises(ExportError, match=r"failed \(ConnectionError: .*\*\*\*"):
        push_to_hub(
            run_dir,
            "me/shapes",
            token=FAKE_TOKEN,
            api=FakeApi(listening, fail=ConnectionError(f"reset while sending {FAKE_TOKEN}")),
        )


@pytest.mark.parametrize("repo_id", ["shapes", "me/", "me/sha pes", "a/b/c"])
def test_bad_repo_ids(run_dir: Path, repo_id: str) -> None:
    with pytest.raises(ExportError, match="not a Hub repo id"):
        push_to_hub(run_dir, repo_id, token=FAKE_TOKEN)


def test_folder_checks(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="not a Space folder"):
        push_to_hub(run_dir / "model", "me/x", repo_type="space", token=FAKE_TOKEN)
    with pytest.raises(ExportError, match="not a folder"):
        push_to_hub(tmp_path / "nope", "me/x", token=FAKE_TOKEN)
    with pytest.raises(ExportError, match="not a model folder"):
        push_to_hub(tmp_path, "me/x", token=FAKE_TOKEN)


def test_facade_guesses_the_repo_type(run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sortsight.export as export
    from sortsight.space import export_space

    seen: list[tuple[Path, str, bool]] = []
    monkeypatch.setattr(
        export,
        "push_to_hub",
        lambda folder, repo_id, **kw: seen.append((folder, kw["repo_type"], kw["private"])),
    )
    space = export_space(run_dir, tmp_path / "space", examples=[])
    push(space, "me/x")
    push(run_dir, "me/x")
    assert seen == [(space, "space", True), (run_dir / "model", "model", True)]


def test_cli_push_fails_fast_without_showing_the_token(
    run_dir: Path, tmp_path: Path, no_login: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from sortsight.cli import cli

    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    space = tmp_path / "space"
    start = time.monotonic()
    result = CliRunner().invoke(
        cli, ["export", str(run_dir), "--space", str(space), "--push-to-hub", "me/shapes-demo"]
    )
    assert time.monotonic() - start < 20
    assert result.exit_code == 1
    assert "Pushing the space folder to me/shapes-demo (private)" in result.output
    assert "Error: cannot reach the Hugging Face Hub" in result.output
    assert "Traceback" not in result.output and FAKE_TOKEN not in result.output
    assert (space / "app.py").is_file() and (space / "model" / "model.safetensors").is_file()  # intact

    before = tree_digest(run_dir)
    result = CliRunner().invoke(cli, ["export", str(run_dir), "--push-to-hub", "me/shapes"])
    assert result.exit_code == 1 and "(private)" in result.output and FAKE_TOKEN not in result.output
    assert tree_digest(run_dir) == before


def test_cli_pushes_an_existing_space_folder_as_a_space(
    run_dir: Path, tmp_path: Path, no_login: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    import sortsight.export as export
    from sortsight.cli import cli
    from sortsight.space import export_space

    seen: list[tuple[str, str, bool]] = []
    monkeypatch.setattr(
        export,
        "push_to_hub",
        lambda folder, repo_id, **kw: (
            seen.append((str(folder), kw["repo_type"], kw["private"])) or f"https://hub.test/{repo_id}"
        ),
    )
    space = export_space(run_dir, tmp_path / "space", examples=[])
    result = CliRunner().invoke(cli, ["export", str(space), "--push-to-hub", "me/demo", "--public"])
    assert result.exit_code == 0, result.output
    assert seen == [(str(space), "space", False)]
    assert "Pushing the space folder to me/demo (public)" in result.output
    assert "https://hub.test/me/demo" in result.output
