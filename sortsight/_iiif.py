"""Reading IIIF Presentation manifests (API 2 and 3) for :mod:`sortsight.fetch`.

Finds each canvas's painting image and builds its Image API URL at a chosen size (a bounding
box, never upscaled; the full size on level-0 servers), and reads metadata values in both
versions' shapes (v2 strings / ``@value`` lists, v3 language maps).
"""

from __future__ import annotations

import json
from typing import Any

from sortsight.errors import DataError

__all__ = ["canvases", "image_url", "metadata", "text"]


def text(value: Any) -> str:
    """Text of a IIIF v2 value (str, {"@value"}, list) or v3 language map ({"en": ["..."]})."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list):
        return "; ".join(t for t in (text(v) for v in value) if t)
    if isinstance(value, dict):
        if "@value" in value:
            return text(value["@value"])
        for key in ("en", "none", *value.keys()):
            if key in value:
                return text(value[key])
    return str(value).strip()


def metadata(obj: dict[str, Any]) -> dict[str, str]:
    """``{field label (lower case): value text}`` of a manifest's or canvas's ``metadata``."""
    out: dict[str, str] = {}
    for entry in obj.get("metadata") or []:
        if isinstance(entry, dict):
            out.setdefault(text(entry.get("label")).lower(), text(entry.get("value")))
    return out


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else value


def _size_param(service: dict[str, Any], dims: tuple[int, int] | None, size: int | None, v3: bool) -> str:
    full = "max" if v3 else "full"
    profile = json.dumps(service.get("profile", "")).lower()
    if size is None or "level0" in profile or (dims and max(dims) <= size):
        return full
    if "level1" in profile and dims:
        return f"{size}," if dims[0] >= dims[1] else f",{size}"
    return f"!{size},{size}"


def _dims(*objs: dict[str, Any]) -> tuple[int, int] | None:
    for obj in objs:
        w, h = obj.get("width"), obj.get("height")
        if isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0:
            return w, h
    return None


def image_url(resource: dict[str, Any], canvas: dict[str, Any], size: int | None) -> str | None:
    """The URL to fetch for one painting resource (via its image service when it has one)."""
    if resource.get("type") == "Choice" or resource.get("@type") == "oa:Choice":
        resource = _first(resource.get("items") or resource.get("default") or [])
        if not isinstance(resource, dict):
            return None
    services = resource.get("service") or []
    services = services if isinstance(services, list) else [services]
    for service in services:
        if not isinstance(service, dict):
            continue
        base = service.get("id") or service.get("@id")
        kind = str(service.get("type") or service.get("@type") or "")
        context = json.dumps(service.get("@context", ""))
        if not base:
            continue
        v3 = kind == "ImageService3" or "image/3" in context
        param = _size_param(service, _dims(service, resource, canvas), size, v3)
        return f"{str(base).rstrip('/')}/full/{param}/0/default.jpg"
    url = resource.get("id") or resource.get("@id")
    return str(url) if url else None


def canvases(manifest: dict[str, Any]) -> tuple[list[tuple[dict[str, Any], dict[str, Any]]], bool]:
    """(canvas, painting resource) pairs of a v2 or v3 manifest, and whether it is v3."""
    context = json.dumps(manifest.get("@context", ""))
    kind = str(manifest.get("type") or manifest.get("@type") or "")
    if "Collection" in kind:
        raise DataError("This IIIF document is a Collection; give the URL or file of one of its manifests.")
    pairs: list[tuple[dict[str, Any], dict[str, Any]]] = []
    if kind == "Manifest" or "presentation/3" in context:
        for canvas in manifest.get("items") or []:
            for page in canvas.get("items") or []:
                for annotation in page.get("items") or []:
                    body = _first(annotation.get("body"))
                    if isinstance(body, dict):
                        pairs.append((canvas, body))
                        break
                else:
                    continue
                break
        return pairs, True
    if kind == "sc:Manifest" or "presentation/2" in context or "sequences" in manifest:
        for sequence in (manifest.get("sequences") or [])[:1]:
            for canvas in sequence.get("canvases") or []:
                image = _first(canvas.get("images") or [])
                if isinstance(image, dict) and isinstance(image.get("resource"), dict):
                    pairs.append((canvas, image["resource"]))
        return pairs, False
    raise DataError("The JSON source is not a IIIF Presentation v2 or v3 manifest; give a manifest or a CSV.")
