"""``sortsight fetch --search``: a local server on 127.0.0.1 plays the image search (DuckDuckGo's
response shape: a page holding a ``vqd`` token, then ``i.js`` JSON pages) and the image hosts."""

from __future__ import annotations

import csv
import io
import json
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import QuietHandler
from PIL import Image, ImageDraw

from sortsight.cli import cli
from sortsight.data import scan
from sortsight.errors import DataError
from sortsight.fetch import JOURNAL_NAME
from sortsight.websearch import DUPLICATES_DIR, SOURCES_NAME, fetch_search, search_images

pytest.importorskip("ddgs")

FAST = {"delay": 0.0, "search_delay": 0.0, "timeout": 2.0, "retries": 0}


def _png(seed: int, *, tweak: bool = False) -> bytes:
    """A distinct 64×64 picture per seed; ``tweak`` changes a few pixels (a near duplicate)."""
    img = Image.new("RGB", (64, 64), (240, 240, 240))
    draw = ImageDraw.Draw(img)
    for k in range(4):
        x, y = (seed * 17 + k * 29) % 48, (seed * 31 + k * 13) % 48
        draw.rectangle([x, y, x + 14, y + 10], fill=((seed * 70 + k * 50) % 256, (seed * 40) % 256, 60))
    if tweak:
        img.putpixel((0, 0), (0, 0, 0))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


class _Fake:
    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.base = ""
        self.rate_limit = False
        self.results: dict[str, list[dict[str, str]]] = {}
        self.files: dict[str, bytes] = {}


def _handler(state: _Fake) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            state.hits[url.path] += 1
            if url.path == "/":  # the search page: holds the token
                self._send(
                    200,
                    f'<html><script>vqd="4-{len(query.get("q", ""))}";</script></html>'.encode(),
                    "text/html",
                )
            elif url.path == "/i.js":
                if state.rate_limit:
                    self._send(429, b"slow down", "text/plain")
                    return
                assert query.get("vqd", "").startswith("4-") and query.get("o") == "json"
                start = int(query.get("s", "0"))
                results = state.results.get(query["q"], [])[start : start + 100]
                self._send(
                    200, json.dumps({"results": results, "next": "i.js?s=100"}).encode(), "application/json"
                )
            elif url.path.startswith("/slow/"):
                time.sleep(3.0)
                self._send(200, state.files.get(url.path, b""), "image/png")
            elif url.path in state.files:
                self._send(200, state.files[url.path], "image/png")
            else:
                self._send(404, b"not found", "text/plain")

    return Handler


@pytest.fixture
def fake() -> Iterator[_Fake]:
    state = _Fake()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def hit(path: str, title: str) -> dict[str, str]:
        return {
            "image": state.base + path,
            "url": f"https://example.org/page{path}",
            "title": title,
            "thumbnail": "",
            "width": "64",
            "height": "64",
            "source": "Bing",
        }

    for i in range(5):
        state.files[f"/duck/{i}.png"] = _png(i)
        state.files[f"/swan/{i}.png"] = _png(10 + i)
    state.files["/duck/copy.png"] = _png(0)  # exact duplicate of duck 0
    state.files["/duck/near.png"] = _png(1, tweak=True)  # near duplicate of duck 1
    state.files["/duck/broken.png"] = b"<html>not an image</html>"
    state.files["/slow/swan.png"] = _png(30)
    state.results["duckling"] = [hit(f"/duck/{i}.png", f"duckling {i}") for i in range(5)] + [
        hit("/duck/copy.png", "copy"),
        hit("/duck/near.png", "near"),
        hit("/duck/broken.png", "broken"),
        hit("/duck/missing.png", "404"),
        hit("/duck/0.png", "same url again"),
    ]
    state.results["cygnet"] = [hit(f"/swan/{i}.png", f"cygnet {i}") for i in range(5)] + [
        hit("/slow/swan.png", "slow host")
    ]
    yield state
    server.shutdown()
    server.server_close()


def test_search_images_reads_the_recorded_shape_and_respects_limit(fake: _Fake) -> None:
    hits = search_images("duckling", limit=3, endpoint=fake.base, delay=0.0)
    assert [h.title for h in hits] == ["duckling 0", "duckling 1", "duckling 2"]
    assert hits[0].page == "https://example.org/page/duck/0.png" and hits[0].width == 64
    assert fake.hits["/"] == 1 and fake.hits["/i.js"] == 1
    every = search_images("duckling", limit=100, endpoint=fake.base, delay=0.0)
    assert len(every) == 9  # the repeated URL is dropped


def test_fetch_search_builds_class_folders_dedupes_and_lists_sources(fake: _Fake, tmp_path: Path) -> None:
    out = tmp_path / "birds"
    summary = fetch_search(["duckling", "cygnet"], out, limit=50, endpoint=fake.base, **FAST)
    assert summary.by_label == {"cygnet": 5, "duckling": 5}
    assert len(summary.duplicates) == 2
    assert {d["reason"].split()[0] for d in summary.duplicates} == {"exact", "near"}
    assert [f["reason"] for f in summary.broken] and "404" in " ".join(f["reason"] for f in summary.failed)
    assert any("slow" in f["url"] for f in summary.failed)  # the timeout
    assert len(list((out / DUPLICATES_DIR / "duckling").iterdir())) == 2
    ds = scan(out)  # the dataset trains as it is: duplicates are in a hidden folder
    assert Counter(item.label for item in ds.items) == {"duckling": 5, "cygnet": 5}
    with open(out / SOURCES_NAME, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 15
    by_title = {r["title"]: r for r in rows}
    assert by_title["duckling 0"]["status"] == "ok" and len(by_title["duckling 0"]["sha256"]) == 64
    assert by_title["duckling 0"]["query"] == "duckling" and by_title["duckling 0"]["source"] == "Bing"
    assert by_title["copy"]["status"].startswith("duplicate: exact duplicate of")
    assert by_title["broken"]["status"].startswith("broken")
    assert by_title["404"]["status"].startswith("failed")


def test_fetch_search_rerun_resumes_and_never_overwrites(fake: _Fake, tmp_path: Path) -> None:
    out = tmp_path / "birds"
    fetch_search(["duckling"], out, limit=50, endpoint=fake.base, **FAST)
    before = {p: p.read_bytes() for p in out.rglob("*.png")}
    downloads = sum(n for path, n in fake.hits.items() if path.startswith("/duck/"))
    again = fetch_search(["duckling"], out, limit=50, endpoint=fake.base, **FAST)
    assert again.downloaded == 0 and again.by_label == {"duckling": 5} and again.duplicates == []
    # only the failed ones were asked again (broken and 404), nothing that was kept or set aside
    redownloads = sum(n for path, n in fake.hits.items() if path.startswith("/duck/")) - downloads
    assert redownloads == 2
    assert {p: p.read_bytes() for p in out.rglob("*.png")} == before
    assert (out / JOURNAL_NAME).is_file()


def test_labels_one_per_query(fake: _Fake, tmp_path: Path) -> None:
    summary = fetch_search(
        ["duckling", "cygnet"],
        tmp_path / "b",
        limit=2,
        labels=["young duck", "young swan"],
        endpoint=fake.base,
        **FAST,
    )
    assert summary.by_label == {"young duck": 2, "young swan": 2}
    with pytest.raises(DataError, match="one per query"):
        fetch_search(["a", "b", "c"], tmp_path / "c", labels=["x", "y"], endpoint=fake.base, **FAST)


def test_rate_limit_and_unreachable_are_one_line_errors(fake: _Fake, tmp_path: Path) -> None:
    fake.rate_limit = True
    with pytest.raises(DataError, match="rate-limiting") as info:
        search_images("duckling", endpoint=fake.base, retries=1, backoff=0.01)
    assert "\n" not in str(info.value)
    runner = CliRunner()
    result = runner.invoke(
        cli,
        [
            "fetch",
            "--search",
            "duckling",
            "--out",
            str(tmp_path / "x"),
            "--search-endpoint",
            "http://127.0.0.1:9",
        ],
    )
    assert result.exit_code == 1, result.output
    assert "could not be reached" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").rglob("*.png"))


def test_cli_search_and_usage_errors(fake: _Fake, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "birds"
    args = ["fetch", "--search", "duckling", "--search", "cygnet", "--limit", "3", "--out", str(out)]
    result = runner.invoke(cli, [*args, "--search-endpoint", fake.base, "--delay", "0", "--retries", "0"])
    assert result.exit_code == 0, result.output
    assert "sources.csv" in result.output and "duckling" in result.output
    assert (out / "duckling").is_dir() and (out / "cygnet").is_dir()
    both = runner.invoke(cli, ["fetch", "urls.csv", "--search", "x", "--out", str(out)])
    assert both.exit_code == 2 and "not both" in both.output


def test_without_ddgs_the_search_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import sys

    for name in ("ddgs", "ddgs.engines.duckduckgo_images", "ddgs.utils", "ddgs.exceptions"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails as if ddgs were not installed
    with pytest.raises(DataError, match="needs the 'ddgs' package: pip install ddgs"):
        search_images("duckling", endpoint="http://127.0.0.1:9")
    result = CliRunner().invoke(cli, ["fetch", "--search", "duckling", "--out", str(tmp_path / "x")])
    assert result.exit_code == 1 and "pip install ddgs" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").rglob("*.png"))
