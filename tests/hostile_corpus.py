"""The hostile-input corpus of ``tests/test_hostile.py`` (issue 15): every image kind ``check``
supports, broken and tricky files, odd names, symlinks in and out, unreadable files and folders.

``build_corpus(root)`` writes it and returns a :class:`Corpus` that knows what each entry is and
what sortsight must do with it; ``snapshot(root)`` hashes every file (and link target) so a test
can prove that no input changed; ``run_without_privileges`` runs CLI commands in a child
process for which file permissions hold even when the tests run as root (CI).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conftest import make_image
from PIL import Image

NON_UTF8 = os.fsdecode(b"caf\xe9 \xff.png")  # Latin-1 bytes of an old archive disk


@dataclass
class Corpus:
    root: Path  # holds data/ and outside/
    data: Path
    outside: Path  # what the links point to
    usable: dict[str, str] = field(default_factory=dict)  # relative path -> kind
    skipped: dict[str, str] = field(default_factory=dict)  # relative path -> expected reason
    locked: dict[str, str] = field(default_factory=dict)  # skipped only when permissions hold
    ignored: dict[str, str] = field(default_factory=dict)  # junk, links not entered: never listed

    @property
    def kinds(self) -> int:
        return len(self.usable) + len(self.skipped) + len(self.locked) + len(self.ignored)


def _png_with_size(width: int, height: int) -> bytes:
    """A tiny valid PNG whose header claims ``width`` x ``height`` (a decompression bomb)."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    ihdr = 8 + 8  # signature, then the IHDR chunk's length and type
    data[ihdr : ihdr + 8] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    crc = zlib.crc32(bytes(data[12 : ihdr + 13]))
    data[ihdr + 13 : ihdr + 17] = crc.to_bytes(4, "big")
    return bytes(data)


def _save(path: Path, image: Image.Image, fmt: str | None = None, **kw: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, fmt, **kw)


def build_corpus(root: Path) -> Corpus:
    data, outside = root / "data", root / "outside"
    c = Corpus(root, data, outside)
    for label, index in (("a", 0), ("b", 1)):
        for i in range(4):
            _save(data / label / f"{label}{i}.png", make_image(index, size=24, seed=i))
    base = make_image(0, size=24, seed=50)

    def usable(rel: str, kind: str, image: Image.Image, fmt: str | None = None, **kw: Any) -> None:
        _save(data / rel, image, fmt, **kw)
        c.usable[rel] = kind

    usable("a/rgb.jpg", "JPEG", base, "JPEG")
    usable("a/cmyk.jpg", "CMYK JPEG", base.convert("CMYK"), "JPEG")
    usable(
        "a/sixteen.png", "16-bit PNG", Image.fromarray(__import__("numpy").full((24, 24), 40000, "uint16"))
    )
    usable("a/palette.png", "palette PNG", base.convert("P"))
    usable("a/la.png", "grey + alpha PNG", base.convert("LA"))
    usable("a/rgba.png", "RGBA PNG", base.convert("RGBA"))
    usable("a/grey.tif", "TIFF", base.convert("L"), "TIFF")
    usable("a/pages.tif", "multi-page TIFF", base, "TIFF", save_all=True, append_images=[base.rotate(90)])
    usable("a/anim.gif", "animated GIF", base, "GIF", save_all=True, append_images=[base.rotate(90)])
    usable("a/pic.webp", "WebP", base, "WEBP")
    usable("a/pic.bmp", "BMP", base, "BMP")
    usable("a/pic.jp2", "JPEG 2000", base, "JPEG2000")
    usable("a/pic.avif", "AVIF", base, "AVIF")
    exif = Image.Exif()
    exif[0x0112] = 6
    usable("a/rotated.jpg", "EXIF-rotated JPEG", base, "JPEG", exif=exif)
    usable("a/UPPER.JPEG", "upper-case extension", base, "JPEG")
    usable("a/strip.png", "10000x2 strip", Image.new("RGB", (10000, 2), (200, 10, 10)))
    usable("b/one_pixel.png", "1x1 image", Image.new("RGB", (1, 1), (0, 0, 255)))
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
        usable("b/pic.heic", "HEIC", base, "HEIF")
    except ImportError:
        (data / "b" / "pic.heic").write_bytes(b"\0\0\0\x18ftypheic" + bytes(12))
        c.skipped["b/pic.heic"] = "needs pillow-heif"
    odd = {
        "b/with space.png": "space in name",
        "b/new\nline.png": "newline in name",
        f"b/{NON_UTF8}": "non-UTF-8 name",
        "b/" + "long" * 60 + ".png": "very long name (244 bytes)",
        "b/[bold]mark[/]up.png": "rich-markup name",
        "b/-rf.png": "name starting with a dash",
        "b/e\u0301te\u0301.png": "NFD unicode name",
        'b/semi;colon,comma"quote.png': "CSV-hostile name",
        "b/sub dir/deep/nested.png": "nested folder",
    }
    for i, (rel, kind) in enumerate(odd.items()):
        usable(rel, kind, make_image(1, size=24, seed=60 + i))
    (data / "b" / "twin.png").write_bytes((data / "a" / "a0.png").read_bytes())
    c.usable["b/twin.png"] = "identical content at two paths"

    def skipped(rel: str, reason: str, content: bytes) -> None:
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_bytes(content)
        c.skipped[rel] = reason

    jpeg = io.BytesIO()
    base.save(jpeg, "JPEG")
    skipped("a/empty.jpg", "empty file", b"")
    skipped("a/truncated.jpg", "truncated", jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    skipped("a/text.png", "not an image", b"this is a text file, not a png\n")
    skipped("a/bomb.png", "too many pixels", _png_with_size(30000, 30000))
    skipped("a/notes.txt", "unsupported file type", b"notes")
    skipped("loose.png", "not in a class folder", (data / "a" / "a1.png").read_bytes())
    for junk in ("a/.DS_Store", "a/._a0.png", "a/Thumbs.db", "a/.hidden/h.png"):
        (data / junk).parent.mkdir(parents=True, exist_ok=True)
        (data / junk).write_bytes(b"junk")
        c.ignored[junk] = "OS junk / hidden"
    _save(outside / "target.png", make_image(1, size=24, seed=90))
    _save(outside / "dir" / "out.png", make_image(1, size=24, seed=91))
    (data / "b" / "link_in.png").symlink_to(outside / "target.png")
    c.usable["b/link_in.png"] = "symlink to a file outside"
    (data / "b" / "linked_dir").symlink_to(outside / "dir", target_is_directory=True)
    c.usable["b/linked_dir/out.png"] = "symlinked folder pointing outside"
    (data / "a" / "loop").symlink_to(data / "a", target_is_directory=True)
    c.ignored["a/loop"] = "symlink loop"
    (data / "b" / "dangling.png").symlink_to(root / "nowhere.png")
    c.ignored["b/dangling.png"] = "dangling symlink"
    _save(data / "a" / "unreadable.png", make_image(0, size=24, seed=92))
    os.chmod(data / "a" / "unreadable.png", 0)
    c.locked["a/unreadable.png"] = "permission denied"
    _save(data / "b" / "locked" / "in_locked.png", make_image(1, size=24, seed=93))
    os.chmod(data / "b" / "locked", 0)
    c.locked["b/locked"] = "folder cannot be read"
    return c


def snapshot(root: Path) -> dict[str, str]:
    """Hash of every file under ``root`` (links: their target), read even without permission."""
    out: dict[str, str] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(dirpath) / name
            rel = os.fsencode(path.relative_to(root)).hex()
            if path.is_symlink():
                out[rel] = "link:" + os.readlink(path)
            elif path.is_file():
                out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            elif path.is_dir():
                out[rel] = f"dir:{oct(path.stat().st_mode & 0o777)}"
    return out


def copy_corpus(c: Corpus, to: Path) -> Path:
    """A copy of the data folder (links kept as links, the locked folder opened) for tests that
    move files."""
    shutil.copytree(c.data, to, symlinks=True)
    os.chmod(to / "b" / "locked", 0o755)
    return to


_CHILD = r"""
import json, sys
from click.testing import CliRunner
from sortsight.cli import cli
results = []
for args in json.loads(sys.argv[1]):
    r = CliRunner().invoke(cli, args)
    results.append({"args": args, "code": r.exit_code, "stdout": r.stdout, "stderr": r.stderr,
                    "crash": None if r.exception is None or isinstance(r.exception, SystemExit)
                    else repr(r.exception)})
print(json.dumps(results))
"""


def permission_runner() -> list[str] | None:
    """A command prefix under which file permissions hold, or None (then skip, saying why).

    As root: ``setpriv`` with an empty capability bounding set (root without CAP_DAC_OVERRIDE
    obeys file modes, and can still reach the Python installed in /root). As another user: none.
    """
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    prefix = [setpriv, "--bounding-set=-all", "--inh-caps=-all"]
    with tempfile.TemporaryDirectory() as folder:
        locked = Path(folder) / "locked"
        locked.write_text("x")
        locked.chmod(0)
        probe = subprocess.run([*prefix, sys.executable, "-c", f"open({str(locked)!r})"], capture_output=True)
    return prefix if b"PermissionError" in probe.stderr else None


def run_without_privileges(
    prefix: list[str], commands: list[list[str]], env: dict[str, str], cwd: Path
) -> list[dict]:
    """Run several ``sortsight`` commands (in-process CliRunner) in one child process."""
    proc = subprocess.run(
        args=[*prefix, sys.executable, "-c", _CHILD, json.dumps(commands)],
        capture_output=True,
        text=True,
        errors="surrogateescape",
        env=env,
        cwd=cwd,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return list(json.loads(proc.stdout.splitlines()[-1]))
