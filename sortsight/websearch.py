"""Build a dataset from a web image search, the way fastai's duckling/cygnet lesson does.

``fetch_search(["duckling", "cygnet"], "birds/", limit=150)`` asks an image search for each query,
downloads the hits into ``birds/<query>/`` with the polite, verified, resumable machinery of
:func:`sortsight.fetch.fetch`, drops exact and near duplicates, and writes ``birds/sources.csv``
(url, query, label, page, title, licence/source where the search gives one, sha256, path, status).

The search itself goes through the maintained ``ddgs`` package (DuckDuckGo's image endpoint and its
result parser); sortsight only adds retries, a delay between result pages, and one-line errors.
``endpoint`` points the same code at another host speaking that protocol (a test server, a mirror).

Duplicates are never deleted: the later copy moves into ``.sortsight-duplicates/`` (a hidden folder,
so training ignores it) and ``sources.csv`` says which image it repeats.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sortsight.config import DEFAULT_NEAR_DISTANCE, FetchConfig
from sortsight.errors import DataError, ImageError
from sortsight.fetch import JOURNAL_NAME, FetchSummary, fetch
from sortsight.fetchlist import FetchItem, safe_label, short_hash, slug
from sortsight.fileops import atomic_write_text, place_file
from sortsight.progress import ProgressCallback, ProgressEvent, emit

SEARCH_LIMIT = 150  # hits asked of the search per query

__all__ = ["DEFAULT_ENDPOINT", "SOURCES_NAME", "ImageHit", "fetch_search", "search_images"]

DEFAULT_ENDPOINT = "https://duckduckgo.com"
SOURCES_NAME = "sources.csv"
DUPLICATES_DIR = ".sortsight-duplicates"
_SOURCE_COLUMNS = ("url", "query", "label", "page", "title", "source", "sha256", "path", "status")
_PAGE_SIZE = 100  # the endpoint's own page size


@dataclass(frozen=True)
class ImageHit:
    """One image search result."""

    url: str  # the image itself
    query: str
    page: str = ""  # the page the image is on
    title: str = ""
    source: str = ""  # what the search says about where it is from (site, licence)
    width: int = 0
    height: int = 0


def _engine(endpoint: str, timeout: float) -> Any:
    """ddgs's DuckDuckGo image engine, its requests sent to ``endpoint`` and checked for refusals.

    Only ddgs's public engine class is used: its own token step and result parser run unchanged, and
    each request's host is swapped for ``endpoint`` on the way out.
    """
    try:
        from ddgs.engines.duckduckgo_images import DuckduckgoImages
    except ImportError as exc:  # the "search" extra (in "all") was not installed
        raise DataError("Image search needs the 'ddgs' package: pip install ddgs") from exc

    engine = DuckduckgoImages(timeout=max(1, round(timeout)))
    engine.http_client = _Redirect(engine.http_client, endpoint.rstrip("/"))  # type: ignore[assignment]  # same request()
    return engine


class _Redirect:
    """An HTTP client that sends what ddgs addresses to DuckDuckGo to ``base`` and raises on refusals."""

    def __init__(self, client: Any, base: str) -> None:
        self.client, self.base = client, base

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if url.startswith(DEFAULT_ENDPOINT):
            url = self.base + url[len(DEFAULT_ENDPOINT) :]
        resp = self.client.request(method, url, *args, **kwargs)
        _raise_for_status(resp.status_code, self.base)
        return resp


class _RateLimited(Exception):
    pass


def _raise_for_status(status: int, base: str) -> None:
    if status in (403, 418, 429):
        raise _RateLimited(f"HTTP {status}")
    if status != 200:
        raise DataError(
            f"The image search at {base} answered HTTP {status}. Try again later, or build the dataset "
            "from a list of image URLs: sortsight fetch urls.csv --out DIR"
        )


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def search_images(
    query: str,
    *,
    limit: int = SEARCH_LIMIT,
    endpoint: str = DEFAULT_ENDPOINT,
    timeout: float = 20.0,
    delay: float = 1.0,
    retries: int = 2,
    backoff: float = 2.0,
) -> list[ImageHit]:
    """Up to ``limit`` image hits for ``query``, in the search's order, without repeated URLs.

    Args:
        query: what to search for, e.g. ``"duckling"``.
        limit: how many hits at the most.
        endpoint: the search host (DuckDuckGo's protocol).
        timeout: seconds to wait for one answer.
        delay: seconds between two result pages (politeness).
        retries: extra attempts after a timeout, a dropped connection or a rate limit.
        backoff: first wait before a retry, doubled each time.

    Raises:
        DataError: the search cannot be reached, keeps refusing (rate limit), or answers nonsense.
    """
    engine = _engine(endpoint, timeout)  # first: it says what to install when ddgs is missing
    from ddgs.exceptions import DDGSException

    hits: list[ImageHit] = []
    seen: set[str] = set()
    page = 1
    while len(hits) < limit:
        if page > 1:
            time.sleep(delay)
        for attempt in range(retries + 1):
            try:
                results = engine.search(query, safesearch="moderate", page=page) or []
                break
            except (_RateLimited, DDGSException) as exc:
                if attempt == retries:
                    raise _search_error(exc, endpoint, query) from exc
                time.sleep(backoff * 2**attempt)
            except (ValueError, KeyError) as exc:  # json or a missing token in the answer
                raise DataError(
                    f"The image search at {endpoint} gave an answer sortsight cannot read ({exc}). "
                    "Update ddgs (pip install -U ddgs), or use a URL list: sortsight fetch urls.csv --out DIR"
                ) from exc
        new = 0
        for r in results:
            url = str(getattr(r, "image", "") or "")
            if not url.startswith(("http://", "https://")) or url in seen:
                continue
            seen.add(url)
            new += 1
            hits.append(
                ImageHit(
                    url=url,
                    query=query,
                    page=str(getattr(r, "url", "") or ""),
                    title=str(getattr(r, "title", "") or ""),
                    source=str(getattr(r, "source", "") or ""),
                    width=_int(getattr(r, "width", 0)),
                    height=_int(getattr(r, "height", 0)),
                )
            )
            if len(hits) >= limit:
                break
        if new == 0 or len(results) < _PAGE_SIZE:
            break
        page += 1
    return hits


def _search_error(exc: Exception, endpoint: str, query: str) -> DataError:
    if isinstance(exc, _RateLimited):
        return DataError(
            f"The image search at {endpoint} refused more requests ({exc}) for '{query}': "
            "it is rate-limiting. "
            "Wait a few minutes and run the same command again; finished images are kept."
        )
    reason = str(exc).split(">")[-1].strip().rstrip("')\" ") or type(exc).__name__
    return DataError(
        f"The image search at {endpoint} could not be reached ({reason[:120]}). Check the network, "
        "or build the dataset from a list of image URLs: sortsight fetch urls.csv --out DIR"
    )


# --------------------------------------------------------------------------- the job


def _labels_for(queries: Sequence[str], labels: Sequence[str] | None) -> list[str]:
    if not queries:
        raise DataError("Give at least one --search query, e.g. --search duckling --search cygnet.")
    if not labels:
        names = [safe_label(q) for q in queries]
    elif len(labels) == len(queries):
        names = [safe_label(label) for label in labels]
    elif len(labels) == 1:
        names = [safe_label(labels[0])] * len(queries)
    else:
        raise DataError(
            f"{len(labels)} --label values for {len(queries)} --search queries. Give one --label for all "
            "queries, or one per query in the same order."
        )
    if any(not n for n in names):
        raise DataError("A query or label is empty after removing path characters. Use a plain word.")
    return names


def _read_sources(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as fh:
        return {(row.get("url", ""), row.get("label", "")): row for row in csv.DictReader(fh)}


def _journal(out: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """The last journal entry per (url, label)."""
    entries: dict[tuple[str, str], dict[str, Any]] = {}
    path = out / JOURNAL_NAME
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="surrogateescape").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            entries[(entry.get("url", ""), entry.get("label", ""))] = entry
    return entries


def _set_aside_duplicates(out: Path, near_distance: int, order: dict[str, int]) -> list[dict[str, str]]:
    """Move exact/near duplicates of downloaded images aside, keeping the one the search ranked first
    (``order``: url → rank); journal and return what was moved."""
    from sortsight import _doctor_checks

    kept = [
        e for e in _journal(out).values() if e.get("status") == "ok" and Path(e.get("path", "")).is_file()
    ]
    kept.sort(key=lambda e: (order.get(e.get("url", ""), len(order)), e.get("time", ""), e.get("path", "")))
    hashes: list[str] = []
    usable: list[dict[str, Any]] = []
    for entry in kept:
        try:
            hashes.append(_doctor_checks.image_stats(entry["path"]).phash)
            usable.append(entry)
        except (ImageError, OSError):
            continue
    first_of: dict[int, int] = {}
    by_sha: dict[str, int] = {}
    for i, entry in enumerate(usable):
        j = by_sha.setdefault(entry.get("sha256", ""), i)
        if j != i:
            first_of[i] = j
    if near_distance >= 0 and len(usable) > 1:
        for i, j, _ in _doctor_checks.near_pairs_hash(hashes, near_distance):
            if j not in first_of and i not in first_of:
                first_of[j] = i
    moved: list[dict[str, str]] = []
    if not first_of:
        return moved
    with open(out / JOURNAL_NAME, "a", encoding="utf-8", errors="surrogateescape") as log:
        for i, j in sorted(first_of.items()):
            entry, original = usable[i], usable[j]
            src = Path(entry["path"])
            placed = place_file(src, out / DUPLICATES_DIR / entry["label"], move=True)
            kind = "exact" if entry.get("sha256") == original.get("sha256") else "near"
            record = {
                **entry,
                "status": "duplicate",
                "path": str(placed.destination),
                "duplicate_of": original["path"],
                "reason": f"{kind} duplicate of {original['path']}",
                "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            }
            log.write(json.dumps(record, ensure_ascii=False) + "\n")
            moved.append({"url": entry["url"], "label": entry["label"], "reason": record["reason"]})
    return moved


def _write_sources(out: Path, hits: Iterable[ImageHit], labels: dict[str, str]) -> None:
    path = out / SOURCES_NAME
    rows = _read_sources(path)
    for hit in hits:
        key = (hit.url, labels[hit.query])
        rows.setdefault(
            key,
            {
                "url": hit.url,
                "query": hit.query,
                "label": labels[hit.query],
                "page": hit.page,
                "title": hit.title,
                "source": hit.source,
            },
        )
    journal = _journal(out)
    for key, row in rows.items():
        entry = journal.get(key)
        if entry is None:
            row.setdefault("status", "not downloaded")
            continue
        status = "ok" if entry.get("status") == "ok" else f"{entry.get('status')}: {entry.get('reason', '')}"
        row.update(
            sha256=entry.get("sha256", ""),
            path=os.path.relpath(entry["path"], out) if entry.get("path") else "",
            status=status,
        )
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(_SOURCE_COLUMNS), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows.values())
    atomic_write_text(path, buf.getvalue())


def fetch_search(
    queries: Sequence[str],
    out_dir: str | os.PathLike,
    *,
    limit: int = SEARCH_LIMIT,
    labels: Sequence[str] | None = None,
    endpoint: str = DEFAULT_ENDPOINT,
    search_delay: float = 1.0,
    near_distance: int = DEFAULT_NEAR_DISTANCE,
    concurrency: int = FetchConfig.concurrency,
    per_host: int = FetchConfig.per_host,
    delay: float = FetchConfig.delay,
    retries: int = FetchConfig.retries,
    timeout: float = FetchConfig.timeout,
    progress: ProgressCallback | None = None,
) -> FetchSummary:
    """Search the web for each query and download up to ``limit`` images into ``out_dir/<label>/``.

    Args:
        queries: one search per class, e.g. ``["duckling", "cygnet"]``.
        out_dir: the dataset folder (created; nothing in it is overwritten; a rerun resumes).
        limit: hits asked of the search per query (broken, duplicate and failed ones are not replaced).
        labels: class-folder names: one per query, or one for all; default: the query itself.
        endpoint: the search host (DuckDuckGo's protocol).
        search_delay: seconds between two result pages of the search.
        near_distance: perceptual-hash bits within which two downloads count as near duplicates
            (-1: exact duplicates only).
        concurrency, per_host, delay, retries, timeout: as in :func:`sortsight.fetch.fetch`.
        progress: a ``search`` event per query, then a ``fetch <label>`` phase per query.

    Returns:
        A :class:`~sortsight.fetch.FetchSummary` over all queries; the duplicates set aside by this
        run are in ``duplicates``, with their reason. ``sources.csv`` in ``out_dir`` lists every hit
        and what became of it.

    Raises:
        ConfigError: a politeness setting is out of range (before anything is searched).
        DataError: the search cannot be reached or rate-limits, or the arguments do not fit.

    Example:
        >>> fetch_search(["duckling", "cygnet"], "birds", limit=150)  # doctest: +SKIP
    """
    started = time.perf_counter()
    if limit < 1:
        raise DataError(f"--limit must be at least 1, got {limit}.")
    FetchConfig(concurrency=concurrency, per_host=per_host, delay=delay, retries=retries, timeout=timeout)
    out = Path(out_dir)
    names = _labels_for(queries, labels)
    label_of = dict(zip(queries, names, strict=True))
    total = FetchSummary(out_dir=str(out), journal=str(out / JOURNAL_NAME))
    all_hits: list[ImageHit] = []
    by_label: dict[str, int] = {}
    for n, (query, label) in enumerate(label_of.items(), start=1):
        emit(progress, ProgressEvent("search", n - 1, len(label_of), message=f"searching for '{query}'"))
        hits = search_images(query, limit=limit, endpoint=endpoint, timeout=timeout, delay=search_delay)
        all_hits += hits
        out.mkdir(parents=True, exist_ok=True)
        _write_sources(out, all_hits, label_of)  # what was found is on disk before any download
        items = [FetchItem(h.url, label, f"{slug(query)}-{short_hash(h.url)}") for h in hits]
        phase_progress = _rename_phase(progress, f"fetch {label}")
        summary = fetch(
            items,
            out,
            concurrency=concurrency,
            per_host=per_host,
            delay=delay,
            retries=retries,
            timeout=timeout,
            progress=phase_progress,
        )
        total.total += summary.total
        total.downloaded += summary.downloaded
        total.already_done += summary.already_done
        total.broken += summary.broken
        total.failed += summary.failed
        for key, value in summary.by_label.items():
            by_label[key] = by_label.get(key, 0) + value
    rank = {h.url: i for i, h in reversed(list(enumerate(all_hits)))}
    duplicates = _set_aside_duplicates(out, near_distance, rank)
    for d in duplicates:
        by_label[d["label"]] -= 1
    total.duplicates = duplicates
    _write_sources(out, all_hits, label_of)
    total.by_label = dict(sorted(by_label.items()))
    total.seconds = round(time.perf_counter() - started, 3)
    return total


def _rename_phase(progress: ProgressCallback | None, phase: str) -> ProgressCallback | None:
    if progress is None:
        return None
    sink = progress
    return lambda event: sink(replace(event, phase=phase))
