"""Export a folder that runs as a Hugging Face Space (Gradio) as it is.

The Space is standalone: its ``app.py`` loads ``model/`` with transformers'
``pipeline("image-classification")`` and needs neither sortsight nor the network. Why not
sortsight as a requirement? The model folder is a plain transformers folder by contract (the
run's ``model/`` loads in ``pipeline`` unchanged, with the same top-1 as sortsight's predict),
so the Space installs only the packages every image Space already uses, starts faster, and keeps
working whatever sortsight's version. The folder holds::

    app.py            the Gradio demo (image in, top-k labels out, examples)
    requirements.txt  exact versions of torch, torchvision, timm, transformers, Pillow tested here
    README.md         Spaces YAML header (sdk: gradio, sdk_version, ...) + the model card
    model/            the model files (config.json, model.safetensors, preprocessor config, card)
    examples/         a few images (re-encoded as JPEG: EXIF, and so GPS, is dropped)
    .gitattributes    weight files and images stored with Git LFS

Also here: helpers shared with :mod:`sortsight.demo` to read the model card and pick examples.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from sortsight.config import DEMO_TOP_K
from sortsight.errors import ExportError, ImageError
from sortsight.fileops import staged_folder
from sortsight.runs import RunFolder

__all__ = [
    "SPACE_COLORS",
    "CardText",
    "export_space",
    "find_examples",
    "read_card",
    "resolve_model_dir",
]

#: Colours the Hub accepts for ``colorFrom`` / ``colorTo``.
SPACE_COLORS = ("red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray")

# Packages the standalone app imports (gradio itself comes from ``sdk_version``).
_REQUIREMENTS = ("torch", "torchvision", "timm", "transformers", "safetensors", "Pillow")
_LFS_PATTERNS = (
    "*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.onnx", "*.h5", "*.msgpack", "*.npz",
    "*.jpg", "*.jpeg", "*.png", "*.webp", "*.gif", "*.bmp", "*.tif", "*.tiff",
)  # fmt: skip
_VALIDATION_KEYS = ("validation", "valid", "val", "test")
_EXAMPLE_EDGE = 512  # examples are shrunk to at most this many pixels on the longer side
_SKIP_SECTIONS = {"use", "usage", "how to use", "training parameters"}  # card sections left off the demo


@dataclass(frozen=True)
class CardText:
    """Texts for a demo page, read from a model card (``model/README.md``)."""

    title: str
    description: str
    article: str
    license: str | None
    labels: tuple[str, ...]


def resolve_model_dir(path: str | Path) -> tuple[Path, Path | None]:
    """Return ``(model_dir, run_dir)`` for a model folder or a run folder (``run_dir`` may be None).

    Raises:
        ExportError: ``path`` holds no model (no ``config.json`` there or in ``model/``).
    """
    run = RunFolder.resolve(path, error=ExportError)
    return run.model_dir, run.run_dir


def read_card(model_dir: str | Path) -> CardText:
    """Title, description, article, licence and labels from the model folder's card and config.

    The title is the card's first ``#`` heading (else the folder name), the description its
    first paragraph, the article the rest of the card but for its "Use" and "Training parameters"
    sections; a missing card gives a short default text.
    """
    model_dir = Path(model_dir).resolve()
    labels = _labels(model_dir)
    meta: dict[str, Any] = {}
    body = ""
    card = model_dir / "README.md"
    if card.is_file():
        meta, body = _split_front_matter(card.read_text(encoding="utf-8", errors="replace"))
    blocks = [b.strip() for b in re.split(r"\n\s*\n", body) if b.strip()]
    title = ""
    if blocks and blocks[0].startswith("# "):
        title = blocks.pop(0).splitlines()[0][2:].strip()
    description = ""
    if blocks and not blocks[0].startswith("#") and not blocks[0].startswith("|"):
        description = blocks.pop(0)
    if not title:
        name = model_dir.parent.name if model_dir.name == "model" else model_dir.name
        title = f"{name} image classifier"
    if not description:
        shown = ", ".join(labels[:12]) + (", …" if len(labels) > 12 else "")
        description = f"Upload an image to see which of {len(labels)} classes it belongs to: {shown}."
    license_ = meta.get("license")
    return CardText(
        title=title,
        description=description,
        article=_demo_sections("\n\n".join(blocks)),
        license=str(license_) if license_ else None,
        labels=tuple(labels),
    )


def find_examples(
    model_dir: str | Path,
    examples: str | Path | Sequence[str | Path] | None = None,
    *,
    limit: int = 8,
) -> list[Path]:
    """Pick example images: from ``examples`` (a folder or a list of files) or the run's validation split.

    Validation images are taken round-robin over the classes so every class shows up early.
    Missing files are left out; no run and no ``examples`` gives an empty list.

    Raises:
        ExportError: ``examples`` is a folder with no images, or a path that does not exist.
    """
    if examples is not None:
        from sortsight.images import iter_image_files

        if isinstance(examples, (str, os.PathLike)):
            folder = Path(examples)
            if not folder.exists():
                raise ExportError(f"examples folder {folder} does not exist: give a folder of images")
            found = [folder] if folder.is_file() else list(iter_image_files(folder))
            if not found:
                raise ExportError(f"no images found in {folder}: give a folder of example images")
            return found[:limit]
        return [Path(p) for p in examples if Path(p).is_file()][:limit]
    _, run_dir = resolve_model_dir(model_dir)
    if run_dir is None:
        return []
    by_label = _validation_items(run_dir)
    picked: list[Path] = []
    queues = [list(paths) for _, paths in sorted(by_label.items())]
    while len(picked) < limit and any(queues):
        for queue in queues:
            if queue and len(picked) < limit:
                picked.append(queue.pop(0))
    return picked


def export_space(
    model_dir: str | Path,
    out_dir: str | Path,
    *,
    examples: str | Path | Sequence[str | Path] | None = None,
    title: str | None = None,
    description: str | None = None,
    article: str | None = None,
    emoji: str = "📚",
    color_from: str = "blue",
    color_to: str = "indigo",
    license: str | None = None,
    top_k: int = DEMO_TOP_K,
    max_examples: int = 8,
) -> Path:
    """Write a Hugging Face Space folder for the model in ``model_dir`` (a model or run folder).

    Args:
        model_dir: a run folder (``runs/<name>``) or a model folder.
        out_dir: the new Space folder; it must not exist or be empty (nothing is overwritten).
        examples: a folder (or list) of example images; default: the run's validation images.
        title, description, article: page texts; default: from the model card.
        emoji, color_from, color_to: the Space's card on the Hub.
        license: the Space's licence id; default: the card's ``license``, else ``other``.
        top_k: how many labels the demo shows.
        max_examples: at most this many example images.

    Returns:
        ``out_dir``. Run it with ``cd out_dir && python app.py``.

    Raises:
        ExportError: no model, a non-empty ``out_dir``, bad colours or ``top_k``.

    Example:
        >>> export_space("runs/demo", "space")  # doctest: +SKIP
    """
    model_path, _ = resolve_model_dir(model_dir)
    out = Path(out_dir)
    taken = f"{out} already exists and is not empty: choose a new folder for the Space"
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(taken)
    if out.resolve() == Path.cwd().resolve():  # through a symlink too
        raise ExportError(
            f"'{out_dir}' is the folder you are in, which the Space would replace: give a new folder "
            "(e.g. space/)"
        )
    for name, colour in (("color_from", color_from), ("color_to", color_to)):
        if colour not in SPACE_COLORS:
            choices = ", ".join(SPACE_COLORS)
            raise ExportError(f"{name} {colour!r} is not a Space colour: use one of {choices}")
    if top_k < 1:
        raise ExportError(f"top_k must be at least 1, got {top_k}")
    card = read_card(model_path)
    texts = {
        "title": title or card.title,
        "description": description if description is not None else card.description,
        "article": article if article is not None else card.article,
    }
    picked = find_examples(model_dir, examples, limit=max_examples)

    try:
        with staged_folder(out, existing="refuse") as staging:
            _copy_model(model_path, staging / "model")
            names = _write_examples(picked, staging / "examples")
            remote = (staging / "model" / "side_by_side.py").is_file()
            from sortsight.multilabel import model_task

            task, cuts = model_task(staging / "model")
            thresholds = (
                dict(zip(_labels(staging / "model"), cuts, strict=True))
                if task == "multi_label" and cuts
                else None
            )
            app = _app_source(
                texts, top_k=top_k, has_examples=bool(names), remote=remote, thresholds=thresholds
            )
            (staging / "app.py").write_text(app)
            (staging / "requirements.txt").write_text(_requirements())
            (staging / ".gitattributes").write_text(
                "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in _LFS_PATTERNS)
            )
            (staging / "README.md").write_text(
                _readme(
                    texts["title"], card, emoji, color_from, color_to, license or card.license or "other"
                ),
                encoding="utf-8",
            )
    except FileExistsError:  # filled by something else meanwhile: left as it is
        raise ExportError(taken) from None
    return out


# --- pieces ---------------------------------------------------------------------------------


def _labels(model_dir: Path) -> list[str]:
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        where = model_dir / "config.json"
        raise ExportError(f"cannot read {where} ({exc}): export the model again") from None
    from sortsight.model_folder import config_labels

    return config_labels(config)


def _demo_sections(text: str) -> str:
    """The card's sections worth showing under a demo (how-to-call and parameter lists left out)."""
    parts = re.split(r"(?m)^(?=## )", text)
    kept = [p for p in parts if p.strip() and p.splitlines()[0][3:].strip().lower() not in _SKIP_SECTIONS]
    return "".join(kept).strip()


def _split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    match = re.match(r"\A---\s*\n(.*?)\n---\s*\n", text, flags=re.S)
    if not match:
        return {}, text
    import yaml

    try:
        meta = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError:
        meta = {}
    return (meta if isinstance(meta, dict) else {}), text[match.end() :]


def _validation_items(run_dir: Path) -> dict[str, list[Path]]:
    """Validation (else test) images of a run, grouped by folder name (the label, for class folders).

    ``sortsight.json`` keeps the split lists under ``data.splits`` as paths relative to the data
    folder (or to the labels file's folder); lists of ``{"path", "label"}`` objects work too.
    """
    info = RunFolder.at(run_dir).info()
    data: dict[str, Any] = info["data"] if isinstance(info.get("data"), dict) else {}
    splits = data.get("splits") or info.get("splits") or {}
    if not isinstance(splits, dict):
        return {}
    items: list[Any] = next((splits[k] for k in _VALIDATION_KEYS if splits.get(k)), [])
    roots = _data_roots(data.get("path"), run_dir)
    by_label: dict[str, list[Path]] = {}
    for item in items:
        raw, label = (item.get("path"), item.get("label")) if isinstance(item, dict) else (item, None)
        if not raw:
            continue
        rel = Path(str(raw))
        candidates = [rel] if rel.is_absolute() else [root / rel for root in roots]
        path = next((c for c in candidates if c.is_file()), None)
        if path is not None:
            by_label.setdefault(str(label if label is not None else path.parent.name), []).append(path)
    return by_label


def _data_roots(data_path: Any, run_dir: Path) -> list[Path]:
    """Folders the split lists may be relative to: the data folder, a labels file's folder, the run."""
    roots: list[Path] = []
    if data_path:
        given = Path(str(data_path)).expanduser()
        for base in (given, run_dir.parent / given, run_dir.parent.parent / given):
            roots.append(base.parent if base.is_file() else base)
    roots.append(run_dir)
    return roots


def _copy_model(src: Path, dest: Path) -> None:
    dest.mkdir(parents=True)
    for path in sorted(src.iterdir()):
        # The Space needs the transformers files; checkpoints and ONNX copies only add weight.
        if path.is_file() and not path.name.startswith(".") and path.suffix not in {".onnx", ".pth", ".pt"}:
            shutil.copy2(path, dest / path.name)


def _write_examples(paths: Sequence[Path], dest: Path) -> list[str]:
    """Re-encode examples as small JPEGs (EXIF, including GPS, is dropped); unreadable ones are left out."""
    from sortsight.images import open_image

    dest.mkdir()
    names: list[str] = []
    for i, path in enumerate(paths):
        try:
            image = open_image(path)
        except ImageError:
            continue
        image.thumbnail((_EXAMPLE_EDGE, _EXAMPLE_EDGE))
        stem = re.sub(r"[^A-Za-z0-9_-]+", "_", path.stem)[:40] or "image"
        name = f"{i + 1:02d}_{stem}.jpg"
        image.save(dest / name, "JPEG", quality=90)
        names.append(name)
    return names


def _version(package: str) -> str | None:
    try:
        return metadata.version(package).split("+")[0]
    except metadata.PackageNotFoundError:
        return None


def _requirements() -> str:
    lines = ["# Versions the sortsight export was tested with; gradio comes from sdk_version in README.md."]
    for package in _REQUIREMENTS:
        version = _version(package)
        lines.append(f"{package}=={version}" if version else package)
    return "\n".join(lines) + "\n"


def _readme(title: str, card: CardText, emoji: str, color_from: str, color_to: str, license_: str) -> str:
    import yaml

    header = {
        "title": title[:60],
        "emoji": emoji,
        "colorFrom": color_from,
        "colorTo": color_to,
        "sdk": "gradio",
        "sdk_version": _version("gradio") or "5.0.0",
        "app_file": "app.py",
        "pinned": False,
        "license": license_,
        "tags": ["image-classification", "sortsight"],
    }
    front = yaml.safe_dump(header, sort_keys=False, allow_unicode=True).strip()
    labels = ", ".join(f"`{label}`" for label in card.labels)
    return (
        f"---\n{front}\n---\n\n# {title}\n\n{card.description}\n\n"
        f"Labels: {labels}.\n\n"
        "This Space runs `app.py`, a Gradio demo of the image classifier in `model/` "
        "(loaded with transformers' `pipeline`). Run it locally with\n\n"
        f"```\npip install -r requirements.txt gradio=={header['sdk_version']}\npython app.py\n```\n\n"
        "The model card is in [`model/README.md`](model/README.md). Made with "
        "[sortsight](https://github.com/sortsight/sortsight).\n"
    )


_APP_TEMPLATE = '''\
"""Gradio demo of an image classifier exported by sortsight; runs as a Hugging Face Space as it is.

Standalone: it needs gradio and transformers (requirements.txt), not sortsight, and no network
(analytics off; example images are copied into Gradio's local cache).
Locally: `python app.py`, then open http://127.0.0.1:7860.
"""

from pathlib import Path

import gradio as gr
from PIL import ImageOps
from transformers import pipeline

HERE = Path(__file__).resolve().parent
TITLE = {title}
DESCRIPTION = {description}
ARTICLE = {article}
TOP_K = {top_k}
EXAMPLES = {examples}
# a tagger (several tags per image): each tag's own decision threshold; None for a classifier
THRESHOLDS = {thresholds}

classifier = pipeline("image-classification", model=str(HERE / "model"), device="cpu"{remote})


def classify(image):
    """Top-k labels with probabilities for one image, as gr.Label wants them; for a tagger every
    tag with its sigmoid score, marked ✓ when over its threshold."""
    if image is None:
        return {{}}
    image = ImageOps.exif_transpose(image).convert("RGB")
    if THRESHOLDS is None:
        return {{r["label"]: float(r["score"]) for r in classifier(image, top_k=TOP_K)}}
    shown = {{}}
    for r in classifier(image, top_k=None, function_to_apply="sigmoid"):
        cut = THRESHOLDS[r["label"]]
        mark = "✓" if r["score"] >= cut else "✗"
        shown[f"{{r['label']}} {{mark}} (threshold {{cut:.2f}})"] = float(r["score"])
    return shown


demo = gr.Interface(
    fn=classify,
    inputs=gr.Image(type="pil", label="Image", height=320),
    outputs=gr.Label(num_top_classes=TOP_K, label="Prediction"),
    examples=EXAMPLES or None,
    cache_examples=False,
    title=TITLE,
    description=DESCRIPTION,
    article=ARTICLE,
    flagging_mode="never",
    analytics_enabled=False,
    api_name="predict",
)

if __name__ == "__main__":
    # GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (set by Spaces) choose the address; 127.0.0.1:7860 otherwise.
    demo.launch()
'''


def _app_source(
    texts: dict[str, str],
    *,
    top_k: int,
    has_examples: bool,
    remote: bool = False,
    thresholds: dict[str, float] | None = None,
) -> str:
    """``remote``: the model is backbones side by side, defined in the folder's ``side_by_side.py``;
    ``thresholds``: a tagger's tag → decision threshold (None for a single-label model)."""
    examples = '[[str(p)] for p in sorted((HERE / "examples").glob("*.jpg"))]' if has_examples else "[]"
    return _APP_TEMPLATE.format(
        title=repr(texts["title"]),
        description=repr(texts["description"]),
        article=repr(texts["article"]),
        top_k=int(top_k),
        examples=examples,
        thresholds=repr(thresholds),
        remote=", trust_remote_code=True" if remote else "",  # the network: model/side_by_side.py
    )
