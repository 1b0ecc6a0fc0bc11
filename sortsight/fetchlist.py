"""What to fetch: :class:`FetchItem` (URL, class folder, file stem) read from a ``url,label``
CSV or a IIIF Presentation manifest, and the file and folder names made from URLs and labels.

:mod:`sortsight.fetch` downloads the items; :mod:`sortsight.websearch` makes them from search hits.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sortsight import _iiif
from sortsight.errors import DataError

__all__ = ["FetchItem", "items_from_csv", "items_from_manifest", "safe_label", "short_hash", "slug"]


@dataclass(frozen=True)
class FetchItem:
    """One image to download: where from, into which class folder, under which file stem."""

    url: str
    label: str
    name: str


def slug(text: str, default: str = "image") -> str:
    """A file-name stem from any text (word characters and dashes, at most 60)."""
    text = re.sub(r"[^\w\-]+", "-", text, flags=re.UNICODE).strip("-._")
    return text[:60] or default


def short_hash(text: str) -> str:
    """Eight hex digits that tell two URLs apart in file names."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]


def safe_label(label: str) -> str:
    """A class-folder name from a label (no path separators, not hidden)."""
    label = re.sub(r"[/\\\0]+", "-", label.strip()).lstrip(".").strip()
    return label[:100]


def items_from_manifest(
    manifest: dict[str, Any], *, label: str | None, label_field: str | None, size: int | None
) -> tuple[list[FetchItem], list[dict[str, str]]]:
    if not label and not label_field:
        raise DataError(
            "A IIIF manifest needs --label NAME or --label-field FIELD (a metadata field) for its images."
        )
    pairs, _ = _iiif.canvases(manifest)
    if not pairs:
        raise DataError("The IIIF manifest has no canvases with images; check that it is the right manifest.")
    title = slug(_iiif.text(manifest.get("label")), "iiif")
    top = _iiif.metadata(manifest)
    field_key = (label_field or "").lower()
    items: list[FetchItem] = []
    skipped: list[dict[str, str]] = []
    for index, (canvas, resource) in enumerate(pairs, start=1):
        url = _iiif.image_url(resource, canvas, size)
        if not url:
            skipped.append({"url": "", "label": "", "reason": f"canvas {index} has no image URL"})
            continue
        value = label or _iiif.metadata(canvas).get(field_key) or top.get(field_key, "")
        name = f"{title}_{index:04d}_{short_hash(url)}"
        if not value:
            skipped.append({"url": url, "label": "", "reason": f"no metadata field '{label_field}'"})
            continue
        items.append(FetchItem(url, safe_label(value), name))
    if label_field and not label and not items:
        fields = sorted({*top, *(k for c, _ in pairs for k in _iiif.metadata(c))})
        raise DataError(
            f"No canvas or manifest metadata field '{label_field}' found; fields here: "
            f"{', '.join(fields) or 'none'}. Give --label-field with one of them, or --label."
        )
    return items, skipped


def items_from_csv(text: str, *, label: str | None, label_field: str | None) -> list[FetchItem]:
    reader = csv.DictReader(
        io.StringIO(text), dialect="excel-tab" if "\t" in text.split("\n", 1)[0] else "excel"
    )
    columns = {(c or "").strip().lower(): c for c in reader.fieldnames or []}
    if "url" not in columns:
        raise DataError(
            f"The CSV has columns {list(columns) or 'none'}; it needs a 'url' column (and 'label')."
        )
    label_column = columns.get((label_field or "label").lower())
    if not label and label_column is None:
        raise DataError(
            f"The CSV has no '{label_field or 'label'}' column; add one, or give --label NAME for all images."
        )
    items: list[FetchItem] = []
    for row in reader:
        url = (row.get(columns["url"]) or "").strip()
        if not url:
            continue
        value = label or (row.get(label_column) or "" if label_column else "")
        stem = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).stem
        items.append(FetchItem(url, safe_label(value), f"{slug(stem)}_{short_hash(url)}"))
    if not items:
        raise DataError("The CSV lists no URLs; give one image URL per row in the 'url' column.")
    return items
