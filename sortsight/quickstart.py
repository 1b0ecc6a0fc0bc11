"""The whole job on the bundled sample, in one call: check → train → evaluate → report → sort.

The sample (``sortsight/sample/``) is a small Fashion-MNIST subset (MIT licence): five classes,
100 training and 30 test images each, and 50 unlabelled images in ``inbox/`` to sort. The
sample itself is only read; everything made goes into a new work folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sortsight.progress import ProgressCallback, ProgressEvent, emit

__all__ = ["QuickstartResult", "run_quickstart", "sample_dir", "new_workdir"]


def sample_dir() -> Path:
    """The bundled sample: ``fashion/`` (train/ and test/ class folders) and ``inbox/``."""
    return Path(__file__).resolve().parent / "sample"


def new_workdir(base: str | Path) -> Path:
    """``base`` if it does not exist yet, else ``base-2``, ``base-3``, … (nothing is overwritten)."""
    base = Path(base)
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


@dataclass
class QuickstartResult:
    """Everything the quickstart made, for the front-end to show."""

    workdir: Path
    data: dict[str, Any]  # data.summarize() of the sample
    train: Any  # sortsight.train.TrainResult
    evaluation: Any  # sortsight.evaluate.Evaluation
    report: Path
    predictions: Any  # sortsight.predict.PredictSummary
    sorted: Any  # sortsight.sort.SortSummary


def run_quickstart(
    workdir: str | Path = "sortsight-quickstart",
    *,
    threshold: float = 0.6,
    epochs: int | None = None,
    train_options: dict[str, Any] | None = None,
    progress: ProgressCallback | None = None,
) -> QuickstartResult:
    """Train, evaluate, report and sort on the bundled sample.

    Args:
        workdir: where to write (a new folder; an existing one gets a ``-2``… sibling instead).
        threshold: below this score an inbox image is sorted into ``unsure/``.
        epochs: fine-tuning epochs (default: the training default).
        train_options: further :class:`~sortsight.config.TrainConfig` options (e.g. a smaller
            ``image_size`` for a faster run).
        progress: receives every step's progress events.

    Returns:
        A :class:`QuickstartResult`.

    Example:
        >>> result = run_quickstart("/tmp/qs")  # doctest: +SKIP
        >>> result.report.name  # doctest: +SKIP
        'report.html'
    """
    from sortsight.config import PredictConfig, TrainConfig
    from sortsight.data import load_dataset, summarize
    from sortsight.evaluate import evaluate
    from sortsight.predict import run_predict
    from sortsight.train import train

    settings = dict(train_options or {}, **({} if epochs is None else {"epochs": epochs}))
    TrainConfig(**settings)  # a bad option is refused before anything is written
    sample = sample_dir()
    work = new_workdir(workdir)
    work.mkdir(parents=True)
    data_path = sample / "fashion"

    emit(progress, ProgressEvent("quickstart", 1, 4, message=f"1/4 Checking the sample data in {data_path}"))
    summary = summarize(load_dataset(data_path, progress=progress))

    run_dir = work / "runs" / "fashion"
    emit(progress, ProgressEvent("quickstart", 2, 4, message=f"2/4 Training (run folder: {run_dir})"))
    options: dict[str, Any] = {
        "data_path": str(data_path),
        "out": str(run_dir),
        "project_name": "fashion-sample",
    }
    options.update(settings)
    trained = train(TrainConfig(**options), progress=progress)

    emit(progress, ProgressEvent("quickstart", 3, 4, message="3/4 Evaluating on the held-out test images"))
    # the engine's own rule: 150 test images make the quick ONNX graph (1-2 s) where it pays, and
    # the 50 inbox images then reuse it; eager PyTorch took 2.5 s longer on the evaluation alone
    evaluation = evaluate(run_dir, progress=progress)
    written = evaluation.save(run_dir)

    sorted_dir = work / "sorted"
    emit(progress, ProgressEvent("quickstart", 4, 4, message=f"4/4 Sorting the inbox into {sorted_dir}"))
    predicted, sorted_summary = run_predict(
        PredictConfig(
            model=str(run_dir),
            inputs=(str(sample / "inbox"),),
            output=str(work / "predictions.csv"),
            threshold=threshold,
            sort_into=str(sorted_dir),
        ),
        progress=progress,
    )
    return QuickstartResult(work, summary, trained, evaluation, written["report"], predicted, sorted_summary)
