"""Build an image-folder dataset from a ``url,label`` CSV or a IIIF Presentation manifest.

``fetch(source, out_dir)`` downloads every image into ``out_dir/<label>/`` politely and safely:

- a limited number of downloads at once (``concurrency``), at most ``per_host`` at a time to
  any one server, with a small ``delay`` between requests to the same server;
- retries with exponential backoff on timeouts, dropped connections and HTTP 408/425/429/5xx
  (``Retry-After`` honoured up to 30 s); other HTTP errors fail at once;
- every download is verified with :mod:`sortsight.images` before it is kept (broken ones are
  reported, not kept), written through a temporary file and a rename, never over another file;
- resumable: a journal (``out_dir/.sortsight-fetch.jsonl``) records each finished item, and a
  rerun skips what is already there.

IIIF: Presentation API 2 and 3 manifests; each canvas's image is requested through its Image
API service at the chosen ``size`` (a bounding box, never upscaled), or taken as is when it has
no service. The label comes from ``label`` or from a metadata field (``label_field``), looked up
on the canvas first and then on the manifest.

Example:
    >>> summary = fetch("maps.csv", "data/maps")  # doctest: +SKIP
    >>> summary.downloaded, summary.failed  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sortsight import __version__
from sortsight._callable import make_module_callable
from sortsight.config import FetchConfig
from sortsight.errors import DataError, ImageError
from sortsight.fetchlist import FetchItem, items_from_csv, items_from_manifest
from sortsight.fileops import place_file
from sortsight.images import inspect_image
from sortsight.progress import ProgressCallback, Ticker

__all__ = ["FetchItem", "FetchSummary", "fetch", "read_source"]

JOURNAL_NAME = ".sortsight-fetch.jsonl"
_TMP_NAME = ".sortsight-fetch-tmp"
_RETRY_CODES = {408, 425, 429, 500, 502, 503, 504}
_EXT = {
    "JPEG": ".jpg",
    "PNG": ".png",
    "GIF": ".gif",
    "WEBP": ".webp",
    "TIFF": ".tif",
    "BMP": ".bmp",
    "MPO": ".jpg",
    "HEIF": ".heic",
    "AVIF": ".avif",
}
_USER_AGENT = f"sortsight/{__version__} (dataset builder; polite, resumable)"


@dataclass
class FetchSummary:
    """What :func:`fetch` did. ``broken`` and ``failed`` hold ``{"url", "label", "reason"}`` dicts."""

    out_dir: str
    total: int = 0
    downloaded: int = 0
    already_done: int = 0
    broken: list[dict[str, str]] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    by_label: dict[str, int] = field(default_factory=dict)
    journal: str = ""
    seconds: float = 0.0
    duplicates: list[dict[str, str]] = field(default_factory=list)  # set aside by a web search fetch

    @property
    def ok(self) -> bool:
        """True when every item is in place."""
        return not self.broken and not self.failed

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {**asdict(self), "ok": self.ok}


class _Failed(Exception):
    """A download that did not work out; ``broken`` when the bytes were not a usable image."""

    def __init__(self, reason: str, *, broken: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.broken = broken


# --------------------------------------------------------------------------- HTTP


class _HostGate:
    """At most ``per_host`` requests at a time per host, started at least ``delay`` seconds apart."""

    def __init__(self, per_host: int, delay: float) -> None:
        self.per_host = max(1, per_host)
        self.delay = max(0.0, delay)
        self._lock = threading.Lock()
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self._next_start: dict[str, float] = {}

    @contextmanager
    def __call__(self, host: str) -> Iterator[None]:
        with self._lock:
            slot = self._slots.setdefault(host, threading.BoundedSemaphore(self.per_host))
        with slot:
            with self._lock:
                now = time.monotonic()
                start = max(now, self._next_start.get(host, 0.0))
                self._next_start[host] = start + self.delay
            if start > now:
                time.sleep(start - now)
            yield


@dataclass
class _Http:
    timeout: float
    retries: int
    backoff: float
    max_bytes: int
    gate: _HostGate

    def get(self, url: str) -> bytes:
        """The body of ``url``, retried with exponential backoff; raises :class:`_Failed`."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise _Failed("not an http(s) URL")
        host = parts.netloc
        reason = ""
        for attempt in range(self.retries + 1):
            wait_for = self.backoff * (2**attempt)
            try:
                with self.gate(host):
                    return self._once(url)
            except urllib.error.HTTPError as exc:
                reason = f"HTTP {exc.code}"
                if exc.code not in _RETRY_CODES:
                    raise _Failed(reason) from exc
                retry_after = exc.headers.get("Retry-After", "") if exc.headers else ""
                if retry_after.strip().isdigit():
                    wait_for = max(wait_for, min(30.0, float(retry_after)))
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
                detail = getattr(exc, "reason", None) or exc
                reason = (
                    f"network error: {str(detail).splitlines()[0] if str(detail) else type(exc).__name__}"
                )
            if attempt < self.retries:
                time.sleep(wait_for)
        raise _Failed(f"{reason} (after {self.retries + 1} attempts)")

    def _once(self, url: str) -> bytes:
        request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT, "Accept": "*/*"})
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            body = response.read(self.max_bytes + 1)
        if len(body) > self.max_bytes:
            raise _Failed(f"larger than {self.max_bytes // 2**20} MB", broken=True)
        return bytes(body)


# --------------------------------------------------------------------------- reading the source


def read_source(
    source: str | os.PathLike,
    *,
    label: str | None = None,
    label_field: str | None = None,
    size: int | None = 1024,
    http: _Http | None = None,
) -> tuple[list[FetchItem], list[dict[str, str]]]:
    """The items to fetch from a CSV or IIIF manifest (file path or http(s) URL), and rows skipped.

    Raises:
        DataError: the source is missing, unreadable, or has no usable rows.
    """
    text_source = str(source)
    if text_source.startswith(("http://", "https://")):
        client = http or _Http(30.0, 3, 0.5, 50 * 2**20, _HostGate(2, 0.0))
        try:
            text = client.get(text_source).decode("utf-8-sig")
        except _Failed as exc:
            raise DataError(f"Could not download '{text_source}': {exc.reason}. Check the URL.") from exc
    else:
        path = Path(source)
        if not path.is_file():
            raise DataError(
                f"Source '{path}' not found. Give a CSV with url,label columns or a IIIF manifest."
            )
        text = path.read_text(encoding="utf-8-sig")
    if text.lstrip().startswith("{"):
        try:
            manifest = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"'{text_source}' is not valid JSON ({exc.msg}); give a IIIF manifest.") from exc
        return items_from_manifest(manifest, label=label, label_field=label_field, size=size)
    items = items_from_csv(text, label=label, label_field=label_field)
    return [i for i in items if i.label], [
        {"url": i.url, "label": "", "reason": "empty label"} for i in items if not i.label
    ]


# --------------------------------------------------------------------------- the job


def _read_journal(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """Finished items by ``(url, label)``: downloaded and still there, or set aside as a duplicate."""
    done: dict[tuple[str, str], dict[str, Any]] = {}
    if not path.exists():
        return done
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line from a killed run
        key = (entry.get("url", ""), entry.get("label", ""))
        if entry.get("status") == "duplicate" or (
            entry.get("status") == "ok" and Path(entry.get("path", "")).is_file()
        ):
            done[key] = entry
        elif key in done and done[key].get("status") != "duplicate":
            done.pop(key)
    return done


class _Journal:
    """The append-only record of finished items, written by the workers themselves.

    An image is placed and its line written under one lock, so a run stopped at any moment leaves no
    image the journal does not know; once the journal is closed a late download places nothing (the
    next run fetches it again)."""

    def __init__(self, path: Path) -> None:
        self._log = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed by close())
        self.lock = threading.Lock()
        self.closed = False

    def write(self, entry: dict[str, Any]) -> None:
        """Append one line; the caller holds ``lock`` and has checked ``closed``."""
        entry["time"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        self._log.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self._log.flush()

    def close(self) -> None:
        with self.lock:  # waits only for a placement under way (local disk), never for the network
            if not self.closed:
                self.closed = True
                self._log.close()


def _fetch_one(item: FetchItem, out_dir: Path, http: _Http, journal: _Journal) -> dict[str, Any]:
    """Download, verify and place one image, and write its journal line; returns that entry
    (status ``stopped``, written nowhere, when the run ended while the download was under way)."""
    entry: dict[str, Any] = {"url": item.url, "label": item.label}
    tmp_dir = out_dir / _TMP_NAME
    tmp = tmp_dir / f"{item.name}.{os.getpid()}-{threading.get_ident()}.part"
    try:
        body = http.get(item.url)
        if journal.closed:
            return {**entry, "status": "stopped"}
        tmp_dir.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(body)
        try:
            info = inspect_image(tmp)
        except ImageError as exc:
            raise _Failed(exc.reason, broken=True) from exc
        with journal.lock:
            if journal.closed:
                return {**entry, "status": "stopped"}
            placed = place_file(
                tmp,
                out_dir / item.label,
                move=True,
                name=item.name + _EXT.get(info.format, ".img"),
                merge_identical=True,  # a temporary download: the same image already there is enough
            )
            entry.update(
                status="ok",
                path=str(placed.destination),
                sha256=placed.sha256,
                width=info.width,
                height=info.height,
            )
            journal.write(entry)
    except _Failed as exc:
        entry.update(status="broken" if exc.broken else "failed", reason=exc.reason)
        with journal.lock:
            if journal.closed:
                return {**entry, "status": "stopped"}
            journal.write(entry)
    finally:
        tmp.unlink(missing_ok=True)
    return entry


def fetch(
    source: str | os.PathLike | list[FetchItem],
    out_dir: str | os.PathLike,
    *,
    label: str | None = None,
    label_field: str | None = None,
    size: int | None = 1024,
    concurrency: int = FetchConfig.concurrency,
    per_host: int = FetchConfig.per_host,
    delay: float = FetchConfig.delay,
    retries: int = FetchConfig.retries,
    backoff: float = 0.5,
    timeout: float = FetchConfig.timeout,
    max_bytes: int = 100 * 2**20,
    progress: ProgressCallback | None = None,
) -> FetchSummary:
    """Download the images listed in ``source`` into ``out_dir/<label>/``; resumable.

    Args:
        source: a CSV (``url,label``) or a IIIF Presentation v2/v3 manifest, as a file or an http(s) URL;
            or a list of :class:`FetchItem` (what :func:`sortsight.websearch.fetch_search` passes).
        out_dir: the dataset folder to build (created; existing files are never overwritten).
        label: one label for every image (overrides the CSV column / metadata field).
        label_field: the CSV column or IIIF metadata field holding the label (CSV default: ``label``).
        size: IIIF only: the longest side asked of the image service (a box, never upscaled);
            None for the full size.
        concurrency, per_host, delay, retries, timeout: the politeness settings of
            :class:`~sortsight.config.FetchConfig` (downloads at once, at once per server, seconds
            between two requests to one server, retries after a timeout, a dropped connection or
            HTTP 408/425/429/5xx, seconds to wait for a server), checked by it.
        backoff: first wait before a retry, in seconds; doubled each time.
        max_bytes: larger downloads are refused.
        progress: receives a ``fetch`` :class:`~sortsight.progress.ProgressEvent` per image.

    Returns:
        A :class:`FetchSummary`; broken and failed images are listed there (and in the journal).

    Raises:
        ConfigError: a politeness setting is out of range.
        DataError: the source cannot be read or names no images.
    """
    started = time.perf_counter()
    net = FetchConfig(
        concurrency=concurrency, per_host=per_host, delay=delay, retries=retries, timeout=timeout
    )
    out = Path(out_dir)
    http = _Http(net.timeout, net.retries, max(0.0, backoff), max_bytes, _HostGate(net.per_host, net.delay))
    skipped: list[dict[str, str]] = []
    if isinstance(source, list):
        items = source
    else:
        items, skipped = read_source(source, label=label, label_field=label_field, size=size, http=http)
    out.mkdir(parents=True, exist_ok=True)
    journal = out / JOURNAL_NAME
    done = _read_journal(journal)
    summary = FetchSummary(out_dir=str(out), total=len(items), journal=str(journal))
    summary.failed.extend(skipped)
    labels: Counter[str] = Counter()
    todo: list[FetchItem] = []
    seen: set[tuple[str, str]] = set()
    for item in items:
        key = (item.url, item.label)
        if key in seen:
            summary.total -= 1
            continue
        seen.add(key)
        if key in done:
            summary.already_done += 1
            if done[key].get("status") == "ok":
                labels[item.label] += 1
        else:
            todo.append(item)
    ticker = Ticker(progress, "fetch", len(todo))
    pool = ThreadPoolExecutor(max_workers=net.concurrency, thread_name_prefix="sortsight-fetch")
    interrupted = False
    log = _Journal(journal)
    try:
        pending: set[Future[dict[str, Any]]] = {
            pool.submit(_fetch_one, item, out, http, log) for item in todo
        }
        while pending:
            finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for future in finished:
                entry = future.result()
                status = entry["status"]
                if status == "ok":
                    summary.downloaded += 1
                    labels[entry["label"]] += 1
                else:
                    target = summary.broken if status == "broken" else summary.failed
                    target.append({"url": entry["url"], "label": entry["label"], "reason": entry["reason"]})
                ticker.advance(
                    1, ok=summary.downloaded, broken=len(summary.broken), failed=len(summary.failed)
                )
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        # after Ctrl-C, do not wait for a download blocked on a silent server (up to its timeout):
        # every image on disk is in the journal, the rest is fetched again on the next run
        log.close()
        pool.shutdown(wait=not interrupted, cancel_futures=True)
        shutil.rmtree(out / _TMP_NAME, ignore_errors=True)
    summary.by_label = dict(sorted(labels.items()))
    summary.seconds = round(time.perf_counter() - started, 3)
    return summary


make_module_callable(__name__, fetch)
