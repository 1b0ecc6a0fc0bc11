"""Open any image a collection may hold, the same way everywhere (train, evaluate, predict, app).

:func:`open_image` returns a fully decoded RGB :class:`PIL.Image.Image` or raises
:class:`~sortsight.errors.ImageError` with a short ``reason`` ("truncated", "not an image", ...).
It applies the EXIF orientation, turns CMYK, 16-bit, palette, LA and RGBA images into RGB
(transparency composited on white), takes the first page of a multi-page TIFF and the first
frame of an animated GIF, and refuses images with more pixels than a limit *before* decoding.

Nothing here changes Pillow's global state, at import or later (no ``MAX_IMAGE_PIXELS``, no
``LOAD_TRUNCATED_IMAGES``, no warning filters): Pillow's own warnings (``DecompressionBombWarning``
for 89–179 MP images, "Corrupt EXIF data") reach the caller, and front-ends decide what to show.
HEIC images need the optional ``pillow-heif`` plugin, registered the first time a HEIC file is met.

Example:
    >>> from PIL import Image
    >>> open_image(Image.new("RGBA", (4, 4))).mode
    'RGB'
"""

from __future__ import annotations

import io
import logging
import os
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Union

from PIL import Image, ImageOps, UnidentifiedImageError

from sortsight.errors import ImageError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "SUPPORTED_EXTENSIONS",
    "ImageInfo",
    "ImageSource",
    "inspect_image",
    "is_image_path",
    "is_junk",
    "iter_image_files",
    "open_image",
    "sort_key",
    "try_open_image",
]

#: File extensions sortsight reads (lowercase, with the dot). Matching ignores case.
SUPPORTED_EXTENSIONS: tuple[str, ...] = (
    ".jpg",
    ".jpeg",
    ".jpe",
    ".jfif",
    ".png",
    ".tif",
    ".tiff",
    ".webp",
    ".bmp",
    ".gif",
    ".jp2",
    ".j2k",
    ".jpf",
    ".jpx",
    ".avif",
    ".heic",
    ".heif",
)

#: Default pixel limit (width × height). It equals the size at which Pillow itself refuses an
#: image as a decompression bomb (2 × ``PIL.Image.MAX_IMAGE_PIXELS``), about 179 megapixels:
#: a 600-dpi scan of an A2 sheet still fits.
DEFAULT_MAX_PIXELS: int = 178_956_970

ImageSource = Union[str, os.PathLike, bytes, IO[bytes], Image.Image]  # noqa: UP007 (runtime alias, py3.10)

logger = logging.getLogger(__name__)

_JUNK_NAMES = frozenset({".ds_store", "thumbs.db", "ehthumbs.db", "desktop.ini", "icon\r"})
_JUNK_DIRS = frozenset({"__macosx", "@eadir", "$recycle.bin", "system volume information", "__pycache__"})
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}
_HEIF_HINT = "install pillow-heif (pip install 'sortsight[heif]') to read HEIC images"


@dataclass(frozen=True)
class ImageInfo:
    """What :func:`inspect_image` learnt: the stored size (before any draft) and the format."""

    width: int
    height: int
    format: str


# --------------------------------------------------------------------------- file names


def is_junk(path: str | os.PathLike) -> bool:
    """True for files and folders an OS or a zip tool leaves behind, and hidden ones.

    ``.DS_Store``, ``Thumbs.db``, ``desktop.ini``, AppleDouble ``._*`` files, ``__MACOSX``,
    Synology ``@eaDir``, and anything whose name starts with a dot.

    Example:
        >>> is_junk("photos/._IMG_1.jpg"), is_junk("photos/IMG_1.jpg")
        (True, False)
    """
    name = Path(path).name
    lowered = name.lower()
    return name.startswith(".") or lowered in _JUNK_NAMES or lowered in _JUNK_DIRS


def is_image_path(path: str | os.PathLike) -> bool:
    """True when ``path`` has a supported image extension (any case) and is not junk.

    Example:
        >>> is_image_path("scan.JPG"), is_image_path("notes.txt"), is_image_path(".hidden.png")
        (True, False, False)
    """
    return Path(path).suffix.lower() in SUPPORTED_EXTENSIONS and not is_junk(path)


def sort_key(path: str | os.PathLike) -> str:
    """A sort key that gives the same order on every OS (forward slashes, NFC unicode)."""
    return unicodedata.normalize("NFC", Path(path).as_posix())


def walk_files(
    root: str | os.PathLike,
    *,
    follow_links: bool = True,
    on_error: Callable[[Path, str], object] | None = None,
) -> Iterator[Path]:
    """Every non-junk file under ``root``, recursively, in a deterministic order.

    Hidden and junk folders are not entered. Folders reached through a symbolic link are
    entered only with ``follow_links`` (each real folder once, so a link loop ends). A folder
    that cannot be read is passed to ``on_error(path, reason)`` (and otherwise skipped).
    """
    root = Path(root)
    seen: set[str] = set()

    def walk(folder: Path) -> Iterator[Path]:
        real = os.path.realpath(folder)
        if real in seen:
            return
        seen.add(real)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: sort_key(e.name))
        except OSError as exc:
            if on_error is not None:
                on_error(folder, f"folder cannot be read ({(exc.strerror or type(exc).__name__).lower()})")
            return
        for entry in entries:
            if is_junk(entry.name):
                continue
            path = folder / entry.name
            try:
                if entry.is_dir():
                    if follow_links or not entry.is_symlink():
                        yield from walk(path)
                elif entry.is_file():
                    yield path
            except OSError:
                continue

    yield from walk(root)


def iter_image_files(root: str | os.PathLike, *, follow_links: bool = True) -> Iterator[Path]:
    """Image files under ``root`` (recursive, sorted the same way on every OS, junk skipped)."""
    return (p for p in walk_files(root, follow_links=follow_links) if is_image_path(p))


# --------------------------------------------------------------------------- opening


def _import_heif() -> Any | None:
    """The ``pillow_heif`` module, or None when it is not installed (a seam for tests)."""
    try:
        import pillow_heif
    except ImportError:
        return None
    return pillow_heif


_heif_registered = False


def _ensure_heif(path: str | None) -> None:
    """Register the HEIF opener with Pillow on first need, or raise the install hint."""
    global _heif_registered
    module = _import_heif()
    if module is None:
        where = f"'{path}' is a HEIC image: " if path else "HEIC image: "
        raise ImageError(where + _HEIF_HINT + ".", reason="needs pillow-heif", path=path)
    if not _heif_registered:
        module.register_heif_opener()
        _heif_registered = True


def _is_heif(head: bytes) -> bool:
    return len(head) >= 12 and head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS


def _name(source: Any) -> str | None:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    name = getattr(source, "name", None)
    return name if isinstance(name, str) else None


def _fail(reason: str, path: str | None, detail: str = "") -> ImageError:
    where = f"'{path}'" if path else "image"
    extra = f" ({detail})" if detail else ""
    return ImageError(f"Cannot read {where}: {reason}{extra}.", reason=reason, path=path)


def _reason_of(exc: BaseException) -> str:
    text = str(exc).lower()
    if any(word in text for word in ("truncated", "premature end", "incomplete", "broken data")):
        return "truncated"
    return "corrupt"


def _check_pixels(size: tuple[int, int], max_pixels: int | None, path: str | None) -> None:
    pixels = size[0] * size[1]
    if size[0] <= 0 or size[1] <= 0:
        raise _fail("corrupt", path, f"size {size[0]}x{size[1]}")
    if max_pixels is not None and pixels > max_pixels:
        raise ImageError(
            f"Cannot read '{path or 'image'}': too many pixels ({size[0]}x{size[1]} = {pixels:,} > limit "
            f"{max_pixels:,}); raise max_pixels if this image is genuine.",
            reason="too many pixels",
            path=path,
        )


def _swaps_axes(im: Image.Image) -> bool:
    try:
        return im.getexif().get(0x0112, 1) in (5, 6, 7, 8)
    except Exception:  # a broken EXIF block must not stop the image
        return False


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode → 8-bit RGB; transparency is composited on white."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        import numpy as np

        arr = np.asarray(im, dtype=np.float64)
        top = float(arr.max()) if arr.size else 0.0
        if mode.startswith("I;16"):  # 16-bit by definition, however dark the picture
            arr = arr / 257.0
        elif mode == "F" and top <= 1.0:
            arr = arr * 255.0
        elif top > 255.0:  # 32-bit integers: 16-bit data, or scale the range that is there
            arr = arr / (65535.0 if top <= 65535 else top) * 255.0
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L").convert("RGB")
    has_alpha = mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in im.info
    if has_alpha:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def _open_pil(fp: IO[bytes], path: str | None, max_pixels: int | None) -> Image.Image:
    head = fp.read(32)
    fp.seek(0)
    if not head:
        raise _fail("empty file", path)
    if _is_heif(head):
        _ensure_heif(path)
    try:
        im = Image.open(fp)
    except Image.DecompressionBombError as exc:  # beyond Pillow's own limit, whatever max_pixels says
        raise ImageError(
            f"Cannot read '{path or 'image'}': too many pixels (over Pillow's limit of "
            f"{2 * (Image.MAX_IMAGE_PIXELS or 0):,}).",
            reason="too many pixels",
            path=path,
        ) from exc
    except UnidentifiedImageError as exc:
        if head[4:12] in (b"ftypavif", b"ftypavis"):
            raise ImageError(
                f"Cannot read '{path or 'image'}': this Pillow cannot decode AVIF; upgrade it "
                "(pip install -U pillow).",
                reason="unsupported format",
                path=path,
            ) from exc
        raise _fail("not an image", path) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise _fail(_reason_of(exc), path, str(exc).splitlines()[0] if str(exc) else "") from exc
    _check_pixels(im.size, max_pixels, path)
    return im


def _upright(im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a broken EXIF block leaves the image as stored."""
    try:
        return ImageOps.exif_transpose(im) or im
    except Exception:  # EXIF parsers raise many kinds on junk; the pixels are still good
        logger.debug("ignoring unreadable EXIF orientation", exc_info=True)
        return im


def _finish(im: Image.Image, path: str | None, draft: tuple[int, int] | None) -> Image.Image:
    """Decode (with an optional JPEG draft), apply EXIF orientation, convert to RGB, load."""
    try:
        if getattr(im, "n_frames", 1) > 1:
            im.seek(0)
        if draft is not None and im.format == "JPEG":
            want = (draft[1], draft[0]) if _swaps_axes(im) else draft
            im.draft("RGB" if im.mode == "RGB" else None, want)
        im.load()
        upright = _upright(im)
        rgb = _to_rgb(upright)
        rgb.load()
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(
            f"Cannot read '{path or 'image'}': too many pixels.", reason="too many pixels", path=path
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError) as exc:
        reason = _reason_of(exc)
        if isinstance(exc, ValueError) and "conversion" in str(exc):
            reason = "unsupported format"
        raise _fail(reason, path, str(exc).splitlines()[0] if str(exc) else "") from exc
    except MemoryError as exc:
        raise _fail("too many pixels", path, "out of memory") from exc
    return rgb


def open_image(
    source: ImageSource,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    draft: tuple[int, int] | None = None,
) -> Image.Image:
    """Open ``source`` as a fully decoded, upright, 8-bit RGB image.

    Args:
        source: a path, the file's bytes, a binary file object, or a PIL image.
        max_pixels: refuse images with more pixels than this (checked from the header, before
            decoding); None for no limit of ours (Pillow's own bomb limit still applies).
        draft: for JPEGs, decode at a reduced scale that is still at least this (width, height);
            much faster for thumbnails and model inputs.

    Returns:
        A loaded ``PIL.Image.Image`` in mode ``"RGB"``.

    Raises:
        ImageError: with ``reason`` one of "empty file", "not an image", "truncated", "corrupt",
            "too many pixels", "unsupported format", "needs pillow-heif", "not found".

    Example:
        >>> import io
        >>> from PIL import Image
        >>> buf = io.BytesIO(); Image.new("L", (8, 6)).save(buf, "PNG")
        >>> open_image(buf.getvalue()).size
        (8, 6)
    """
    if isinstance(source, Image.Image):
        _check_pixels(source.size, max_pixels, None)
        return _finish(source.copy() if source.mode == "RGB" else source, None, draft)
    path = _name(source)
    if isinstance(source, (str, os.PathLike)):
        try:
            with open(source, "rb") as fp:
                im = _open_pil(fp, path, max_pixels)
                return _finish(im, path, draft)
        except FileNotFoundError as exc:
            raise _fail("not found", path) from exc
        except IsADirectoryError as exc:
            raise _fail("not an image", path, "it is a folder") from exc
        except PermissionError as exc:
            raise _fail("permission denied", path) from exc
    stream: IO[bytes]
    if isinstance(source, (bytes, bytearray, memoryview)):
        stream = io.BytesIO(bytes(source))
    else:
        stream = source
        if not (hasattr(stream, "seekable") and stream.seekable()):
            stream = io.BytesIO(stream.read())
    im = _open_pil(stream, path, max_pixels)
    return _finish(im, path, draft)


def try_open_image(
    source: ImageSource,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    draft: tuple[int, int] | None = None,
) -> tuple[Image.Image | None, str | None]:
    """Like :func:`open_image`, but returns ``(image, None)`` or ``(None, reason)`` instead of raising."""
    try:
        return open_image(source, max_pixels=max_pixels, draft=draft), None
    except ImageError as exc:
        return None, exc.reason


def inspect_image(
    path: str | os.PathLike, *, max_pixels: int | None = DEFAULT_MAX_PIXELS, full: bool = True
) -> ImageInfo:
    """Check that ``path`` is a usable image and return its stored size and format.

    With ``full`` (the default) the whole file is decoded — at a reduced JPEG scale, which
    still reads every byte, so truncation is found — through the same code as
    :func:`open_image`. Without it only the header is read (fast, misses truncation).

    Raises:
        ImageError: as :func:`open_image`.
    """
    name = str(path)
    try:
        with open(path, "rb") as fp:
            im = _open_pil(fp, name, max_pixels)
            info = ImageInfo(im.size[0], im.size[1], im.format or "")
            if _swaps_axes(im):
                info = ImageInfo(info.height, info.width, info.format)
            if full:
                _finish(im, name, (64, 64))
    except FileNotFoundError as exc:
        raise _fail("not found", name) from exc
    except PermissionError as exc:
        raise _fail("permission denied", name) from exc
    except IsADirectoryError as exc:
        raise _fail("not an image", name, "it is a folder") from exc
    return info
