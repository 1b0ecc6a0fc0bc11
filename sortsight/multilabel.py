"""Multi-label training: one sigmoid output per tag, per-tag thresholds, the same run folder.

``train(TrainConfig(data_path="labels.csv", task="multi_label"))`` (or ``task="auto"`` on data
with several tags per image) lands here:

1. **data**: :func:`sortsight.tagdata.load_tag_dataset` — tags read, images verified, an
   iteratively stratified split (every learnable tag in validation).
2. **features**: the frozen pretrained network's pooled features, once per image, through the
   single-label engine's frozen pass (:class:`sortsight.training.frozen.FrozenPass`: decoding
   ahead in threads, ONNX Runtime or eager PyTorch, whichever it measures faster here).
3. **head**: one-vs-rest logistic regression (:mod:`sortsight.taghead`), ``C``, class
   weighting and per-tag thresholds chosen by cross-validation on the training images, so
   validation stays held out for the reported numbers; cleanlab's multi-label
   ``find_label_issues`` on the out-of-fold scores lists likely missing or wrong tags
   (``RUN/tag_issues.json``).
4. **save**: the head is copied into the network's classifier; ``model/config.json`` says
   ``problem_type: multi_label_classification`` (so ``transformers.pipeline`` applies a
   sigmoid), ``model/sortsight_model.json`` keeps the thresholds, the card lists them.

5. **fine-tune where it pays**: as single-label (:mod:`sortsight.training.loop`), the tail is
   trained on the trunk activations the frozen pass kept, here with binary cross-entropy per tag
   (:mod:`sortsight.training.tags`), the best epoch and the WiSE-FT mix kept by validation mAP,
   and only when :func:`sortsight.training.plan.worth_finetuning` says so (``auto``: only with a time
   budget, at least 3 validation images with a wrong tag, and the epochs fit in what is left of
   it; ``finetune``: always). The fine-tuned model's thresholds are chosen on validation.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sortsight.config import TrainConfig
from sortsight.errors import ConfigError, DataError, ModelError
from sortsight.progress import ProgressCallback, ProgressEvent, emit
from sortsight.taghead import TagHead, fit_tag_head, tag_issues
from sortsight.tagmetrics import best_f1_thresholds, tag_metrics
from sortsight.training import distributed as _dist
from sortsight.training import plan as _plan
from sortsight.training import run_dir as _rd
from sortsight.training.checkpoint import write_json_atomic
from sortsight.training.plan import is_multilabel
from sortsight.training.tags import finetune_tags

if TYPE_CHECKING:
    from sortsight.tagdata import TagDataset
    from sortsight.training.result import TrainResult

__all__ = [
    "PROBLEM_TYPE",
    "is_multilabel",
    "kept_as",
    "model_task",
    "train_multilabel",
    "with_sigmoid_output",
]

log = logging.getLogger(__name__)

PROBLEM_TYPE = "multi_label_classification"


def kept_as(result: Any) -> str:
    """Which model a tagger's run kept, in words: ``tag head``, ``fine-tuned`` or ``WiSE-FT mix 0.5``."""
    if result.chosen == "wise":
        return f"WiSE-FT mix {result.wise_alpha:g}"
    return "fine-tuned" if result.chosen == "finetune" else "tag head"


def model_task(folder: str | Path) -> tuple[str, list[float] | None]:
    """``(task, thresholds)`` of a model folder: sortsight's own record, else ``config.json``'s
    ``problem_type`` (a multi-label folder from elsewhere gets thresholds of 0.5)."""
    p = Path(folder)
    meta = p / "sortsight_model.json"
    if meta.is_file():
        data = json.loads(meta.read_text(encoding="utf-8"))
        if data.get("task") == "multi_label":
            return "multi_label", [float(v) for v in data["thresholds"]]
    config = p / "config.json"
    if config.is_file():
        data = json.loads(config.read_text(encoding="utf-8"))
        if data.get("problem_type") == PROBLEM_TYPE:
            return "multi_label", [0.5] * len(data.get("id2label") or {})
    return "single_label", None


def with_sigmoid_output(proto: Any, meta: dict[str, str], folder: str | Path) -> tuple[Any, dict[str, str]]:
    """For a multi-label model folder: the ONNX graph with a second output ``scores`` = σ(logits)
    and ``task``/``thresholds`` in its metadata; any other model's graph unchanged."""
    task, thresholds = model_task(folder)
    if task != "multi_label":
        return proto, meta
    import onnx

    graph = proto.graph
    logits = graph.output[0]
    graph.node.append(onnx.helper.make_node("Sigmoid", [logits.name], ["scores"], name="sortsight_sigmoid"))
    scores = onnx.ValueInfoProto()
    scores.CopyFrom(logits)
    scores.name = "scores"
    graph.output.append(scores)
    return proto, {
        **meta,
        "task": "multi_label",
        "thresholds": json.dumps(thresholds),
        "outputs": "logits; scores = sigmoid(logits), one per tag",
    }


# ----------------------------------------------------------------------------- training


_FIRST = 16  # images that choose the feature engine and time it (as in single-label training)


def train_multilabel(config: TrainConfig, *, progress: ProgressCallback | None = None) -> TrainResult:
    """Train a multi-label tagger as ``config`` says; the run folder is the same as single-label's.

    Raises:
        ConfigError, DataError, ModelError: one-line messages saying what to do.
    """
    from sortsight.models import create_model
    from sortsight.training.frozen import FrozenPass
    from sortsight.training.result import CandidateResult, TrainResult
    from sortsight.training.run import split_for

    start = time.perf_counter()
    if not config.pretrained:
        raise ConfigError(
            "pretrained: false is not available for multi-label data: tags are learnt by heads on "
            "the pretrained features. Leave pretrained on (drop --no-pretrained)."
        )
    env = _dist.setup_environment()
    config = _rd.prepare_run_dir(config, env)
    progress = _rd.EventLog(config.run_dir, env, progress)  # RUN/events.jsonl for front-ends
    ds = _plan.load_tag_data(config, progress)
    for tag, why in ds.excluded:
        emit(progress, ProgressEvent("data", 0, 0, message=f"Tag '{tag}' is {why}; left out of training."))
    train_items, valid_items = ds.by_split("train"), ds.by_split("validation")
    if not valid_items:
        raise DataError(f"'{config.data_path}' has no validation images. Set valid_split (e.g. 0.2).")
    if config.candidates > 1 or config.models:
        emit(progress, ProgressEvent("data", 0, 0, message=f"Multi-label: training {config.model} only."))
    model, data_config = create_model(config.model, list(ds.tags), input_size=config.image_size)
    if not hasattr(model, "reset_classifier"):
        raise ModelError(
            f"Multi-label training works with the bundled and timm models, not '{config.model}'; "
            "use efficientnet_lite0/1/2 or a timm model name."
        )
    side = data_config.input_size
    run_dir = config.run_dir
    info = _run_info(config, ds, env)
    if env.is_main:
        _rd.write_run_json(run_dir, {**info, "status": "running"})

    t0 = time.perf_counter()
    # the single-label engine's frozen pass: decoding ahead in threads, the fastest engine measured here
    split = split_for(model, config.model, data_config)
    paths = [it.path for it in train_items] + [it.path for it in valid_items]
    frozen = FrozenPass(split, data_config, images=len(paths))  # its engine serves every image
    first = frozen.run(paths[:_FIRST])  # chooses the engine; its speed gives the estimate
    per_image = first.seconds / max(1, len(first.kept))
    estimate = per_image * (len(paths) - len(first.kept)) * 1.1 + 5.0
    emit(
        progress,
        ProgressEvent(
            "estimate",
            0,
            0,
            {"seconds": estimate},
            estimate,
            f"{config.model} at {side}px, {len(ds.tags)} tags: about {_plan.human(estimate)}",
        ),
    )
    t_feat = time.perf_counter()
    passed = first.concat(frozen.run(paths[_FIRST:], progress=progress), _FIRST)
    t_feat = time.perf_counter() - t_feat + first.seconds
    if passed.failed:
        path, why = passed.failed[0]
        raise DataError(f"Image '{path}' cannot be read ({why}). Run 'sortsight check' on the data.")
    feats = passed.features.numpy()
    x_train, x_valid = feats[: len(train_items)], feats[len(train_items) :]
    y_train, y_valid = ds.matrix(train_items), ds.matrix(valid_items)
    lacking = [ds.tags[t] for t in range(len(ds.tags)) if y_train[:, t].sum() < 1]
    if lacking:
        raise DataError(
            f"No training image has tag {', '.join(lacking[:5])}; add images or lower valid_split."
        )

    emit(
        progress, ProgressEvent("head", 0, 1, message=f"One-vs-rest logistic regression, {len(ds.tags)} tags")
    )
    t_head = time.perf_counter()
    head = fit_tag_head(x_train, y_train, seed=config.seed)
    t_head = time.perf_counter() - t_head
    result_v = tag_metrics(y_valid, head.scores(x_valid), head.thresholds, ds.tags)
    metrics = {k: v for k, v in result_v["metrics"].items() if k != "n_images"}
    emit(
        progress,
        ProgressEvent(
            "head",
            1,
            1,
            dict(metrics),
            0.0,
            f"Tag head: validation micro-F1 {metrics['f1_micro']:.3f}, mAP {metrics['map']:.3f}",
        ),
    )
    from sortsight.training.head import fold

    fold(head, split.classifier)
    model_dir = run_dir / "model"
    engine: dict[str, Any] = {
        "cpu": env.cpu,
        "threads": env.threads,
        "C": head.c,
        "class_weight": "balanced" if head.balanced else None,
        "cv_map": head.cv_map,
        "estimate_seconds": round(estimate, 1),
        "features_seconds": round(t_feat, 1),
        "features_engine": frozen.engine,
        "head_seconds": round(t_head, 1),
    }
    result = CandidateResult(
        config.model,
        side,
        "head",
        metrics,
        dict(metrics),
        model_dir,
        0,
        0,
        "head_only",
        time.perf_counter() - t0,
        engine,
    )
    thresholds, per_tag = head.thresholds, result_v["per_tag"]
    metrics_log = _rd.MetricsLog(run_dir, env, config.log)
    plan = _plan.make_plan(config)
    may_tune = bool(plan.epochs) and (plan.finetune == "yes" or bool(config.time_budget))
    if env.is_main:
        emit(progress, ProgressEvent("save", 0, 1, message=f"Saving {model_dir}"))
        _save(model, data_config, ds, config, result, head, thresholds, per_tag)
        assert head.oof is not None
        issues = tag_issues(
            [ds.relative(it.path) for it in train_items], y_train, head.oof, head.thresholds, ds.tags
        )
        write_json_atomic(run_dir / "tag_issues.json", issues)
        if issues:
            emit(
                progress,
                ProgressEvent(
                    "doctor",
                    1,
                    1,
                    {"tag_issues": len(issues)},
                    0.0,
                    f"{len(issues)} training image(s) may have missing or wrong tags: "
                    f"see {run_dir / 'tag_issues.json'}",
                ),
            )
        metrics_log.append(
            {
                "candidate": config.model,
                "phase": "head",
                "epoch": 0,
                "step": 0,
                **{f"val_{k}": v for k, v in metrics.items()},
            },
        )
    result.first_model_seconds = time.perf_counter() - start

    def model_ready(stage: str) -> None:
        """Announce the model on disk (``metrics``: those of the model saved last)."""
        info = {"model_dir": str(model_dir), "stage": stage, "val_accuracy": metrics["accuracy"]}
        emit(progress, ProgressEvent("model_ready", 1, 1, {**info, "val_f1_micro": metrics["f1_micro"]}))

    model_ready("head" if may_tune else "final")

    # fine-tune the tail where it pays (as single-label: from the head, the best epoch by
    # validation mAP, then the WiSE-FT mix); the thresholds are then chosen on validation
    tuned = finetune_tags(
        config,
        plan,
        split,
        passed.acts,
        len(train_items),
        y_train,
        y_valid,
        metrics,
        seconds_per_image=t_feat / max(1, len(paths)),
        spent=result.first_model_seconds,
        deadline=None if not config.time_budget else start + config.time_budget,
        env=env,
        metrics_log=metrics_log,
        progress=progress,
        engine=engine,
    )
    result.stopped = tuned.get("stopped", result.stopped)
    result.epochs, result.steps = tuned.get("epochs", 0), tuned.get("steps", 0)
    metrics_note = "validation; thresholds chosen on the training images (out of fold)"
    if "scores" in tuned:
        thresholds = best_f1_thresholds(y_valid, tuned["scores"])
        tuned_v = tag_metrics(y_valid, tuned["scores"], thresholds, ds.tags)
        metrics = {k: v for k, v in tuned_v["metrics"].items() if k != "n_images"}
        per_tag = tuned_v["per_tag"]
        result.metrics = metrics
        result.wise_alpha = tuned["alpha"]
        result.chosen = "finetune" if tuned["alpha"] == 1 else "wise"
        metrics_note = (
            "validation; the fine-tuned model's thresholds were chosen on these images, so its F1 "
            "is a little optimistic (mAP does not depend on thresholds)"
        )
        if env.is_main:
            emit(progress, ProgressEvent("save", 0, 1, message=f"Saving the fine-tuned model to {model_dir}"))
            _save(model, data_config, ds, config, result, head, thresholds, per_tag)
    result.seconds = time.perf_counter() - t0
    if env.is_main:
        seconds = time.perf_counter() - start
        _rd.write_run_json(
            run_dir,
            {
                **info,
                "status": "done",
                "seconds": round(seconds, 1),
                "best": result.row(),
                "metrics": metrics,
                "metrics_note": metrics_note,
                "head_metrics": result.head_metrics,
                "per_tag": per_tag,
                "thresholds": dict(zip(ds.tags, np.asarray(thresholds).tolist(), strict=True)),
                "candidates": [result.row()],
                "engine": engine,
            },
        )
        _rd.mark_finished(run_dir, result)
        if result.chosen != "head":
            model_ready("final")
    env.wait()
    done = {
        "chosen": result.chosen,
        "val_accuracy": metrics["accuracy"],
        "val_f1_micro": metrics["f1_micro"],
        "val_map": metrics["map"],
    }
    message = f"Kept {config.model} ({kept_as(result)}) in {model_dir}"
    emit(progress, ProgressEvent("done", 1, 1, done, 0.0, message))
    return TrainResult(run_dir, model_dir, result, [result], time.perf_counter() - start)


def _run_info(config: TrainConfig, ds: TagDataset, env: _dist.Environment) -> dict[str, Any]:
    base = _rd.run_info(config, _plan.RunData(ds, ds.tags, [], [], [], [], [], []), env)  # type: ignore[arg-type]
    base["data"].update(
        tags=list(ds.tags),
        classes=list(ds.tags),
        excluded=[{"tag": t, "reason": why} for t, why in ds.excluded],
        no_tag={s: sum(1 for it in ds.by_split(s) if not it.tags) for s in ("train", "validation", "test")},
    )
    return {"task": "multi_label", **base}


def _save(
    model: Any,
    data_config: Any,
    ds: TagDataset,
    config: TrainConfig,
    result: Any,
    head: TagHead,
    thresholds: Any,
    per_tag: list[dict[str, Any]],
) -> None:
    """The HF folder with ``problem_type``, the thresholds and a multi-label card, written atomically."""
    from sortsight import __version__
    from sortsight.card import tag_model_card
    from sortsight.fileops import atomic_write_text, staged_folder
    from sortsight.model_folder import save_model_folder

    card = tag_model_card(
        model_name=result.model,
        tags=list(ds.tags),
        counts=ds.counts(),
        metrics=result.metrics,
        per_tag=per_tag,
        image_size=result.image_size,
        dataset_fingerprint=ds.fingerprint(),
        excluded=[f"{t} ({why})" for t, why in ds.excluded],
        parameters={
            "C": head.c,
            "class_weight": "balanced" if head.balanced else "none",
            "seed": config.seed,
            "valid_split": config.valid_split,
            "thresholds": "max F1 per tag (cross-validated)"
            if result.chosen == "head"
            else "max F1 per tag on validation",
            "kept": kept_as(result) + (f" ({result.epochs} epochs)" if result.chosen != "head" else ""),
        },
        version=__version__,
    )
    model.eval()
    with staged_folder(result.model_dir) as tmp:
        save_model_folder(model, list(ds.tags), data_config, tmp, name=result.model, card=card)
        for name, extra in (
            ("config.json", {"problem_type": PROBLEM_TYPE}),
            ("sortsight_model.json", {"task": "multi_label", "thresholds": np.asarray(thresholds).tolist()}),
        ):
            data = json.loads((tmp / name).read_text(encoding="utf-8"))
            atomic_write_text(tmp / name, json.dumps({**data, **extra}, indent=2, ensure_ascii=False))
