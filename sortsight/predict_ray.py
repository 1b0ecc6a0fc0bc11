"""Distributed batch prediction with Ray Data: the same CSV as the local engine, on many machines.

``sortsight predict MODEL PATHS --engine ray`` (or :func:`predict_paths_ray`) spreads decoding
and inference over a pool of Ray actors, each holding one :class:`~sortsight.predict.Classifier`
(the model is loaded once per actor, not once per batch)::

    from_items([{"path": ...}, ...])                      # the images still to do (resume-aware)
      .map_batches(_PredictBatch, concurrency=N, num_cpus=C, batch_size=B)   # sized actors
      .iter_batches()  ->  appended to predictions.csv on the driver, flushed per batch

Rows are the local engine's rows (``path,label,score,top_k,status,model,error``), in input
order, so an interrupted job resumes with either engine and ``--sort-into`` sorts the same way.
Images are opened with :func:`sortsight.images.open_image` inside the actors (EXIF orientation,
CMYK/16-bit/palette to RGB, size limits, unreadable files reported, not fatal) — which is why
this uses ``from_items`` and not ``ray.data.read_images``, whose plain decoding would stop the
job at the first broken file and give different pixels for rotated photos.

Paths may be local (files, folders, CSV lists — as :func:`sortsight.predict.collect_paths`) or
object-store URIs read through pyarrow filesystems (``s3://bucket/prefix/``, ``gs://…``,
``hdfs://…``, ``file://…``): a URI ending in ``/`` or naming a prefix is listed recursively.
The model folder is shipped to the actors through Ray's object store, so the workers of a
cluster need no shared disk. Without ``RAY_ADDRESS`` (set by ``ray job submit``) or
``address=``, a local Ray instance is started for the job and stopped after it.

Ray is optional: ``pip install 'sortsight[ray]'``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from sortsight.config import DEFAULT_BATCH_SIZE, DEFAULT_TOP_K
from sortsight.errors import PredictError, first_line
from sortsight.progress import ProgressCallback, Ticker

__all__ = ["collect_sources", "default_actors", "is_uri", "list_uris", "predict_paths_ray", "run_predict_ray"]

_INSTALL_HINT = "Ray is not installed. Run: pip install 'sortsight[ray]'"
_MODEL_FILES = (
    "config.json",
    "model.safetensors",
    "preprocessor_config.json",
    "sortsight_model.json",
    "model.onnx",
)


def is_uri(source: str | os.PathLike) -> bool:
    """True for ``scheme://…`` sources (``s3://``, ``gs://``, ``file://`` …), read through pyarrow."""
    text = str(source)
    return "://" in text and text.split("://", 1)[0].isalnum()


def list_uris(uri: str) -> list[str]:
    """Image URIs under ``uri`` (one object, or every image below a prefix, sorted).

    Raises:
        PredictError: the filesystem cannot be reached or the URI holds no images.
    """
    from pyarrow import fs as pafs

    from sortsight.images import is_image_path, is_junk

    try:
        filesystem, path = pafs.FileSystem.from_uri(uri)
        info = filesystem.get_file_info(path)
        if info.type == pafs.FileType.File:
            return [uri]
        if info.type == pafs.FileType.NotFound:
            raise PredictError(f"'{uri}' not found. Check the bucket and prefix, and your credentials.")
        found = filesystem.get_file_info(pafs.FileSelector(path.rstrip("/"), recursive=True))
    except PredictError:
        raise
    except Exception as exc:  # pyarrow raises OSError/ArrowInvalid/... per filesystem
        first = first_line(exc)
        raise PredictError(f"Could not list '{uri}': {first}. Check the URI and your credentials.") from exc
    prefix_len = len(path.rstrip("/"))
    base = uri.rstrip("/")
    out = []
    for f in found:
        relative = f.path[prefix_len:]  # "/sub/name.jpg"
        # the same rules as for folders: image extensions in any case, no hidden or OS-junk parts
        if f.type == pafs.FileType.File and is_image_path(f.base_name) and not any(
            is_junk(part) for part in relative.split("/") if part
        ):
            out.append(base + relative)
    if not out:
        raise PredictError(f"No images found under '{uri}'. Give a prefix holding image files.")
    return sorted(out)


def collect_sources(inputs: Sequence[str | Path], *, exclude: Sequence[str | Path] = ()) -> list[str]:
    """Local inputs through :func:`sortsight.predict.collect_paths`, URIs listed; order kept.

    Raises:
        PredictError: an input does not exist or holds no images.
    """
    from sortsight.predict import collect_paths

    out: list[str] = []
    local: list[str | Path] = []

    def flush() -> None:
        if local:
            out.extend(str(p) for p in collect_paths(local, exclude=exclude))
            local.clear()

    for source in inputs:
        if is_uri(source):
            flush()
            out.extend(list_uris(str(source)))
        else:
            local.append(source)
    flush()
    return list(dict.fromkeys(out))  # duplicates dropped, order kept


def _model_folder(model: str | Path) -> Path:
    """The HF model folder of a run folder or model folder (what :meth:`Classifier.load` reads)."""
    from sortsight.runs import RunFolder

    if str(model).endswith(".onnx"):
        raise PredictError(f"'{model}' is an ONNX file; --engine ray takes a run folder (runs/NAME) or "
                           f"its model/ folder.")
    return RunFolder.resolve(model, error=PredictError).model_dir


def _read_model_files(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in _MODEL_FILES if (folder / name).is_file()}


class _PredictBatch:
    """A Ray actor: holds one Classifier and turns a batch of paths into prediction rows."""

    def __init__(self, model: dict[str, Any], *, engine: str, batch_size: int, threads: int,
                 top_k: int) -> None:
        import ray

        from sortsight.predict import Classifier

        # Unpack the shipped model folder on this worker (clusters need no shared disk). The bytes
        # come as a reference nested in ``model`` so Ray keeps the actor's own arguments small.
        folder = tempfile.mkdtemp(prefix="sortsight-ray-model-")
        try:
            for name, data in ray.get(model["files"]).items():
                Path(folder, name).write_bytes(data)
            self.classifier = Classifier.load(folder, engine=engine, batch_size=batch_size, threads=threads)
        finally:  # the engine holds the weights in memory now
            shutil.rmtree(folder, ignore_errors=True)
        self.top_k = top_k
        self._filesystems: dict[str, Any] = {}

    def _source(self, path: str) -> Any:
        """A local path as is; an object-store URI as its bytes (open_image takes both)."""
        if not is_uri(path):
            return path
        from pyarrow import fs as pafs

        rest = path.split("://", 1)[1]
        key = path[: len(path) - len(rest)] + rest.split("/", 1)[0]  # scheme://bucket-or-host
        try:
            if key not in self._filesystems:
                filesystem, fs_path = pafs.FileSystem.from_uri(path)
                self._filesystems[key] = (filesystem, len(rest) - len(fs_path))
            filesystem, offset = self._filesystems[key]
            with filesystem.open_input_stream(rest[offset:]) as stream:
                return stream.read()
        except Exception:  # missing object, no permission, network: reported as unreadable
            return path

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        from sortsight.predict import _collate, _Decode, softmax, top_k_of

        paths = [str(p) for p in batch["path"]]
        clf = self.classifier
        decode = _Decode([self._source(p) for p in paths], clf.transform, clf.draft_size)  # type: ignore[arg-type]
        indices, pixels, bad = _collate([decode[i] for i in range(len(paths))])
        label = [""] * len(paths)
        score = [float("nan")] * len(paths)
        top = ["[]"] * len(paths)
        error = [""] * len(paths)
        if pixels is not None:
            probs = softmax(clf.logits(pixels))  # (B, C)
            for i, row in zip(indices, probs, strict=True):
                best = top_k_of(row, clf.labels, self.top_k)
                label[i], score[i] = best[0]["label"], best[0]["score"]
                top[i] = json.dumps([{**b, "score": round(b["score"], 6)} for b in best], ensure_ascii=False)
        for i, reason in bad:
            error[i] = reason
        return {
            "path": np.array(paths, dtype=object),
            "label": np.array(label, dtype=object),
            "score": np.array(score, dtype=np.float64),
            "top_k": np.array(top, dtype=object),
            "error": np.array(error, dtype=object),
        }


def default_actors(cpus_per_actor: float) -> int:
    """One actor per ``cpus_per_actor`` CPUs of the Ray cluster (at least one)."""
    import ray

    cpus = float(ray.cluster_resources().get("CPU", 1))
    return max(1, int(cpus // max(cpus_per_actor, 1e-6)))


@contextlib.contextmanager
def _quiet_ray_data() -> Iterator[None]:
    """Ray Data logs each execution at INFO on the console; our progress callback reports instead."""
    logger = logging.getLogger("ray.data")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _start_ray(address: str | None) -> bool:
    """Connect to (or start) Ray; True when this call started it (so it should stop it)."""
    try:
        import ray
    except ImportError as exc:
        raise PredictError(_INSTALL_HINT) from exc
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    try:
        if address:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        else:
            ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = first_line(exc)
        raise PredictError(f"Could not start or reach Ray ({address or 'local'}): {first}. "
                           f"Check the RAY_ADDRESS environment variable (the cluster's address, e.g. "
                           f"ray://head:10001), or start a cluster with 'ray start --head'.") from exc
    return True


def predict_paths_ray(
    model: str | Path,
    paths: Sequence[str | os.PathLike],
    output: str | Path,
    *,
    top_k: int = DEFAULT_TOP_K,
    threshold: float = 0.0,
    engine: str = "auto",
    batch_size: int = DEFAULT_BATCH_SIZE,
    actors: int | None = None,
    cpus_per_actor: float = 1.0,
    address: str | None = None,
    progress: ProgressCallback | None = None,
) -> Any:
    """Predict ``paths`` on a Ray cluster and append rows to ``output`` like the local engine.

    Args:
        model: a run folder or HF model folder (as for :meth:`Classifier.load`).
        paths: image paths and/or object-store URIs (see :func:`collect_sources`).
        output: ``predictions.csv`` (or ``.jsonl``); rows already there are skipped (resume).
        top_k: labels kept per image in ``top_k``.
        threshold: minimum best score for status ``ok`` (else ``unsure``).
        engine: the engine inside each actor (``auto``, ``onnx``, ``jit``, ``eager``).
        batch_size: images per actor call and per forward pass.
        actors: size of the actor pool (default: cluster CPUs / ``cpus_per_actor``).
        cpus_per_actor: CPUs reserved per actor — also its compute threads.
        address: Ray address (default: ``RAY_ADDRESS``, else a local instance for this job).
        progress: receives ``ProgressEvent(phase="predict", ...)`` after each batch.

    Returns:
        A :class:`sortsight.predict.PredictSummary` (its ``engine`` is ``"ray"``).

    Raises:
        PredictError: Ray missing or unreachable, no images, a bad model folder.

    Example:
        >>> predict_paths_ray("runs/covers", ["s3://archive/scans/"], "predictions.csv")  # doctest: +SKIP
    """
    from sortsight.predict import PredictSummary
    from sortsight.predictions import PredictionWriter

    folder = _model_folder(model)
    sources = [str(p) for p in paths]
    writer = PredictionWriter(output, model=model)  # refuses a file holding another model's rows
    todo = [p for p in sources if p not in writer.done]
    summary = PredictSummary(writer.path, len(sources), len(sources) - len(todo), engine="ray")
    if not todo:
        return summary
    started = _start_ray(address)
    try:
        import ray

        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.execution_options.preserve_order = True  # rows in input order, as the local engine writes them
        pool = actors or default_actors(cpus_per_actor)
        pool = max(1, min(pool, -(-len(todo) // batch_size)))
        # the model folder's bytes travel through Ray's object store (no shared disk needed)
        model_ref = ray.put(_read_model_files(folder))
        dataset = ray.data.from_items([{"path": p} for p in todo]).map_batches(
            _PredictBatch,
            fn_constructor_args=({"files": model_ref},),
            fn_constructor_kwargs={"engine": engine, "batch_size": batch_size,
                                   "threads": max(1, int(cpus_per_actor)), "top_k": top_k},
            batch_size=batch_size,
            compute=ray.data.ActorPoolStrategy(size=pool),  # a fixed pool of sized actors
            num_cpus=cpus_per_actor,
            batch_format="numpy",
        )
        with _quiet_ray_data():
            _stream_rows(dataset, writer, summary, threshold=threshold,
                         ticker=Ticker(progress, "predict", len(todo)))
    except PredictError:
        raise
    except Exception as exc:  # Ray wraps actor failures in its own error types
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise PredictError(f"The Ray job failed: {first[:300]}. Rows written so far are kept; "
                           f"run the same command again to resume.") from exc
    finally:
        if started:
            import ray

            ray.shutdown()
    return summary


def _stream_rows(dataset: Any, writer: Any, summary: Any, *, threshold: float, ticker: Ticker) -> None:
    """Append each batch the actors return through ``writer``, committed batch by batch, as the
    local engine does."""
    import math

    start = time.perf_counter()
    with writer:
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            for path, label, score, top, error in zip(batch["path"], batch["label"], batch["score"],
                                                      batch["top_k"], batch["error"], strict=True):
                readable = not math.isnan(float(score))
                status = "unreadable" if not readable else ("ok" if score >= threshold else "unsure")
                writer.write({"path": str(path), "label": str(label) if readable else "",
                              "score": round(float(score), 6) if readable else None,
                              "top_k": json.loads(str(top)), "status": status, "error": str(error)})
                summary.count(status, str(error))
            writer.commit()
            summary.seconds = time.perf_counter() - start
            ticker.advance(len(batch["path"]), images_per_second=round(summary.images_per_second, 1))


def run_predict_ray(
    config: Any,
    *,
    progress: ProgressCallback | None = None,
    actors: int | None = None,
    cpus_per_actor: float = 1.0,
    address: str | None = None,
) -> tuple[Any, Any]:
    """``sortsight predict --engine ray`` as a function: what :func:`sortsight.predict.run_predict`
    does, with the predictions made by Ray actors (``config.engine`` is the engine inside them).

    Returns:
        ``(PredictSummary, SortSummary or None)``.

    Raises:
        SortsightError: bad inputs, model or options; Ray missing or unreachable.
    """
    from sortsight.predictions import output_path

    out = output_path(config.output, jsonl=config.jsonl)
    sources = collect_sources(config.inputs, exclude=[config.sort_into] if config.sort_into else [])
    if config.sort_into and any(is_uri(s) for s in sources):
        raise PredictError("--sort-into copies local files; object-store images (s3://, gs://) cannot be "
                           "sorted. Drop --sort-into, or copy the images to a local folder first.")
    summary = predict_paths_ray(config.model, sources, out, top_k=config.top_k, threshold=config.threshold,
                                engine=config.engine, batch_size=config.batch_size, actors=actors,
                                cpus_per_actor=cpus_per_actor, address=address, progress=progress)
    sorted_summary = None
    if config.sort_into:
        from sortsight.sort import sort_into

        sorted_summary = sort_into(out, config.sort_into, threshold=config.threshold, move=config.move,
                                   dry_run=config.dry_run, progress=progress)
    return summary, sorted_summary
