"""images.py: a generated corpus of awkward and broken images, each loaded correctly or refused
with the right reason."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, features

from sortsight import images
from sortsight.errors import ImageError
from sortsight.images import (
    inspect_image,
    is_image_path,
    is_junk,
    iter_image_files,
    open_image,
    try_open_image,
)
from sortsight.sheets import contact_sheet

RED, BLUE = (255, 0, 0), (0, 0, 255)


def _halves(size: tuple[int, int] = (40, 20)) -> Image.Image:
    """Left half red, right half blue: orientation is visible in the pixels."""
    img = Image.new("RGB", size, BLUE)
    img.paste(RED, (0, 0, size[0] // 2, size[1]))
    return img


def _with_orientation(path: Path, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    _halves().save(path, "JPEG", quality=95, exif=exif)


def _close(pixel: Any, expected: tuple[int, int, int], tol: int = 40) -> bool:
    return all(abs(int(a) - b) <= tol for a, b in zip(pixel[:3], expected, strict=True))


def _px(img: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    pixel = img.getpixel(xy)
    assert isinstance(pixel, tuple)
    return pixel


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims width × height pixels and whose data is a stub."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)))


def _heic_bytes() -> bytes:
    pillow_heif = pytest.importorskip("pillow_heif")
    buf = io.BytesIO()
    pillow_heif.from_pillow(Image.new("RGB", (16, 16), RED)).save(buf, quality=90)
    return buf.getvalue()


# ------------------------------------------------------------------ corpus: (maker, check)


def make_upper_jpg(p: Path) -> Path:
    Image.new("RGB", (20, 10), RED).save(p / "UPPER.JPG", "JPEG")
    return p / "UPPER.JPG"


def make_mixed_jpeg(p: Path) -> Path:
    Image.new("RGB", (20, 10), RED).save(p / "Mixed.Jpeg", "JPEG")
    return p / "Mixed.Jpeg"


def make_exif6(p: Path) -> Path:
    _with_orientation(p / "exif6.jpg", 6)
    return p / "exif6.jpg"


def make_exif3(p: Path) -> Path:
    _with_orientation(p / "exif3.jpg", 3)
    return p / "exif3.jpg"


def make_exif8(p: Path) -> Path:
    _with_orientation(p / "exif8.jpg", 8)
    return p / "exif8.jpg"


def make_cmyk(p: Path) -> Path:
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(p / "cmyk.jpg", "JPEG", quality=95)
    return p / "cmyk.jpg"


def make_png16(p: Path) -> Path:
    Image.fromarray(np.full((8, 8), 40000, dtype=np.uint16)).save(p / "gray16.png")
    return p / "gray16.png"


def make_png48(p: Path) -> Path:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one, so the chunks are written here)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    arr = np.zeros((3, 4, 3), dtype=">u2")
    arr[..., 0], arr[..., 2] = 65535, 32768
    raw = b"".join(b"\x00" + arr[y].tobytes() for y in range(3))
    ihdr = struct.pack(">IIBBBBB", 4, 3, 16, 2, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    (p / "rgb48.png").write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return p / "rgb48.png"


def make_tiff16(p: Path) -> Path:
    Image.fromarray(np.full((5, 5), 50000, dtype=np.uint16)).save(p / "gray16.tiff")
    return p / "gray16.tiff"


def make_png16_dark(p: Path) -> Path:
    Image.fromarray(np.full((8, 8), 200, dtype=np.uint16)).save(p / "dark16.png")  # near-black in 16 bits
    return p / "dark16.png"


def make_palette_transparent(p: Path) -> Path:
    img = Image.new("P", (8, 8), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.paste(1, (0, 0, 4, 8))  # left half red, right half index 0 = transparent
    img.save(p / "palette.png", transparency=0)
    return p / "palette.png"


def make_la(p: Path) -> Path:
    img = Image.new("LA", (8, 8), (0, 0))  # black but fully transparent
    img.paste((0, 255), (0, 0, 4, 8))  # left half opaque black
    img.save(p / "la.png")
    return p / "la.png"


def make_rgba(p: Path) -> Path:
    Image.new("RGBA", (8, 8), (255, 0, 0, 128)).save(p / "rgba.png")
    return p / "rgba.png"


def make_tiff_pages(p: Path) -> Path:
    first, second = Image.new("RGB", (12, 10), RED), Image.new("RGB", (30, 30), BLUE)
    first.save(p / "pages.tif", save_all=True, append_images=[second])
    return p / "pages.tif"


def make_gif_animated(p: Path) -> Path:
    frames = [Image.new("RGB", (10, 10), RED), Image.new("RGB", (10, 10), BLUE)]
    frames[0].save(p / "anim.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return p / "anim.gif"


def make_webp(p: Path) -> Path:
    Image.new("RGB", (10, 10), RED).save(p / "img.webp", "WEBP", quality=95)
    return p / "img.webp"


def make_bmp(p: Path) -> Path:
    Image.new("RGB", (10, 10), RED).save(p / "img.bmp")
    return p / "img.bmp"


def make_grayscale_1bit(p: Path) -> Path:
    Image.new("1", (10, 10), 1).save(p / "bits.png")
    return p / "bits.png"


def make_heic(p: Path) -> Path:
    (p / "photo.HEIC").write_bytes(_heic_bytes())
    return p / "photo.HEIC"


def make_avif(p: Path) -> Path:
    if not features.check("avif"):
        pytest.skip("this Pillow has no AVIF support")
    Image.new("RGB", (16, 16), RED).save(p / "img.avif", "AVIF", quality=90)
    return p / "img.avif"


def make_jpeg2000(p: Path) -> Path:
    if not features.check("jpg_2000"):
        pytest.skip("this Pillow has no JPEG 2000 support")
    Image.new("RGB", (16, 12), RED).save(p / "scan.JP2")
    return p / "scan.JP2"


def make_truncated(p: Path) -> Path:
    buf = io.BytesIO()
    Image.effect_noise((64, 64), 64).convert("RGB").save(buf, "JPEG")
    (p / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return p / "truncated.jpg"


def make_truncated_png(p: Path) -> Path:
    buf = io.BytesIO()
    Image.effect_noise((64, 64), 64).convert("RGB").save(buf, "PNG")
    (p / "truncated.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return p / "truncated.png"


def make_zero(p: Path) -> Path:
    (p / "zero.jpg").write_bytes(b"")
    return p / "zero.jpg"


def make_text(p: Path) -> Path:
    (p / "notes.jpg").write_text("this is not a picture\n")
    return p / "notes.jpg"


def make_bomb_header(p: Path) -> Path:
    _png_header_only(p / "bomb.png", 30000, 30000)  # 900 MP claimed: Pillow's own limit
    return p / "bomb.png"


def make_big_header(p: Path) -> Path:
    _png_header_only(p / "big.png", 10000, 10000)  # 100 MP: under the default, over a 50 MP limit
    return p / "big.png"


Check = Callable[[Image.Image], bool]

LOADS: list[tuple[Callable[[Path], Path], Check]] = [
    (make_upper_jpg, lambda im: im.size == (20, 10) and _close(im.getpixel((5, 5)), RED)),
    (make_mixed_jpeg, lambda im: im.size == (20, 10)),
    # 6 = rotate 90° clockwise to display: the red left half ends on top.
    (
        make_exif6,
        lambda im: (
            im.size == (20, 40) and _close(im.getpixel((10, 5)), RED) and _close(im.getpixel((10, 35)), BLUE)
        ),
    ),
    # 3 = rotate 180°: red ends on the right.
    (
        make_exif3,
        lambda im: (
            im.size == (40, 20) and _close(im.getpixel((35, 10)), RED) and _close(im.getpixel((5, 10)), BLUE)
        ),
    ),
    # 8 = rotate 90° counter-clockwise: red ends at the bottom.
    (
        make_exif8,
        lambda im: (
            im.size == (20, 40) and _close(im.getpixel((10, 35)), RED) and _close(im.getpixel((10, 5)), BLUE)
        ),
    ),
    (make_cmyk, lambda im: _close(im.getpixel((8, 8)), RED)),
    (make_png16_dark, lambda im: _px(im, (4, 4))[0] <= 1),
    (make_png48, lambda im: im.size == (4, 3) and _close(im.getpixel((1, 1)), (255, 0, 128), tol=1)),
    (make_tiff16, lambda im: abs(_px(im, (2, 2))[0] - round(50000 / 65535 * 255)) <= 1),
    (make_png16, lambda im: abs(_px(im, (4, 4))[0] - round(40000 / 65535 * 255)) <= 1),
    (
        make_palette_transparent,
        lambda im: im.getpixel((1, 1)) == RED and im.getpixel((6, 1)) == (255, 255, 255),
    ),
    (make_la, lambda im: im.getpixel((1, 1)) == (0, 0, 0) and im.getpixel((6, 1)) == (255, 255, 255)),
    # 50 % red over white: (255, 127, 127) within rounding.
    (make_rgba, lambda im: _close(im.getpixel((4, 4)), (255, 127, 127), tol=1)),
    (make_tiff_pages, lambda im: im.size == (12, 10) and im.getpixel((5, 5)) == RED),
    (make_gif_animated, lambda im: im.size == (10, 10) and im.getpixel((5, 5)) == RED),
    (make_webp, lambda im: _close(im.getpixel((5, 5)), RED)),
    (make_bmp, lambda im: im.getpixel((5, 5)) == RED),
    (make_grayscale_1bit, lambda im: im.getpixel((5, 5)) == (255, 255, 255)),
    (make_heic, lambda im: _close(im.getpixel((8, 8)), RED)),
    (make_avif, lambda im: _close(im.getpixel((8, 8)), RED)),
    (make_jpeg2000, lambda im: im.size == (16, 12) and _close(im.getpixel((8, 6)), RED)),
]

REFUSED: list[tuple[Callable[[Path], Path], str, int | None]] = [
    (make_truncated, "truncated", images.DEFAULT_MAX_PIXELS),
    (make_truncated_png, "truncated", images.DEFAULT_MAX_PIXELS),
    (make_zero, "empty file", images.DEFAULT_MAX_PIXELS),
    (make_text, "not an image", images.DEFAULT_MAX_PIXELS),
    (make_bomb_header, "too many pixels", images.DEFAULT_MAX_PIXELS),
    (make_big_header, "too many pixels", 50_000_000),
    (make_bmp, "too many pixels", 50),  # a tiny configured limit
]


@pytest.mark.parametrize(("maker", "check"), LOADS, ids=[m.__name__[5:] for m, _ in LOADS])
def test_corpus_loads_as_rgb(tmp_path: Path, maker: Callable[[Path], Path], check: Check) -> None:
    path = maker(tmp_path)
    img = open_image(path)
    assert img.mode == "RGB"
    assert check(img), (img.size, img.getpixel((0, 0)))
    assert is_image_path(path)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow's own, 89–179 MP
@pytest.mark.parametrize(
    ("maker", "reason", "limit"), REFUSED, ids=[f"{m.__name__[5:]}-{r}" for m, r, _ in REFUSED]
)
def test_corpus_refused_with_reason(
    tmp_path: Path, maker: Callable[[Path], Path], reason: str, limit: int
) -> None:
    path = maker(tmp_path)
    with pytest.raises(ImageError) as info:
        open_image(path, max_pixels=limit)
    assert info.value.reason == reason
    assert info.value.path == str(path)
    assert "\n" not in str(info.value) and path.name in str(info.value)
    assert try_open_image(path, max_pixels=limit) == (None, reason)
    with pytest.raises(ImageError):
        inspect_image(path, max_pixels=limit)


def test_truncated_jpeg_header_is_fine_but_full_check_finds_it(tmp_path: Path) -> None:
    path = make_truncated(tmp_path)
    assert inspect_image(path, full=False).width == 64
    with pytest.raises(ImageError, match="truncated"):
        inspect_image(path)


def test_heic_without_plugin_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "photo.heic"
    path.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64)
    monkeypatch.setattr(images, "_import_heif", lambda: None)  # the seam: plugin "not installed"
    with pytest.raises(ImageError) as info:
        open_image(path)
    assert info.value.reason == "needs pillow-heif"
    assert "pip install 'sortsight[heif]'" in str(info.value)


def test_no_global_pil_state_changed(tmp_path: Path) -> None:
    before = Image.MAX_IMAGE_PIXELS
    from PIL import ImageFile

    try_open_image(make_truncated(tmp_path))
    try_open_image(make_bomb_header(tmp_path))
    assert before == Image.MAX_IMAGE_PIXELS
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_corrupt_exif_still_loads(tmp_path: Path) -> None:
    junk = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x01\x01\x12\x00\x03\x00\x00\x00\x01\x00\x63\x00\x00"
    for i, exif in enumerate((junk, b"Exif\x00\x00garbagegarbage")):
        Image.new("RGB", (10, 6), RED).save(tmp_path / f"e{i}.jpg", exif=exif)
        img = open_image(tmp_path / f"e{i}.jpg")
        assert img.size == (10, 6) and _close(img.getpixel((5, 3)), RED)


def test_sources_bytes_fileobj_and_pil(tmp_path: Path) -> None:
    path = make_exif6(tmp_path)
    data = path.read_bytes()
    for source in (str(path), path, data, io.BytesIO(data), Image.open(path)):
        img = open_image(source)
        assert img.size == (20, 40) and _close(img.getpixel((10, 5)), RED)
    assert open_image(Image.new("LA", (3, 3), (0, 0))).getpixel((1, 1)) == (255, 255, 255)


class _NoSeek(io.RawIOBase):
    def __init__(self, data: bytes) -> None:
        self._buf = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, b: bytearray) -> int:  # type: ignore[override]
        chunk = self._buf.read(len(b))
        b[: len(chunk)] = chunk
        return len(chunk)


def test_unseekable_stream(tmp_path: Path) -> None:
    data = make_webp(tmp_path).read_bytes()
    assert open_image(_NoSeek(data)).size == (10, 10)  # type: ignore[arg-type]


def test_missing_file_and_folder(tmp_path: Path) -> None:
    assert try_open_image(tmp_path / "nope.jpg") == (None, "not found")
    assert try_open_image(tmp_path)[1] == "not an image"


def test_draft_decodes_jpeg_smaller_but_big_enough(tmp_path: Path) -> None:
    big = _halves((800, 400))
    exif = Image.Exif()
    exif[0x0112] = 6
    big.save(tmp_path / "big.jpg", quality=90, exif=exif)
    img = open_image(tmp_path / "big.jpg", draft=(100, 190))
    # upright 400x800; draft keeps both sides >= the request, and rotation is still applied
    assert img.size[0] >= 100 and img.size[1] >= 190 and img.size[0] < 400
    assert img.size[1] > img.size[0] and _close(img.getpixel((img.width // 2, 5)), RED)
    assert open_image(tmp_path / "big.jpg").size == (400, 800)


def test_inspect_reports_upright_size(tmp_path: Path) -> None:
    info = inspect_image(make_exif6(tmp_path))
    assert (info.width, info.height, info.format) == (20, 40, "JPEG")


def test_junk_and_extensions(tmp_path: Path) -> None:
    for name in (".DS_Store", "Thumbs.db", "desktop.ini", "._IMG_1.jpg", ".hidden.png", "__MACOSX"):
        assert is_junk(name), name
    assert not is_junk("IMG_1.jpg")
    assert is_image_path("a/B.TIFF") and is_image_path("x.Jpeg") and not is_image_path("notes.txt")
    assert not is_image_path("._x.jpg")


def test_iter_image_files_is_sorted_and_skips_junk(tmp_path: Path) -> None:
    for rel in (
        "b/2.jpg",
        "b/10.PNG",
        "a/z.jpg",
        "a/._z.jpg",
        ".git/x.png",
        "a/.thumbs/t.jpg",
        "__MACOSX/a/z.jpg",
        "a/notes.txt",
        "Thumbs.db",
        "c/d/e.webp",
    ):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in iter_image_files(tmp_path)]
    assert found == ["a/z.jpg", "b/10.PNG", "b/2.jpg", "c/d/e.webp"]


def test_contact_sheet(tmp_path: Path) -> None:
    good = make_bmp(tmp_path)
    sheet = contact_sheet(
        [(good, "red"), (make_text(tmp_path), "bad"), (None, "")], columns=3, thumb=32, title="t"
    )
    assert sheet.mode == "RGB" and sheet.width == 3 * (32 + 6) + 6
    # the readable image fills its cell (upscaled) with red
    found_red = any(sheet.getpixel((x, y)) == RED for x in range(6, 38) for y in range(20, 60))
    assert found_red
