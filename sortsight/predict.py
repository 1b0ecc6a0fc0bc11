"""Predict new images: :class:`Classifier` for a few images in Python, :func:`predict_paths` for folders.

``Classifier.load(dir).predict(images)`` answers in the shape of transformers'
``pipeline("image-classification")``: for one image a list of ``{"label", "score"}`` (best
first), for a list of images a list of such lists.

:func:`predict_paths` streams any number of files through the model in batches — images are
decoded (with PIL's JPEG draft mode) in DataLoader worker processes while the engine computes —
and appends each batch to ``predictions.csv`` (``path,label,score,top_k,status,model,error``)
or JSON Lines, flushed to disk. Running it again skips the paths already written, so an
interrupted job (even ``kill -9``) finishes where it stopped.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sortsight._predict_io import collect_paths
from sortsight.config import DEFAULT_BATCH_SIZE, DEFAULT_TOP_K, PredictConfig
from sortsight.engines import Engine, build_engine, read_onnx_metadata
from sortsight.errors import DataError, ImageError, ModelError, PredictError
from sortsight.fileops import ensure_output_dir, ensure_output_file
from sortsight.geometry import DataConfig, eval_transform
from sortsight.images import open_image
from sortsight.predictions import PredictionWriter, PredictSummary, output_path
from sortsight.progress import ProgressCallback, Ticker
from sortsight.runs import RunFolder
from sortsight.tagmetrics import cuts_of, sigmoid, tag_fields

logger = logging.getLogger(__name__)

__all__ = [
    "Classifier",
    "PredictSummary",
    "collect_paths",
    "default_workers",
    "iter_probabilities",
    "predict_paths",
    "run_predict",
    "softmax",
    "top_k_of",
]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``(N, C)`` logits, computed stably in float64."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]


def top_k_of(probs: np.ndarray, labels: Sequence[str], k: int) -> list[dict[str, Any]]:
    """The ``k`` best ``{"label", "score"}`` of one probability row, best first."""
    k = max(1, min(int(k), len(labels)))
    order = np.argsort(-probs, kind="stable")[:k]
    return [{"label": labels[i], "score": float(probs[i])} for i in order]


@dataclass
class Classifier:
    """A trained model ready to predict: engine + labels + preprocessing.

    Example:
        >>> clf = Classifier.load("runs/covers")  # doctest: +SKIP
        >>> clf.predict("scan_001.jpg", top_k=2)  # doctest: +SKIP
        [{'label': 'useful', 'score': 0.93}, {'label': 'not useful', 'score': 0.07}]
    """

    engine: Engine
    labels: list[str]
    data_config: DataConfig
    name: str
    source: str
    batch_size: int = DEFAULT_BATCH_SIZE
    _transform: Any = field(default=None, repr=False)
    task: str = "single_label"  # "multi_label": sigmoid scores, a tag per score over its threshold
    thresholds: list[float] | None = None  # multi-label: one per label

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        engine: str = "auto",
        batch_size: int = DEFAULT_BATCH_SIZE,
        threads: int | None = None,
        tta: bool = False,
        images: int | None = None,
    ) -> Classifier:
        """Load a run folder, an HF image-classification model folder, or an exported ``.onnx`` file.

        Args:
            path: ``runs/NAME``, its ``model/`` folder, any HF folder (e.g. saved by a
                transformers ``Trainer``), or a ``.onnx`` file made by ``sortsight export --onnx``.
            engine: ``"auto"`` (fastest available: onnx → jit → eager), ``"onnx"``, ``"jit"`` or ``"eager"``.
            batch_size: images per forward pass.
            threads: compute threads (default: torch's setting, one per core).
            tta: flip test-time augmentation (average with the mirror image; twice the compute).
            images: how many images the classifier will see, when known: with ``"auto"``, too few
                for a first ONNX export to pay run eager (:func:`sortsight.engines.build_engine`).

        Raises:
            ModelError: the folder or file cannot be loaded, or the engine cannot run it.
        """
        p = Path(path).expanduser()
        try:
            clf = cls._load(p, str(path), engine, batch_size, threads, images)
        except PermissionError as exc:
            raise ModelError(
                f"Cannot read the model at '{path}' ({exc.filename or p}: permission denied); "
                "check the files' permissions."
            ) from exc
        if tta:
            from sortsight.engines import FlipTTA

            clf.engine = FlipTTA(clf.engine)
        return clf

    @classmethod
    def _load(
        cls, p: Path, path: str, engine: str, batch_size: int, threads: int | None, images: int | None
    ) -> Classifier:
        if p.suffix.lower() == ".onnx":
            from sortsight.engines import OnnxEngine

            if engine not in ("auto", "onnx"):
                raise PredictError(
                    f"'{p}' is an ONNX file; it runs only with the onnx engine. "
                    f"Give the model folder to use --engine {engine}."
                )
            labels, data_config, name, meta = read_onnx_metadata(p)
            clf = cls(OnnxEngine(p, threads=threads), labels, data_config, name, str(path), batch_size)
            if meta.get("task") == "multi_label":
                return clf._with_task("multi_label", [float(t) for t in json.loads(meta["thresholds"])])
            return clf
        from sortsight.engines import OnnxEngine, find_current_onnx, wants_optimised
        from sortsight.model_folder import is_model_folder, load_model_folder
        from sortsight.multilabel import model_task

        folder = RunFolder.resolve(p).model_dir
        if engine in ("auto", "onnx") and is_model_folder(folder):
            # exported before: no need to load the PyTorch model (a big job waits for the optimised graph)
            current = find_current_onnx(folder, optimised=wants_optimised(images))
            if current is not None:
                labels, data_config, name, _ = read_onnx_metadata(current)
                clf = cls(
                    OnnxEngine(current, threads=threads), labels, data_config, name, str(path), batch_size
                )
                return clf._with_task(*model_task(folder))
        loaded = load_model_folder(folder)
        runner = build_engine(loaded, engine, threads=threads, images=images)
        clf = cls(runner, list(loaded.labels), loaded.data_config, loaded.name, str(path), batch_size)
        return clf._with_task(*model_task(loaded.path))

    def _with_task(self, task: str, thresholds: list[float] | None) -> Classifier:
        self.task, self.thresholds = task, thresholds
        return self

    def activate(self, logits: np.ndarray) -> np.ndarray:
        """Scores from logits: softmax over labels, or one sigmoid per tag for a multi-label model."""
        return sigmoid(logits) if self.task == "multi_label" else softmax(logits)

    @property
    def transform(self) -> Any:
        """PIL image → normalised ``(3, H, W)`` tensor, as the model was evaluated."""
        if self._transform is None:
            self._transform = eval_transform(self.data_config)
        return self._transform

    @property
    def model_id(self) -> str:
        """What the ``model`` column of predictions.csv records: the model's absolute path."""
        return os.path.abspath(self.source)

    @property
    def draft_size(self) -> tuple[int, int]:
        """The smallest JPEG decode size that still feeds the resize without upscaling."""
        from sortsight.geometry import draft_size

        return draft_size(self.data_config)

    def logits(self, pixels: Any) -> np.ndarray:
        """Raw logits for a preprocessed ``(B, 3, H, W)`` batch."""
        return self.engine(pixels)

    def _to_pil(self, image: Any) -> Any:
        if isinstance(image, np.ndarray):
            from PIL import Image

            image = Image.fromarray(image)
        return open_image(image, draft=self.draft_size)

    def predict_proba(self, images: Sequence[Any]) -> np.ndarray:
        """Class probabilities ``(N, num_labels)`` for images (paths, bytes, PIL images or arrays).

        Raises:
            ImageError: an image cannot be opened.
        """
        import torch

        out = []
        for start in range(0, len(images), self.batch_size):
            chunk = [self.transform(self._to_pil(im)) for im in images[start : start + self.batch_size]]
            out.append(self.activate(self.engine(torch.stack(chunk))))  # (B, 3, H, W) -> (B, C)
        if not out:
            return np.zeros((0, len(self.labels)))
        return np.concatenate(out)

    def predict(self, images: Any, top_k: int = DEFAULT_TOP_K) -> Any:
        """Top-k labels with probabilities, shaped like transformers' image-classification pipeline.

        Args:
            images: one image (path, bytes, PIL image, HxWx3 uint8 array) or a list of them.
            top_k: how many labels per image (at most the number of labels).

        Returns:
            For one image ``[{"label": str, "score": float}, ...]`` best first; for a list, a list of those.

        Raises:
            ImageError: an image cannot be opened.
        """
        single = not isinstance(images, (list, tuple))
        batch = [images] if single else list(images)
        probs = self.predict_proba(batch)
        results = [top_k_of(row, self.labels, top_k) for row in probs]
        return results[0] if single else results


# --------------------------------------------------------------------------- streaming predict


class _Decode:
    """Dataset: index → (index, (3, H, W) tensor or None, failure reason or "")."""

    def __init__(self, paths: Sequence[Path], transform: Any, draft: tuple[int, int]) -> None:
        self.paths, self.transform, self.draft = paths, transform, draft

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, Any, str]:
        try:
            return i, self.transform(open_image(self.paths[i], draft=self.draft)), ""
        except ImageError as exc:
            return i, None, exc.reason
        except Exception as exc:  # a transform failing on a strange image must not stop the job
            return i, None, type(exc).__name__


def _collate(items: list[tuple[int, Any, str]]) -> tuple[list[int], Any, list[tuple[int, str]]]:
    import torch

    good = [(i, t) for i, t, _ in items if t is not None]
    bad = [(i, reason) for i, t, reason in items if t is None]
    pixels = torch.stack([t for _, t in good]) if good else None  # (B, 3, H, W)
    return [i for i, _ in good], pixels, bad


def _worker_init(_: int) -> None:
    import torch

    torch.set_num_threads(1)  # decoding processes must not compete with the engine's threads


def default_workers() -> int:
    """Decoding processes for this machine: one per spare core, at least one, at most four."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores - 1))


def score_paths(
    classifier: Classifier,
    paths: Sequence[Path],
    *,
    what: str,
    progress: ProgressCallback | None = None,
    num_workers: int | None = None,
) -> tuple[np.ndarray, np.ndarray, list[dict[str, str]]]:
    """Every image of ``paths`` through the model, for an evaluation.

    Returns:
        ``(scores (N, C), kept, skipped)``: the model's outputs in the order of ``paths`` (zeros
        where unreadable), the indices of the images that were read, and ``{"path", "reason"}`` of
        the others.

    Raises:
        DataError: none of the images could be read (``what`` names the data in the message).
    """
    scores = np.zeros((len(paths), len(classifier.labels)))
    ok = np.zeros(len(paths), dtype=bool)
    skipped: list[dict[str, str]] = []
    ticker = Ticker(progress, "evaluate", len(paths))
    for indices, batch, bad in iter_probabilities(classifier, paths, num_workers=num_workers):
        if indices:
            scores[indices] = batch
            ok[indices] = True
        skipped += [{"path": str(paths[i]), "reason": reason} for i, reason in bad]
        ticker.advance(len(indices) + len(bad))
    if not ok.any():
        raise DataError(f"None of the {len(paths)} images could be read. Run 'sortsight check {what}'.")
    return scores, np.flatnonzero(ok), skipped


def iter_probabilities(
    classifier: Classifier, paths: Sequence[Path], *, num_workers: int | None = None
) -> Iterator[tuple[list[int], np.ndarray, list[tuple[int, str]]]]:
    """Stream ``paths`` through the model: per batch ``(indices, probabilities (B, C), [(index, reason)])``.

    Images are decoded in ``num_workers`` processes (default :func:`default_workers`) while the
    engine computes the previous batch; unreadable files come back as ``(index, reason)``.
    """
    from torch.utils.data import DataLoader

    workers = default_workers() if num_workers is None else num_workers
    workers = min(workers, max(1, len(paths) // classifier.batch_size))
    loader: Any = DataLoader(
        _Decode(paths, classifier.transform, classifier.draft_size),  # type: ignore[arg-type]
        batch_size=classifier.batch_size,
        num_workers=workers,
        collate_fn=_collate,
        worker_init_fn=_worker_init if workers else None,
        prefetch_factor=2 if workers else None,
    )
    for indices, pixels, bad in loader:
        probs = (
            classifier.activate(classifier.logits(pixels))
            if pixels is not None
            else np.zeros((0, len(classifier.labels)))
        )
        yield indices, probs, bad


def predict_paths(
    classifier: Classifier,
    paths: Sequence[Path],
    output: str | Path,
    *,
    top_k: int = DEFAULT_TOP_K,
    threshold: float = 0.0,
    num_workers: int | None = None,
    progress: ProgressCallback | None = None,
) -> PredictSummary:
    """Predict every path and append one row per image to ``output`` (CSV, or JSON Lines for ``.jsonl``).

    Rows already in ``output`` (same absolute path) are skipped, so rerunning an interrupted job
    finishes it. Each batch is flushed and fsynced before the next one. A prediction whose best
    score is below ``threshold`` gets status ``unsure``; a file that cannot be read gets
    ``unreadable`` (with the reason in ``error``) and the job goes on.

    Args:
        classifier: from :meth:`Classifier.load`.
        paths: absolute image paths (see :func:`collect_paths`).
        output: ``predictions.csv`` or ``predictions.jsonl``.
        top_k: labels kept per image in the ``top_k`` column.
        threshold: minimum best score for status ``ok``.
        num_workers: decoding processes (default: :func:`default_workers`; 0 decodes in this process).
        progress: receives ``ProgressEvent(phase="predict", ...)`` after each batch.

    Returns:
        A :class:`PredictSummary`.
    """
    tags = classifier.labels if classifier.task == "multi_label" else None
    cuts = cuts_of(classifier, threshold) if tags else None  # per-tag thresholds, once per job
    writer = PredictionWriter(output, model=classifier.model_id, tags=tags)
    todo = [p for p in paths if str(p) not in writer.done]
    summary = PredictSummary(writer.path, len(paths), len(paths) - len(todo), engine=classifier.engine.name)
    if not todo:
        return summary
    ticker = Ticker(progress, "predict", len(todo))
    start = time.perf_counter()
    with writer:
        for indices, probs, bad in iter_probabilities(classifier, todo, num_workers=num_workers):
            rows: list[tuple[int, dict[str, Any]]] = []
            for i, prob in zip(indices, probs, strict=True):
                best = top_k_of(prob, classifier.labels, top_k)
                row = {
                    "label": best[0]["label"],
                    "score": round(best[0]["score"], 6),
                    "top_k": [{**b, "score": round(b["score"], 6)} for b in best],
                    "status": "ok" if best[0]["score"] >= threshold else "unsure",
                    "error": "",
                }
                if cuts is not None:  # tags over their thresholds; none: unsure
                    row.update(tag_fields(prob, classifier.labels, cuts))
                rows.append((i, row))
            for i, reason in bad:
                gone: dict[str, Any] = {"label": "", "score": None, "top_k": [], "tags": "", "scores": {}}
                rows.append((i, {**gone, "status": "unreadable", "error": reason}))
            for i, r in sorted(rows, key=lambda t: t[0]):
                writer.write({"path": str(todo[i]), **r})
                summary.count(r["status"], r["error"])
            writer.commit()
            summary.seconds = time.perf_counter() - start
            ticker.advance(len(rows), images_per_second=round(summary.images_per_second, 1))
    return summary


def _sorted_already(config: PredictConfig) -> list[str]:
    """What a rerun must not predict again: the whole ``sort_into`` folder when it lies inside an
    input, or only the files its log placed when an input lies inside it (``predict DATA
    --sort-into DATA`` sorts a folder in place)."""
    if not config.sort_into:
        return []
    dest = Path(config.sort_into).expanduser().resolve()
    inputs = [Path(i).expanduser().resolve() for i in config.inputs]
    if not any(i == dest or dest in i.parents for i in inputs):
        return [config.sort_into]
    from sortsight.fileops import ActionLog, active_entries
    from sortsight.sort import LOG_NAME

    placed = active_entries(ActionLog(dest / LOG_NAME).entries())
    return [str(e["destination"]) for e in placed if e.get("destination")]


def run_predict(
    config: PredictConfig, *, progress: ProgressCallback | None = None
) -> tuple[PredictSummary, Any]:
    """``sortsight predict`` as a function: load, predict every input to the output file, then sort.

    Files already inside ``config.sort_into`` are not taken as inputs (a rerun must not predict
    the copies it made).

    Returns:
        ``(PredictSummary, SortSummary or None)``.

    Raises:
        SortsightError: bad inputs, model or options (one-line messages).
    """
    out = output_path(config.output, jsonl=config.jsonl)
    ensure_output_file(out, what="--out")
    if config.sort_into and not config.dry_run:
        ensure_output_dir(config.sort_into, what="--sort-into folder")
    paths = collect_paths(config.inputs, exclude=_sorted_already(config), follow_links=config.follow_links)
    clf = Classifier.load(
        config.model, engine=config.engine, batch_size=config.batch_size, tta=config.tta, images=len(paths)
    )
    if clf.task == "multi_label" and config.move:
        raise PredictError("A multi-label model copies each image into every tag's folder; drop --move.")
    if clf.task != "multi_label" and config.tags_only:
        raise PredictError("--tags-only is for multi-label models; this model gives one label per image.")
    summary = predict_paths(
        clf,
        paths,
        out,
        top_k=config.top_k,
        threshold=config.threshold,
        num_workers=config.num_workers,
        progress=progress,
    )
    sorted_summary = None
    if config.sort_into and clf.task == "multi_label":
        from sortsight.tagsort import sort_into_tags

        tagged = sort_into_tags(
            out, config.sort_into, tags_only=config.tags_only, dry_run=config.dry_run, progress=progress
        )
        return summary, tagged
    if config.sort_into:
        from sortsight.sort import sort_into

        sorted_summary = sort_into(
            out,
            config.sort_into,
            threshold=config.threshold,
            move=config.move,
            dry_run=config.dry_run,
            merge_identical=config.merge_identical,
            progress=progress,
        )
    return summary, sorted_summary
