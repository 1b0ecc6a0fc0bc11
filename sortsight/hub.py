"""Push a model folder or a Space folder to the Hugging Face Hub (private by default).

The token comes from the ``token`` argument, else from the environment (``HF_TOKEN``) or the
user's ``hf auth login``; it is never printed, logged, or put into an error message. Before any
upload the Hub is probed with a short TCP connect, so an offline machine fails in seconds with
one clear line, and the local folder is never touched (the push only reads it).

    >>> from sortsight.hub import push_to_hub
    >>> url = push_to_hub("runs/demo/model", "me/sorter")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Literal

from sortsight.errors import ExportError
from sortsight.runs import RunFolder

__all__ = ["IGNORE_PATTERNS", "check_hub_reachable", "check_repo_id", "push_to_hub"]

log = logging.getLogger(__name__)

RepoType = Literal["model", "space", "dataset"]

# Local clutter that running the app or Python leaves behind; never uploaded.
IGNORE_PATTERNS = [".gradio/**", "**/__pycache__/**", "*.pyc", ".cache/**", ".DS_Store", "**/.DS_Store"]

_LOGIN_HINT = "run `hf auth login` (or set HF_TOKEN to a token with write access)"


def push_to_hub(
    folder: str | Path,
    repo_id: str,
    *,
    repo_type: RepoType = "model",
    private: bool = True,
    token: str | None = None,
    commit_message: str | None = None,
    endpoint: str | None = None,
    timeout: float = 5.0,
    api: Any = None,
) -> str:
    """Create (if needed) the repo ``repo_id`` and upload ``folder`` to it.

    Args:
        folder: a model folder (``config.json`` inside; a run folder means its ``model/``) or a
            Space folder (``app.py`` and ``README.md`` inside, see :func:`sortsight.space.export_space`).
        repo_id: ``"user/name"`` or ``"org/name"``.
        repo_type: ``"model"`` or ``"space"`` (a Gradio Space).
        private: create the repo private (the default); an existing repo keeps its visibility.
        token: a Hugging Face token; by default ``HF_TOKEN`` or the stored login.
        commit_message: defaults to "Upload with sortsight".
        endpoint: the Hub address (default ``HF_ENDPOINT`` or https://huggingface.co).
        timeout: seconds allowed for the reachability probe.
        api: an ``HfApi``-like object (seam for tests); built from ``endpoint`` and ``token``
            when omitted.

    Returns:
        The URL of the repo.

    Raises:
        ExportError: bad folder or repo id, no token, Hub unreachable, or the Hub refused.
    """
    folder = Path(folder)
    if repo_type == "model":  # a run folder: push its model (a folder without one: _check_folder says)
        with contextlib.suppress(ExportError):
            folder = RunFolder.resolve(folder, error=ExportError).model_dir
    _check_folder(folder, repo_type)
    check_repo_id(repo_id)
    token = token or _stored_token()
    if not token:
        raise ExportError(f"no Hugging Face token found to push {repo_id}: {_LOGIN_HINT}")
    if api is None:
        from huggingface_hub import HfApi

        endpoint = endpoint or _default_endpoint()
        api = HfApi(endpoint=endpoint, token=token, library_name="sortsight")
    endpoint = str(getattr(api, "endpoint", None) or endpoint or _default_endpoint())
    check_hub_reachable(endpoint, timeout=timeout)

    log.info("pushing %s to %s %s (private=%s)", folder, repo_type, repo_id, private)
    try:
        url = api.create_repo(
            repo_id,
            repo_type=repo_type,
            private=private,
            exist_ok=True,
            space_sdk="gradio" if repo_type == "space" else None,
        )
        api.upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            repo_type=repo_type,
            commit_message=commit_message or "Upload with sortsight",
            ignore_patterns=IGNORE_PATTERNS,
        )
    except Exception as exc:  # the Hub client raises httpx, OSError and HfHubHTTPError kinds
        raise ExportError(_describe_failure(exc, repo_id, folder, token)) from None
    return str(url)


def check_hub_reachable(endpoint: str, *, timeout: float = 5.0) -> None:
    """Raise :class:`ExportError` within about ``timeout`` seconds if ``endpoint`` cannot be reached.

    Honours ``HF_HUB_OFFLINE`` and an HTTP(S) proxy from the environment (then the proxy is probed).
    """
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        raise ExportError("HF_HUB_OFFLINE is set, so nothing can be pushed: unset it and push again")
    parsed = urllib.parse.urlsplit(endpoint)
    if parsed.scheme not in {"http", "https"} or not parsed.hostname:
        raise ExportError(f"the Hub address {endpoint!r} is not an http(s) URL: fix HF_ENDPOINT")
    target = parsed
    proxy = urllib.request.getproxies().get(parsed.scheme)
    if proxy and not urllib.request.proxy_bypass(parsed.hostname):
        target = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    host = target.hostname or parsed.hostname
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        _connect(host, port, timeout)
    except OSError as exc:
        reason = _short_reason(exc) or "timed out"
        raise ExportError(
            f"cannot reach the Hugging Face Hub at {endpoint} ({reason}): "
            "check the internet connection, then push again; the local folder is unchanged"
        ) from None


def _connect(host: str, port: int, timeout: float) -> None:
    # getaddrinfo ignores socket timeouts, so the name lookup runs in a daemon thread that an
    # unanswered lookup cannot keep alive at exit.
    found: list[Any] = []
    errors: list[OSError] = []

    def lookup() -> None:
        try:
            found.extend(socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM))
        except OSError as exc:
            errors.append(exc)

    worker = threading.Thread(target=lookup, name="sortsight-hub-lookup", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise TimeoutError("name lookup timed out")
    if errors:
        raise errors[0]
    last: OSError | None = None
    for family, kind, proto, _name, address in found:
        with socket.socket(family, kind, proto) as sock:
            sock.settimeout(timeout)
            try:
                sock.connect(address)
                return
            except OSError as exc:
                last = exc
    raise last or OSError("no address")


def _short_reason(exc: BaseException) -> str:
    if isinstance(exc, socket.gaierror):
        return "name lookup failed"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    return (getattr(exc, "strerror", None) or str(exc) or type(exc).__name__).splitlines()[0]


def _describe_failure(exc: Exception, repo_id: str, folder: Path, token: str) -> str:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status == 401:
        text = f"the Hub rejected the token (401) for {repo_id}: {_LOGIN_HINT}"
    elif status == 403:
        text = f"the token may not write to {repo_id} (403): use a token with write access to that namespace"
    elif status is not None:
        text = f"the Hub refused the push to {repo_id} (HTTP {status}: {_first_line(exc)})"
    else:
        text = f"the push to {repo_id} failed ({type(exc).__name__}: {_first_line(exc)})"
    text = f"{text}; the local folder {folder} is unchanged"
    return text.replace(token, "***")


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__


def _stored_token() -> str | None:
    from huggingface_hub import get_token

    return get_token()


def _default_endpoint() -> str:
    """``HF_ENDPOINT`` as it is now (huggingface_hub reads it once, at import), else the Hub's default."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or str(constants.ENDPOINT)).rstrip("/")


def check_repo_id(repo_id: str) -> None:
    """Raise :class:`ExportError` unless ``repo_id`` is ``user/name`` as the Hub takes it."""
    parts = repo_id.split("/")
    valid = len(parts) == 2 and all(parts)
    if valid:
        from huggingface_hub.utils import HFValidationError, validate_repo_id

        try:
            validate_repo_id(repo_id)
        except HFValidationError:
            valid = False
    if not valid:
        raise ExportError(f"{repo_id!r} is not a Hub repo id: use the form user/name, e.g. me/photo-sorter")


def _check_folder(folder: Path, repo_type: str) -> None:
    if repo_type not in {"model", "space", "dataset"}:
        raise ExportError(f"unknown repo type {repo_type!r}: use 'model', 'space' or 'dataset'")
    if not folder.is_dir():
        raise ExportError(f"{folder} is not a folder: give the model folder or the Space folder to push")
    needed = {"space": ["app.py", "README.md"], "dataset": ["README.md"]}.get(repo_type, ["config.json"])
    missing = [name for name in needed if not (folder / name).is_file()]
    if missing:
        what = {"space": "Space", "dataset": "dataset export"}.get(repo_type, "model")
        hint = {
            "space": "create one with `sortsight export MODEL --space DIR`",
            "dataset": "write one with `sortsight export DATA --dataset-out DIR`",
        }.get(repo_type, "give a model folder (runs/<name>/model)")
        raise ExportError(f"{folder} is not a {what} folder (no {', '.join(missing)}): {hint}")
