"""Contact sheets: labelled grids of thumbnails (the dataset check's sample grid, the doctor's
flagged images)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw, ImageFont

from sortsight._sampling import shuffled
from sortsight.config import DEFAULT_SEED
from sortsight.images import ImageSource, try_open_image

if TYPE_CHECKING:
    from sortsight.data import ImageDataset

__all__ = ["contact_sheet", "sample_grid"]


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _fit(img: Image.Image, box: int) -> Image.Image:
    """``img`` scaled to fit a ``box`` square, keeping its shape; never thinner than one pixel
    (``ImageOps.contain`` fails on a 10000x2 strip)."""
    scale = min(box / img.width, box / img.height)
    size = (max(1, min(box, round(img.width * scale))), max(1, min(box, round(img.height * scale))))
    return img if size == img.size else img.resize(size, Image.Resampling.BICUBIC)


def contact_sheet(
    entries: Sequence[tuple[ImageSource | None, str]],
    *,
    columns: int = 6,
    thumb: int = 128,
    title: str = "",
) -> Image.Image:
    """A labelled grid of thumbnails (fastai's ``show_batch``), e.g. for ``sortsight check --grid``.

    Args:
        entries: (image source, caption) pairs; unreadable images become a grey tile that says
            so; a None source leaves the cell empty.
        columns: thumbnails per row.
        thumb: thumbnail box size in pixels.
        title: optional line at the top.

    Returns:
        An RGB image.
    """
    columns = max(1, min(columns, len(entries) or 1))
    rows = max(1, -(-len(entries) // columns))
    caption_h = max(14, thumb // 7)
    pad = 6
    title_h = caption_h + pad if title else 0
    width = columns * (thumb + pad) + pad
    height = title_h + rows * (thumb + caption_h + pad) + pad
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = _font(caption_h - 3)
    if title:
        draw.text((pad, pad), title, fill=(0, 0, 0), font=font)
    for i, (source, caption) in enumerate(entries):
        x = pad + (i % columns) * (thumb + pad)
        y = title_h + pad + (i // columns) * (thumb + caption_h + pad)
        if source is None:
            continue
        img, reason = try_open_image(source, draft=(thumb, thumb))
        if img is None:
            draw.rectangle([x, y, x + thumb - 1, y + thumb - 1], fill=(200, 200, 200))
            draw.text((x + 4, y + thumb // 2), reason or "unreadable", fill=(120, 0, 0), font=font)
        else:
            img = _fit(img, thumb)
            sheet.paste(img, (x + (thumb - img.width) // 2, y + (thumb - img.height) // 2))
        text = caption
        while text and draw.textlength(text, font=font) > thumb:
            text = text[:-2] + "…" if len(text) > 2 else ""
        draw.text((x, y + thumb + 1), text, fill=(0, 0, 0), font=font)
    return sheet


def sample_grid(
    ds: ImageDataset,
    *,
    per_class: int = 6,
    max_classes: int = 24,
    thumb: int = 128,
    seed: int = DEFAULT_SEED,
    split: str | None = None,
) -> Image.Image:
    """A labelled grid of sample images, one row per class (fastai's ``show_batch``).

    Args:
        ds: the dataset.
        per_class: images per row.
        max_classes: rows at most (the first classes in sorted order).
        thumb: thumbnail size in pixels.
        seed: which samples are shown.
        split: only items of this split (default: all).
    """
    entries: list[tuple[ImageSource | None, str]] = []
    pool = ds.items if split is None else tuple(ds.by_split(split))
    for label in ds.classes[:max_classes]:
        members = [it for it in pool if it.label == label]
        chosen = shuffled(members, random.Random(f"{seed}:grid:{label}"))[:per_class]
        entries += [(it.path, label) for it in chosen]
        entries += [(None, "")] * (per_class - len(chosen))
    more = len(ds.classes) - max_classes
    title = f"{len(ds.items)} images, {len(ds.classes)} classes" + (
        f" (first {max_classes} shown)" if more > 0 else ""
    )
    return contact_sheet(entries, columns=per_class, thumb=thumb, title=title)
