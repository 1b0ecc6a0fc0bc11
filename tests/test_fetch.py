"""Tests for sortsight.fetch against a local HTTP server on 127.0.0.1 (no other network)."""

from __future__ import annotations

import io
import itertools
import json
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import QuietHandler
from PIL import Image

from sortsight.cli import cli
from sortsight.data import scan
from sortsight.errors import DataError
from sortsight.fetch import JOURNAL_NAME, fetch
from sortsight.images import iter_image_files, open_image

FAST = {"delay": 0.0, "backoff": 0.01, "timeout": 5.0}


def _png(seed: int, size: tuple[int, int] = (40, 30)) -> bytes:
    img = Image.new("RGB", size, ((seed * 53) % 256, (seed * 97) % 256, (seed * 31) % 256))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _jpeg(size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (120, 30, 200)).save(buf, "JPEG")
    return buf.getvalue()


class _Server:
    """State shared by the handler threads: request counts, concurrency, manifests."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.hits: Counter[str] = Counter()
        self.inflight = 0
        self.max_inflight = 0
        self.starts: list[float] = []
        self.base = ""
        self.manifests: dict[str, dict] = {}
        self.files: dict[str, bytes] = {}


def _handler(state: _Server) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        def do_GET(self) -> None:
            path = self.path
            with state.lock:
                state.hits[path] += 1
                hits = state.hits[path]
                state.starts.append(time.monotonic())
            self._route(path, hits)

        def _route(self, path: str, hits: int) -> None:
            if m := re.fullmatch(r"/img/(\d+)\.png", path):
                self._send(200, _png(int(m.group(1))))
            elif m := re.fullmatch(r"/slow/(\d+)\.png", path):
                with state.lock:  # counted while the client is surely still waiting
                    state.inflight += 1
                    state.max_inflight = max(state.max_inflight, state.inflight)
                time.sleep(0.25)
                with state.lock:
                    state.inflight -= 1
                self._send(200, _png(int(m.group(1))))
            elif path == "/broken.jpg":
                self._send(200, b"<html>not an image</html>", "image/jpeg")
            elif path == "/truncated.png":
                self._send(200, _png(7, (200, 200))[:300])
            elif path == "/flaky.png":  # 503 twice, then the image
                if hits <= 2:
                    self._send(503, b"busy", "text/plain")
                else:
                    self._send(200, _png(99))
            elif path == "/limited.png":  # 429 with Retry-After once, then the image
                if hits == 1:
                    self.send_response(429)
                    self.send_header("Retry-After", "1")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    self._send(200, _png(42))
            elif path == "/down.png":
                self._send(503, b"busy", "text/plain")
            elif path == "/hang.png":
                time.sleep(1.0)
                self._send(200, _png(5))
            elif path in state.manifests:
                self._send(200, json.dumps(state.manifests[path]).encode(), "application/json")
            elif path in state.files:
                self._send(200, state.files[path], "text/csv")
            elif m := re.fullmatch(r"/iiif/(\w+)/full/([^/]+)/0/default\.jpg", path):
                size = m.group(2)
                if size in ("full", "max"):
                    dims = (300, 200)
                elif sm := re.fullmatch(r"!(\d+),(\d+)", size):
                    scale = int(sm.group(1)) / 300
                    dims = (int(sm.group(1)), round(200 * scale))
                else:
                    self._send(400, b"bad size", "text/plain")
                    return
                self._send(200, _jpeg(dims), "image/jpeg")
            elif path == "/plain/page.jpg":
                self._send(200, _jpeg((80, 60)), "image/jpeg")
            else:
                self._send(404, b"not found", "text/plain")

    return Handler


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Server]:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    state = _Server()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


def _csv(tmp_path: Path, rows: list[tuple[str, str]], name: str = "list.csv") -> Path:
    path = tmp_path / name
    path.write_text("url,label\n" + "".join(f"{u},{lab}\n" for u, lab in rows), encoding="utf-8")
    return path


def _files(root: Path) -> list[Path]:
    return sorted(iter_image_files(root))


def test_csv_fetch_verifies_retries_and_reports(server: _Server, tmp_path: Path) -> None:
    b = server.base
    rows = [(f"{b}/img/{i}.png", "maps" if i % 2 else "letters") for i in range(6)]
    rows += [
        (f"{b}/broken.jpg", "maps"),
        (f"{b}/truncated.png", "maps"),
        (f"{b}/flaky.png", "letters"),
        (f"{b}/missing.png", "maps"),
        (f"{b}/down.png", "maps"),
        ("file:///etc/hostname", "maps"),
    ]
    out = tmp_path / "out"
    summary = fetch(_csv(tmp_path, rows), out, retries=2, **FAST)

    assert summary.total == 12
    assert summary.downloaded == 7  # 6 images + the flaky one after two 503s
    assert summary.by_label == {"letters": 4, "maps": 3}
    assert {e["url"].rsplit("/", 1)[1] for e in summary.broken} == {"broken.jpg", "truncated.png"}
    failed = {e["url"].rsplit("/", 1)[1]: e["reason"] for e in summary.failed}
    assert failed.keys() == {"missing.png", "down.png", "hostname"}
    assert failed["hostname"] == "not an http(s) URL"
    assert "HTTP 404" in failed["missing.png"] and "HTTP 503" in failed["down.png"]
    assert server.hits["/flaky.png"] == 3
    assert server.hits["/missing.png"] == 1  # a 404 is not retried
    assert server.hits["/down.png"] == 3  # 1 + 2 retries
    files = _files(out)
    assert len(files) == 7 and {p.parent.name for p in files} == {"maps", "letters"}
    for p in files:
        open_image(p)  # every kept file is a usable image
    assert not any("broken" in p.name or "truncated" in p.name for p in out.rglob("*"))
    assert not (out / ".sortsight-fetch-tmp").exists()
    assert not summary.ok
    ds = scan(out)  # the result is a dataset as it stands (the journal is not an image)
    assert len(ds) == 7 and ds.classes == ("letters", "maps") and not ds.skipped


def test_rerun_skips_done_items_and_retries_failures(server: _Server, tmp_path: Path) -> None:
    b = server.base
    source = _csv(tmp_path, [(f"{b}/img/{i}.png", "a") for i in range(4)] + [(f"{b}/down.png", "a")])
    out = tmp_path / "out"
    first = fetch(source, out, retries=0, **FAST)
    assert first.downloaded == 4 and len(first.failed) == 1
    second = fetch(source, out, retries=0, **FAST)
    assert second.already_done == 4 and second.downloaded == 0
    assert all(server.hits[f"/img/{i}.png"] == 1 for i in range(4))
    assert server.hits["/down.png"] == 2  # a failure is tried again on the rerun
    assert len(_files(out)) == 4


def test_resume_after_interruption(server: _Server, tmp_path: Path) -> None:
    b = server.base
    source = _csv(tmp_path, [(f"{b}/img/{i}.png", "pages") for i in range(10)])
    out = tmp_path / "out"
    seen: list[int] = []

    def stop_after_three(event: object) -> None:
        seen.append(1)
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fetch(source, out, concurrency=1, per_host=1, progress=stop_after_three, **FAST)
    journal = [json.loads(x) for x in (out / JOURNAL_NAME).read_text().splitlines()]
    assert 1 <= len(journal) < 10
    partial = len(_files(out))
    assert partial < 10

    summary = fetch(source, out, **FAST)
    assert summary.already_done == len(journal)
    assert summary.already_done + summary.downloaded == 10 and summary.ok
    files = _files(out)
    assert len(files) == 10  # nothing lost, nothing doubled
    assert len({p.read_bytes() for p in files}) == 10
    assert all(server.hits[f"/img/{i}.png"] <= 2 for i in range(10))
    assert sum(server.hits[f"/img/{i}.png"] for i in range(10)) <= 10 + 2


def test_a_download_still_under_way_when_interrupted_places_nothing(server: _Server, tmp_path: Path) -> None:
    """Ctrl-C does not wait for downloads in flight; one that finishes afterwards must not put a file
    the journal does not know (a resumed run would fetch it again beside it)."""
    b = server.base
    source = _csv(tmp_path, [(f"{b}/slow/{i}.png", "pages") for i in range(4)])
    out = tmp_path / "out"

    def stop_at_once(event: object) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # the first image ends the run; three are still on the wire
        fetch(source, out, concurrency=4, per_host=4, progress=stop_at_once, **FAST)
    deadline = time.monotonic() + 5
    while server.inflight and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # the answers arrive; the orphaned workers finish
    journal = [json.loads(x) for x in (out / JOURNAL_NAME).read_text().splitlines()]
    assert len(_files(out)) == sum(e["status"] == "ok" for e in journal) >= 1

    summary = fetch(source, out, **FAST)
    assert summary.ok and summary.already_done + summary.downloaded == 4
    assert len(_files(out)) == 4


def test_resume_after_kill_9(server: _Server, tmp_path: Path) -> None:
    b = server.base
    source = _csv(tmp_path, [(f"{b}/slow/{i}.png", "pages") for i in range(12)])
    out = tmp_path / "out"
    code = (
        "import sys; from sortsight.fetch import fetch; "
        "fetch(sys.argv[1], sys.argv[2], concurrency=1, per_host=1, delay=0.0)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(source), str(out)])
    journal = out / JOURNAL_NAME
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and len(journal.read_text().splitlines()) >= 3:
            break
        time.sleep(0.02)
    proc.kill()  # SIGKILL: no cleanup at all
    proc.wait()
    done_before = len(journal.read_text().splitlines())
    assert 3 <= done_before < 12

    summary = fetch(source, out, **FAST)
    assert summary.ok and summary.already_done >= 3
    assert summary.already_done + summary.downloaded == 12
    files = _files(out)
    assert len(files) == 12 and len({p.read_bytes() for p in files}) == 12
    assert not (out / ".sortsight-fetch-tmp").exists()
    assert not [p for p in out.rglob("*") if p.name.endswith(".part") or ".part-" in p.name]


def test_politeness_limits_requests_per_host(server: _Server, tmp_path: Path) -> None:
    b = server.base
    source = _csv(tmp_path, [(f"{b}/slow/{i}.png", "x") for i in range(6)])
    summary = fetch(source, tmp_path / "out", concurrency=4, per_host=2, **FAST)
    assert summary.downloaded == 6
    assert server.max_inflight == 2  # four workers, but never more than two at the server

    server.starts.clear()
    source2 = _csv(tmp_path, [(f"{b}/img/{i}.png", "x") for i in range(20, 24)], "two.csv")
    fetch(source2, tmp_path / "out2", concurrency=4, per_host=4, delay=0.15, backoff=0.01)
    starts = sorted(server.starts)
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert len(starts) == 4 and min(gaps) >= 0.13


def test_timeout_is_retried_then_reported(server: _Server, tmp_path: Path) -> None:
    source = _csv(tmp_path, [(f"{server.base}/hang.png", "x")])
    summary = fetch(source, tmp_path / "out", retries=1, delay=0.0, backoff=0.01, timeout=0.3)
    assert summary.downloaded == 0 and len(summary.failed) == 1
    assert "network error" in summary.failed[0]["reason"]
    assert server.hits["/hang.png"] == 2


def test_retry_after_is_honoured(server: _Server, tmp_path: Path) -> None:
    source = _csv(tmp_path, [(f"{server.base}/limited.png", "x")])
    started = time.monotonic()
    summary = fetch(source, tmp_path / "out", retries=2, delay=0.0, backoff=0.01, timeout=5.0)
    assert summary.ok and server.hits["/limited.png"] == 2
    assert time.monotonic() - started >= 0.95  # waited as the server asked, not the 0.01 s backoff


def _manifest_v2(base: str) -> dict:
    def canvas(i: int, genre: str | None) -> dict:
        c: dict = {
            "@id": f"{base}/canvas/{i}",
            "@type": "sc:Canvas",
            "width": 3000,
            "height": 2000,
            "images": [
                {
                    "@type": "oa:Annotation",
                    "resource": {
                        "@id": f"{base}/iiif/v2p{i}/full/full/0/default.jpg",
                        "@type": "dctypes:Image",
                        "service": {
                            "@context": "http://iiif.io/api/image/2/context.json",
                            "@id": f"{base}/iiif/v2p{i}",
                            "profile": "http://iiif.io/api/image/2/level2.json",
                        },
                    },
                }
            ],
        }
        if genre:
            c["metadata"] = [{"label": "Genre", "value": [{"@value": genre, "@language": "en"}]}]
        return c

    return {
        "@context": "http://iiif.io/api/presentation/2/context.json",
        "@type": "sc:Manifest",
        "@id": f"{base}/v2.json",
        "label": "Letters of a Curator",
        "metadata": [{"label": "Genre", "value": "letter"}],
        "sequences": [{"canvases": [canvas(1, "map"), canvas(2, None), canvas(3, "map")]}],
    }


def _manifest_v3(base: str) -> dict:
    def canvas(i: int, service: dict | None) -> dict:
        body: dict = {"id": f"{base}/plain/page.jpg", "type": "Image", "format": "image/jpeg"}
        if service:
            body["service"] = [service]
        return {
            "id": f"{base}/c/{i}",
            "type": "Canvas",
            "width": 300,
            "height": 200,
            "items": [
                {
                    "id": f"{base}/c/{i}/p",
                    "type": "AnnotationPage",
                    "items": [
                        {
                            "id": f"{base}/c/{i}/a",
                            "type": "Annotation",
                            "motivation": "painting",
                            "body": body,
                        }
                    ],
                }
            ],
        }

    return {
        "@context": "http://iiif.io/api/presentation/3/context.json",
        "id": f"{base}/v3.json",
        "type": "Manifest",
        "label": {"en": ["Album"]},
        "items": [
            canvas(1, {"id": f"{base}/iiif/v3p1", "type": "ImageService3", "profile": "level2"}),
            canvas(2, {"id": f"{base}/iiif/v3p2", "type": "ImageService3", "profile": "level0"}),
            canvas(3, None),
        ],
    }


def test_iiif_v2_label_from_metadata_and_size(server: _Server, tmp_path: Path) -> None:
    server.manifests["/v2.json"] = _manifest_v2(server.base)
    out = tmp_path / "out"
    summary = fetch(f"{server.base}/v2.json", out, label_field="genre", size=120, **FAST)
    assert summary.ok and summary.by_label == {"letter": 1, "map": 2}  # canvas field, else the manifest's
    assert all(server.hits[f"/iiif/v2p{i}/full/!120,120/0/default.jpg"] == 1 for i in (1, 2, 3))
    for p in _files(out):
        assert open_image(p).size == (120, 80)
        assert p.name.startswith("Letters-of-a-Curator_")


def test_iiif_v3_with_given_label(server: _Server, tmp_path: Path) -> None:
    server.manifests["/v3.json"] = _manifest_v3(server.base)
    manifest = tmp_path / "v3.json"
    manifest.write_text(json.dumps(server.manifests["/v3.json"]), encoding="utf-8")
    out = tmp_path / "out"
    summary = fetch(manifest, out, label="album", size=100, **FAST)
    assert summary.ok and summary.by_label == {"album": 3}
    assert server.hits["/iiif/v3p1/full/!100,100/0/default.jpg"] == 1  # level 2: a bounding box
    assert server.hits["/iiif/v3p2/full/max/0/default.jpg"] == 1  # level 0: only the full size
    assert server.hits["/plain/page.jpg"] == 1  # no image service: the image itself
    assert len(_files(out / "album")) == 3


def test_iiif_size_never_upscales(server: _Server, tmp_path: Path) -> None:
    server.manifests["/v3.json"] = _manifest_v3(server.base)
    fetch(f"{server.base}/v3.json", tmp_path / "out", label="x", size=1024, **FAST)
    assert server.hits["/iiif/v3p1/full/max/0/default.jpg"] == 1  # 300 px canvas < 1024


def test_bad_sources_are_clear_errors(server: _Server, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        fetch(tmp_path / "nope.csv", tmp_path / "out")
    bad = tmp_path / "bad.csv"
    bad.write_text("link,label\nhttp://x/y.png,a\n", encoding="utf-8")
    with pytest.raises(DataError, match="'url' column"):
        fetch(bad, tmp_path / "out")
    server.manifests["/v2.json"] = _manifest_v2(server.base)
    with pytest.raises(DataError, match="--label"):
        fetch(f"{server.base}/v2.json", tmp_path / "out", **FAST)
    with pytest.raises(DataError, match="fields here: genre"):
        fetch(f"{server.base}/v2.json", tmp_path / "out", label_field="creator", **FAST)
    with pytest.raises(DataError, match="Could not download"):
        fetch(f"{server.base}/nothing.json", tmp_path / "out", retries=0, **FAST)


def test_cli_fetch(server: _Server, tmp_path: Path) -> None:
    b = server.base
    rows = [f"{b}/img/{i}.png,cats" for i in range(3)] + [f"{b}/broken.jpg,cats"]
    server.files["/list.csv"] = ("url,label\n" + "\n".join(rows) + "\n").encode()
    out = tmp_path / "out"
    runner = CliRunner()
    result = runner.invoke(cli, ["fetch", f"{b}/list.csv", "--out", str(out), "--delay", "0"])
    assert result.exit_code == 0, result.output
    assert "3 downloaded" in result.output and "broken.jpg" in result.output
    assert len(_files(out / "cats")) == 3
    again = runner.invoke(cli, ["fetch", f"{b}/list.csv", "--out", str(out), "--delay", "0"])
    assert again.exit_code == 0 and "3 already there" in again.output

    bad = runner.invoke(cli, ["fetch", str(tmp_path / "missing.csv"), "--out", str(out)])
    assert bad.exit_code == 1 and "Error:" in bad.output and "Traceback" not in bad.output
