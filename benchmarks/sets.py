"""Benchmark datasets built from packages installed here: one in-distribution set, three shifted ones.

Each builder writes a class-folder dataset in sortsight's split layout (``train/<class>/*``,
``test/<class>/*``, see docs/data.md) under a folder the caller gives, deterministically (fixed
seeds), and records where the images came from (Debian / PyPI package names and versions, the font
files, the sizes and the seed) in ``provenance.json`` next to ``train/`` and ``test/``. That file
is written last: a set whose ``provenance.json`` matches the builder's version is reused as is.

=========  ===========================================================  =======  =============
name       what the test images are                                     classes  train / test
=========  ===========================================================  =======  =============
fashion    Fashion-MNIST test images (same source as train)             10       1,500 / 1,000
fonts      characters rendered in other font families than the train   9        1,800 / 990
scanner    Fashion-MNIST test images through a "different scanner"      10       1,500 / 1,000
digits     font-rendered digits at 8x8; train is sklearn's handwriting  10       1,500 / 1,000
=========  ===========================================================  =======  =============

Usage::

    python benchmarks/sets.py --work /tmp/sortsight-bench            # build all four, print paths
    python benchmarks/sets.py --sets fonts,scanner --work /tmp/sortsight-bench

Needs the Debian packages ``dataset-fashion-mnist`` and the font packages below (installed with
``apt-get`` when running as root, otherwise a one-line message says what to run), Pillow, NumPy
and scikit-learn.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

VERSION = 1  # bump when a builder changes its output, so cached sets are rebuilt
SEED = 20260
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_PACKAGE = "dataset-fashion-mnist"
FASHION_CLASSES = (
    "t-shirt", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle-boot",
)  # fmt: skip
FASHION_SIZES = {"train": 150, "test": 100}  # per class

#: Train fonts: plain modern sans / serif / mono families. Test fonts: other families of other
#: styles (old-style and transitional serifs, a chancery script, geometric sans, a comic hand).
TRAIN_FONT_PACKAGES = ("fonts-dejavu-core", "fonts-dejavu-extra", "fonts-liberation", "fonts-freefont-ttf")
TEST_FONT_PACKAGES = ("fonts-urw-base35", "fonts-ebgaramond", "fonts-comic-neue")
FONT_SKIP = ("symbol", "d050000l", "math", "dingbat")  # no letters in these
CHARACTERS = {
    "a": "a",
    "e": "e",
    "g": "g",
    "k": "k",
    "r": "r",
    "t": "t",
    "y": "y",
    "G": "G-upper",
    "&": "ampersand",
}
FONT_SIZES = {"train": 200, "test": 110}  # per class
DIGIT_SIZES = {"train": 150, "test": 100}  # per class
QUICK_SCALE = 0.05


class SetError(SystemExit):
    """A missing package or input: one line saying what to do."""


# ------------------------------------------------------------------------------------ packages
def package_version(name: str) -> str | None:
    """The installed version of a Debian package, or None."""
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}|${Version}", name], capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        return None
    status, _, version = out.stdout.partition("|")
    return version if out.returncode == 0 and status.endswith(" installed") else None


def ensure_packages(names: tuple[str, ...]) -> dict[str, str]:
    """Install missing Debian packages when running as root; else fail with the command to run."""
    missing = [n for n in names if package_version(n) is None]
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        cmd = ["apt-get", "install", "-y", "-qq", *missing]
        if subprocess.run(cmd, env=env, capture_output=True, check=False).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, check=False)
            subprocess.run(cmd, env=env, capture_output=True, check=False)
        missing = [n for n in names if package_version(n) is None]
    if missing:
        raise SetError(
            f"missing Debian package(s) {', '.join(missing)} — run: apt-get install {' '.join(missing)}"
        )
    return {n: str(package_version(n)) for n in names}


def package_fonts(package: str) -> list[Path]:
    """The .ttf/.otf files a Debian package installed, letter fonts only, sorted."""
    out = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True, check=True).stdout
    files = [Path(p) for p in out.splitlines() if p.lower().endswith((".ttf", ".otf"))]
    return sorted(p for p in files if p.is_file() and not any(s in p.name.lower() for s in FONT_SKIP))


# ------------------------------------------------------------------------------------ fashion
def read_idx(name: str) -> np.ndarray:
    with gzip.open(FASHION_DIR / name) as fh:
        data = fh.read()
    if "labels" in name:
        return np.frombuffer(data, np.uint8, offset=8)
    return np.frombuffer(data, np.uint8, offset=16).reshape(-1, 28, 28)


def sized(sizes: dict[str, int], scale: float) -> dict[str, int]:
    """Images per class and split, scaled (``--quick`` smoke runs), at least 4."""
    return {k: max(4, round(v * scale)) for k, v in sizes.items()}


def fashion_split(split: str, rng: np.random.Generator, per_class: int) -> list[tuple[int, int, np.ndarray]]:
    """(class index, source index, 28x28 image) for ``per_class`` images of each class."""
    prefix = "train" if split == "train" else "t10k"
    xs, ys = read_idx(f"{prefix}-images-idx3-ubyte.gz"), read_idx(f"{prefix}-labels-idx1-ubyte.gz")
    out = []
    for label in range(len(FASHION_CLASSES)):
        for i in sorted(rng.permutation(np.flatnonzero(ys == label))[:per_class]):
            out.append((label, int(i), xs[i]))
    return out


def scanner(image: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A "different scanner": 2.3x resample, small rotation, tone curve, paper texture, blur, JPEG."""
    side = 64
    img = Image.fromarray(image).resize((side, side), Image.Resampling.BILINEAR)
    img = img.rotate(float(rng.uniform(-8, 8)), resample=Image.Resampling.BILINEAR, fillcolor=0)
    x = np.asarray(img, np.float32) / 255.0
    gamma, black, white = rng.uniform(0.55, 0.8), rng.uniform(0.12, 0.25), rng.uniform(0.8, 0.92)
    x = black + (white - black) * x**gamma  # lifted blacks, compressed highlights, brighter mids
    coarse = rng.normal(0, 1, (8, 8)).astype(np.float32)
    coarse_img = Image.fromarray(coarse).resize((side, side), Image.Resampling.BICUBIC)
    paper = 0.05 * np.asarray(coarse_img) + rng.normal(0, 0.035, (side, side))  # fibres + grain
    x = np.clip(x + paper, 0, 1)
    out = Image.fromarray((x * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(rng.uniform(0.8, 1.4)))
    buf = io.BytesIO()
    out.save(buf, "JPEG", quality=int(rng.integers(18, 35)))
    return Image.open(io.BytesIO(buf.getvalue()))


def build_fashion(folder: Path, scale: float, *, shifted: bool) -> dict[str, object]:
    version = ensure_packages((FASHION_PACKAGE,))
    if not FASHION_DIR.is_dir():
        raise SetError(f"{FASHION_DIR} not found — run: apt-get install --reinstall {FASHION_PACKAGE}")
    rng = np.random.default_rng(SEED)
    sizes = sized(FASHION_SIZES, scale)
    for split in ("train", "test"):
        for label, index, pixels in fashion_split(split, rng, sizes[split]):
            target = folder / split / FASHION_CLASSES[label]
            target.mkdir(parents=True, exist_ok=True)
            if shifted and split == "test":
                scanner(pixels, rng).save(target / f"{index:05d}.jpg", quality=95)
            else:
                Image.fromarray(pixels).save(target / f"{index:05d}.png")
    return {
        "packages": {"debian": version},
        "source": "Fashion-MNIST (Zalando SE, MIT licence): train from train-images, test from t10k-images",
        "per_class": sizes,
        "shift": (
            "test images: 64 px resample, rotation +-8 deg, tone curve (gamma 0.55-0.8, black 0.12-0.25, "
            "white 0.8-0.92), paper texture (coarse + grain noise), Gaussian blur 0.8-1.4 px, JPEG q18-34"
            if shifted
            else "none (in-distribution)"
        ),
    }


# ------------------------------------------------------------------------------------ fonts
def render_glyph(text: str, font_file: Path, rng: np.random.Generator, *, side: int = 64) -> Image.Image:
    """Dark ink on light paper, random size, offset, rotation and tones (same for train and test)."""
    size = int(rng.integers(int(side * 0.5), int(side * 0.8)))
    font = ImageFont.truetype(str(font_file), size)
    paper, ink = int(rng.integers(200, 256)), int(rng.integers(0, 70))
    big = Image.new("L", (side * 2, side * 2), paper)
    draw = ImageDraw.Draw(big)
    draw.text((side, side), text, font=font, fill=ink, anchor="mm")
    big = big.rotate(float(rng.uniform(-10, 10)), resample=Image.Resampling.BICUBIC, fillcolor=paper)
    dx, dy = (int(v) for v in rng.integers(-side // 8, side // 8 + 1, 2))
    left, top = side // 2 + dx, side // 2 + dy
    img = big.crop((left, top, left + side, top + side))
    noise = rng.normal(0, 6, (side, side))
    return Image.fromarray(np.clip(np.asarray(img, np.float32) + noise, 0, 255).astype(np.uint8))


def font_groups() -> tuple[dict[str, str], dict[str, list[Path]]]:
    versions = ensure_packages(TRAIN_FONT_PACKAGES + TEST_FONT_PACKAGES)
    groups: dict[str, list[Path]] = {}
    for split, packages in (("train", TRAIN_FONT_PACKAGES), ("test", TEST_FONT_PACKAGES)):
        groups[split] = [f for p in packages for f in package_fonts(p)]
        if not groups[split]:
            raise SetError(
                f"no font files in {', '.join(packages)} — run: apt-get install --reinstall {packages[0]}"
            )
    return versions, groups


def build_fonts(folder: Path, scale: float) -> dict[str, object]:
    versions, groups = font_groups()
    rng = np.random.default_rng(SEED + 1)
    sizes = sized(FONT_SIZES, scale)
    for split in ("train", "test"):
        fonts = groups[split]
        for char, name in CHARACTERS.items():
            target = folder / split / name
            target.mkdir(parents=True, exist_ok=True)
            for k in range(sizes[split]):
                font = fonts[int(rng.integers(len(fonts)))]
                render_glyph(char, font, rng).save(target / f"{k:04d}_{font.stem}.png")
    return {
        "packages": {"debian": versions},
        "train_font_packages": list(TRAIN_FONT_PACKAGES),
        "test_font_packages": list(TEST_FONT_PACKAGES),
        "train_fonts": [f.name for f in groups["train"]],
        "test_fonts": [f.name for f in groups["test"]],
        "characters": CHARACTERS,
        "per_class": sizes,
        "shift": "test characters are drawn in other font families (other packages) than the train ones",
    }


# ------------------------------------------------------------------------------------ digits
def digit_8x8(text: str, font_file: Path, rng: np.random.Generator) -> Image.Image:
    """A digit made the way UCI optdigits was: a 32x32 bitmap fitted to the glyph's box, 4x4 ink counts."""
    big = Image.new("L", (192, 192), 0)
    ImageDraw.Draw(big).text(
        (96, 96), text, font=ImageFont.truetype(str(font_file), 96), fill=255, anchor="mm"
    )
    big = big.rotate(float(rng.uniform(-8, 8)), resample=Image.Resampling.BICUBIC)
    box = big.getbbox() or (0, 0, 192, 192)
    glyph = big.crop(box)
    scale = 32 / max(glyph.size)
    glyph = glyph.resize((max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale))))
    canvas = Image.new("L", (32, 32), 0)
    canvas.paste(glyph, ((32 - glyph.width) // 2, (32 - glyph.height) // 2))
    ink = np.asarray(canvas) > 127
    counts = ink.reshape(8, 4, 8, 4).sum(axis=(1, 3))  # 0..16 per cell, like the 8x8 set
    return Image.fromarray(np.round(counts * (255 / 16)).astype(np.uint8))


def build_digits(folder: Path, scale: float) -> dict[str, object]:
    try:
        import sklearn
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise SetError("scikit-learn is missing — run: pip install scikit-learn") from exc
    versions, groups = font_groups()
    rng = np.random.default_rng(SEED + 2)
    sizes = sized(DIGIT_SIZES, scale)
    digits = load_digits()
    for label in range(10):
        target = folder / "train" / str(label)
        target.mkdir(parents=True, exist_ok=True)
        for i in sorted(rng.permutation(np.flatnonzero(digits.target == label))[: sizes["train"]]):
            pixels = np.round(digits.images[i] * (255 / 16)).astype(np.uint8)
            Image.fromarray(pixels).save(target / f"{int(i):04d}.png")
    fonts = groups["train"] + groups["test"]
    for label in range(10):
        target = folder / "test" / str(label)
        target.mkdir(parents=True, exist_ok=True)
        for k in range(sizes["test"]):
            font = fonts[int(rng.integers(len(fonts)))]
            digit_8x8(str(label), font, rng).save(target / f"{k:04d}_{font.stem}.png")
    return {
        "packages": {"pypi": {"scikit-learn": sklearn.__version__}, "debian": versions},
        "source": "train: sklearn load_digits (UCI optdigits, 8x8, 17 levels); test: font digits",
        "per_class": sizes,
        "shift": "handwritten train digits; test: font digits fitted to 32x32, 4x4 ink counts (0-16)",
    }


# ------------------------------------------------------------------------------------ cache
BUILDERS: dict[str, Callable[[Path, float], dict[str, object]]] = {
    "fashion": lambda f, scale: build_fashion(f, scale, shifted=False),
    "fonts": build_fonts,
    "scanner": lambda f, scale: build_fashion(f, scale, shifted=True),
    "digits": build_digits,
}
DEFAULT_SETS = ("fashion", "fonts", "scanner", "digits")


def build(name: str, root: str | Path, *, scale: float = 1.0) -> Path:
    """The folder of benchmark set ``name`` under ``root``, built when missing or out of date.

    ``scale``: a fraction of the images per class (at least 4 per class and split), in
    ``<name>-x<scale>``; ``QUICK_SCALE`` (0.05) makes smoke-run sets whose figures mean nothing.
    """
    if name not in BUILDERS:
        raise SetError(f"unknown benchmark set {name!r} — choose from {', '.join(BUILDERS)}")
    if not 0 < scale <= 1:
        raise SetError(f"scale {scale} is not in (0, 1] — give a fraction such as 0.25")
    folder = Path(root) / (name if scale == 1 else f"{name}-x{scale:g}")
    record = folder / "provenance.json"
    if record.is_file():
        try:
            if json.loads(record.read_text()).get("version") == VERSION:
                return folder
        except (OSError, ValueError):
            pass
    if folder.exists():
        shutil.rmtree(folder)  # our own cache folder, incomplete or from another builder version
    folder.mkdir(parents=True)
    info = BUILDERS[name](folder, scale)
    counts = {s: sum(1 for p in (folder / s).rglob("*") if p.is_file()) for s in ("train", "test")}
    classes = sorted(p.name for p in (folder / "train").iterdir())
    meta = {
        "name": name,
        "version": VERSION,
        "seed": SEED,
        "scale": scale,
        "classes": classes,
        "images": counts,
        **info,
    }
    record.write_text(json.dumps(meta, indent=2) + "\n")
    return folder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", default=",".join(DEFAULT_SETS), help="comma-separated set names")
    parser.add_argument("--work", default="bench-sets", help="folder to build the sets in (a cache)")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the images (smaller sets)")
    parser.add_argument(
        "--quick", action="store_true", help=f"tiny sets for smoke runs (--scale {QUICK_SCALE})"
    )
    args = parser.parse_args(argv)
    for name in [s.strip() for s in args.sets.split(",") if s.strip()]:
        folder = build(name, args.work, scale=QUICK_SCALE if args.quick else args.scale)
        meta = json.loads((folder / "provenance.json").read_text())
        print(f"{name:8s} {folder}  train {meta['images']['train']}  test {meta['images']['test']}")


if __name__ == "__main__":
    try:
        main()
    except SetError as exc:
        sys.exit(f"sets.py: {exc.code}")
