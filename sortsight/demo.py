"""The Gradio demo: an image in, the top-k labels with probabilities out.

``build_demo(model_dir)`` returns the :class:`gradio.Blocks` (an ``Interface``); ``sortsight app
MODEL`` launches it on 127.0.0.1. Gradio is an optional dependency (``pip install
'sortsight[app]'``), imported only here and only when a demo is built; it is not re-exported from
``sortsight`` so ``import sortsight`` stays light.

Predictions go through :class:`sortsight.predict.Classifier`, so the demo gives the same answers
as ``sortsight predict``. Nothing here reaches the network: analytics are off, examples are
served from Gradio's local cache, and the default theme's fonts ship with Gradio.

    >>> demo = build_demo("runs/covers")  # doctest: +SKIP
    >>> demo.launch()  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sortsight.config import DemoConfig
from sortsight.errors import ImageError, SortsightError
from sortsight.space import CardText, find_examples, read_card, resolve_model_dir

__all__ = ["build_demo", "demo_texts", "import_gradio", "launch_demo"]

log = logging.getLogger(__name__)

_EXAMPLE_EDGE = 512


def import_gradio() -> Any:
    """Import gradio, or raise a :class:`SortsightError` saying how to install it."""
    try:
        import gradio
    except ImportError:
        raise SortsightError(
            "the demo app needs gradio, which is not installed: pip install 'sortsight[app]'"
        ) from None
    return gradio


def build_demo(
    model_dir: str | Path,
    *,
    examples: str | Path | Sequence[str | Path] | None = None,
    title: str | None = DemoConfig.title,
    description: str | None = DemoConfig.description,
    article: str | None = DemoConfig.article,
    top_k: int = DemoConfig.top_k,
    max_examples: int = 8,
    engine: str = DemoConfig.engine,
) -> Any:
    """Build the Gradio demo for a run folder or a model folder.

    Args:
        model_dir: a run folder (``runs/<name>``) or a model folder.
        examples: a folder (or list) of example images; default: the run's validation images.
        title, description, article: page texts (Markdown); default: from the model card.
        top_k: how many labels to show.
        max_examples: at most this many examples.
        engine: the inference engine (see :meth:`sortsight.predict.Classifier.load`).

    Returns:
        A ``gradio.Blocks`` (a ``gradio.Interface``) ready to ``launch()``; its API endpoint is
        ``/predict``.

    Raises:
        SortsightError: gradio missing, no model in ``model_dir``, bad ``examples``; a
            ``ConfigError`` for a setting :class:`~sortsight.config.DemoConfig` refuses.
    """
    settings = DemoConfig(title=title, description=description, article=article, top_k=top_k, engine=engine)
    top_k = settings.top_k
    gr = import_gradio()
    model_path, run_dir = resolve_model_dir(model_dir)
    default_title, default_description, default_article = demo_texts(read_card(model_path), run_dir)
    example_images = _load_examples(find_examples(model_dir, examples, limit=max_examples))
    from sortsight.predict import Classifier

    classifier = Classifier.load(model_path, engine=engine)
    if classifier.task == "multi_label":
        top_k = len(classifier.labels)  # a tagger shows every tag

    def classify(image: Any) -> dict[str, float]:
        """Top-k labels with probabilities for one uploaded image, as ``gr.Label`` wants them."""
        if image is None:
            return {}
        result = classifier.predict([image], top_k=top_k)
        first = result[0] if result and not isinstance(result[0], dict) else result
        if classifier.task == "multi_label":  # each tag with its score and its own threshold
            cuts = classifier.thresholds or [0.5] * len(classifier.labels)
            cut = dict(zip(classifier.labels, cuts, strict=True))
            shown = {}
            for r in first:
                mark = "✓" if r["score"] >= cut[r["label"]] else "✗"
                shown[f"{r['label']} {mark} (threshold {cut[r['label']]:.2f})"] = float(r["score"])
            return shown
        return {str(r["label"]): float(r["score"]) for r in first}

    return gr.Interface(
        fn=classify,
        inputs=gr.Image(type="pil", label="Image", height=320),
        outputs=gr.Label(num_top_classes=top_k, label="Prediction"),
        examples=[[im] for im in example_images] or None,
        cache_examples=False,
        title=title or default_title,
        description=description if description is not None else default_description,
        article=article if article is not None else default_article,
        flagging_mode="never",
        analytics_enabled=False,
        api_name="predict",
    )


def demo_texts(card: CardText, run_dir: Path | None) -> tuple[str, str, str]:
    """The demo page's title, description and article for a visitor.

    From the model card, except where a card sortsight generated says it for programmers: the
    title names the collection (not "… fine-tuned", which the kept model may not be), the
    description says what to do and how often the model was right on the images held out from
    training (``evaluation.json`` of the run: test accuracy when there was a test split), and the
    article leaves out the dataset fingerprint.
    """
    from sortsight.report import report_title

    title = card.title
    if title.endswith(" fine-tuned with sortsight") and run_dir is not None:
        title = f"{report_title(str(run_dir))} image classifier"
    elif title.endswith(" fine-tuned with sortsight"):
        title = "Image classifier"
    description = card.description
    if description.startswith("An image classifier that sorts images into"):
        shown = ", ".join(card.labels[:12]) + (", …" if len(card.labels) > 12 else "")
        description = f"Upload an image to see which of these {len(card.labels)} labels it gets: {shown}."
    article = re.sub(r" \(dataset fingerprint `[^`]*`\)", "", card.article)
    score = _score_line(run_dir)
    if score:
        description += "\n\n" + score
        article = re.sub(r"(?ms)^## Validation results\n.*?(?=^## |\Z)", "", article).strip()
    return title, description, article


def _score_line(run_dir: Path | None) -> str:
    """ "Right on 99.3% of 150 test images held out from training." from the run's evaluation."""
    if run_dir is None:
        return ""
    from sortsight.runs import RunFolder

    evaluation = RunFolder.at(run_dir).evaluation() or {}
    try:
        accuracy, count = float(evaluation["metrics"]["accuracy"]), int(evaluation["metrics"]["n_images"])
    except (TypeError, ValueError, KeyError):
        return ""
    test = evaluation.get("split") == "test"
    images = "test images held out from training" if test else "validation images"
    return f"Right on {100 * accuracy:.1f}% of {count} {images}."


def launch_demo(
    demo: Any,
    *,
    host: str = DemoConfig.host,
    port: int | None = DemoConfig.port,
    share: bool = DemoConfig.share,
    block: bool = True,
    on_ready: Callable[[str, str | None], None] | None = None,
) -> str:
    """Serve ``demo`` on ``host:port`` (127.0.0.1 and the first free port from 7860 by default).

    Args:
        demo: from :func:`build_demo`.
        host: the address to listen on; ``0.0.0.0`` lets other machines in.
        port: the port; ``None`` takes 7860 or the next free one.
        share: also open a public gradio.live link (needs internet).
        block: wait until Ctrl+C (``False`` returns at once, e.g. in tests and notebooks).
        on_ready: called with the local and the public (``share``) address once serving, before
            blocking; Gradio's own start-up lines are silenced (they name ``launch()`` arguments).

    Returns:
        The local URL.

    Raises:
        SortsightError: the port is taken or the address cannot be used; a ``ConfigError`` for
            a setting :class:`~sortsight.config.DemoConfig` refuses.
    """
    settings = DemoConfig(host=host, port=port, share=share)
    host, port, share = settings.host, settings.port, settings.share
    try:
        _, url, share_url = demo.launch(server_name=host, server_port=port, share=share, show_error=True,
                                        prevent_thread_lock=True, quiet=True)
    except OSError as exc:
        where = f"{host}:{port}" if port else host
        raise SortsightError(
            f"cannot start the demo on {where} ({str(exc).split('.')[0]}): choose another --port or --host"
        ) from None
    local = str(url or demo.local_url or "")
    if on_ready is not None:
        on_ready(local, str(share_url) if share_url else None)
    if block:
        demo.block_thread()  # until Ctrl+C
    return local


def _load_examples(paths: Sequence[Path]) -> list[Any]:
    """Example images, decoded like any sortsight image (EXIF turned, any format) and shrunk."""
    from sortsight.images import open_image

    images = []
    for path in paths:
        try:
            image = open_image(path)
        except ImageError as exc:
            log.warning("example %s left out: %s", path, exc)
            continue
        image.thumbnail((_EXAMPLE_EDGE, _EXAMPLE_EDGE))
        images.append(image)
    return images
