"""``train_classifier(config)``: the story of a run, top to bottom.

For each candidate model:

1. **features** — decode every image once (threads, ahead of the compute) and pass it through the
   frozen trunk and the pretrained tail on the fastest engine measured here (:mod:`.frozen`).
2. **head** — logistic regression on the pooled features, settings chosen on validation, then
   (``refit``, on by default) fitted again on train + validation, folded into the classifier and
   saved as a complete ``model/``: the first usable model, announced as ``model_ready``.
3. **fine-tune** where it pays (:func:`.plan.worth_finetuning`): the tail from the head, on cached
   activations of the eval view and one augmented view (:mod:`.loop`), stopping after four epochs
   that do not beat the head.
4. **WiSE-FT** — mix the head-initialised and the fine-tuned weights; the mixing weight (0 = head,
   1 = fine-tuned) is chosen on validation, so the kept model never scores below the head there.
5. **test** — when the data has a test split, the kept model's test metrics are the headline.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch

from sortsight._sampling import spread_first
from sortsight.config import TrainConfig
from sortsight.errors import ModelError
from sortsight.progress import ProgressCallback, ProgressEvent, emit
from sortsight.training import run_dir as rd
from sortsight.training import speeds as speed_cache
from sortsight.training.checkpoint import latest_checkpoint_state
from sortsight.training.distributed import Environment, setup_environment
from sortsight.training.frozen import Frozen, FrozenPass
from sortsight.training.head import fit_head, fold, head_seconds, metrics, refit_head, wise
from sortsight.training.loop import choose_wise, finetune, logits, state_copy, warm_up
from sortsight.training.plan import (
    FINETUNE_SHARE,
    WISE_ALPHAS,
    Plan,
    RunData,
    check_trainable,
    estimate_seconds,
    human,
    load_data,
    make_plan,
    worth_finetuning,
)
from sortsight.training.result import CandidateResult, TrainResult, _rank_key
from sortsight.training.split import Split, split_model

__all__ = ["CandidateResult", "TrainResult", "train_classifier"]

log = logging.getLogger(__name__)
_FIRST = 16  # training images that choose the feature engine and time it


def train_classifier(config: TrainConfig, *, progress: ProgressCallback | None = None) -> TrainResult:
    """Train a single-label classifier as ``config`` says and write the run folder: arguments,
    result and errors as :func:`sortsight.train.train`, which sends multi-label data to
    :mod:`sortsight.multilabel` instead of here."""
    start = time.perf_counter()
    env = setup_environment()
    config = rd.prepare_run_dir(config, env)
    run_dir = config.run_dir
    events = rd.EventLog(run_dir, env, progress)
    data = load_data(config, events)
    plan = make_plan(config)
    deadline = start + config.time_budget if config.time_budget else None
    info = rd.run_info(config, data, env)
    if env.is_main:
        rd.write_run_json(run_dir, {**info, "status": "running"})
    results: list[CandidateResult] = []
    specs = plan.candidates
    for i, (name, size) in enumerate(specs):
        out = run_dir if len(specs) == 1 else run_dir / "candidates" / rd.slug(name, size)
        finished = rd.finished_candidate(out) if config.resume else None
        if finished is not None:
            results.append(CandidateResult(**finished))
            continue
        # each candidate gets an equal share of what is left of the time budget
        share = (
            None
            if deadline is None
            else time.perf_counter() + (deadline - time.perf_counter()) / (len(specs) - i)
        )
        results.append(_train_candidate(name, size, config, plan, data, out, env, events, share, start))
    best = max(results, key=lambda c: _rank_key(c.row()))
    model_dir = run_dir / "model"
    seconds = time.perf_counter() - start
    if env.is_main:
        if len(specs) > 1:
            rd.copy_model(best.model_dir, model_dir)
            rd.write_leaderboard(run_dir, [c.row() for c in results])
        rd.write_run_json(
            run_dir,
            {
                **info,
                "status": "done",
                "seconds": round(seconds, 1),
                "best": best.row(),
                "metrics": best.metrics,
                "metrics_note": "validation, measured before the refit on train + validation"
                if best.refit.get("applied")
                else "validation",
                "test_metrics": best.test_metrics,
                "refit": best.refit,
                "candidates": [c.row() for c in results],
                "engine": best.engine,
            },
        )
    env.wait()
    done = {"chosen": best.chosen, "val_accuracy": best.metrics.get("accuracy"), "model_dir": str(model_dir)}
    if best.test_metrics:
        done["test_accuracy"] = best.test_metrics["accuracy"]
    headline = (
        f"test accuracy {best.test_metrics['accuracy']:.3f}"
        if best.test_metrics
        else f"validation accuracy {best.metrics['accuracy']:.3f}"
    )
    emit(
        events,
        ProgressEvent(
            "done", 1, 1, done, 0.0, f"Kept {best.model} ({best.chosen}): {headline} — {model_dir}"
        ),
    )
    return TrainResult(run_dir, model_dir, best, results, seconds)


def split_for(model: Any, name: str, data_config: Any, *, scratch: bool = False) -> Split:
    """``split_model`` with its ``TypeError`` as a one-line :class:`ModelError`."""
    try:
        return split_model(model, tuple(data_config.mean), tuple(data_config.std), scratch=scratch)
    except TypeError as exc:
        raise ModelError(
            f"Model '{name}' cannot be trained by sortsight ({exc}); use a bundled model "
            f"(efficientnet_lite0/1/2), a timm model name or an HF image-classification model."
        ) from exc


def build(name: str, size: int | None, config: TrainConfig, classes: list[str]) -> tuple[Any, Any, Split]:
    """The network with a fresh head, its data config and its trunk/tail split."""
    from sortsight.models import create_model

    model, data_config = create_model(
        name, classes, input_size=size or config.image_size, pretrained=config.pretrained
    )
    return model, data_config, split_for(model, name, data_config, scratch=not config.pretrained)


def _train_candidate(
    name: str,
    size: int | None,
    config: TrainConfig,
    plan: Plan,
    data: RunData,
    out: Path,
    env: Environment,
    events: ProgressCallback,
    deadline: float | None,
    run_start: float,
) -> CandidateResult:
    """Features → head (saved: the first model) → fine-tune where it pays → WiSE mix → test → save."""
    t0 = time.perf_counter()
    model, data_config, split = build(name, size, config, list(data.classes))
    built = time.perf_counter() - t0
    side = data_config.input_size
    metrics_log = rd.MetricsLog(out, env, config.log)

    # 1. features: every image once through the frozen trunk and the pretrained tail
    job = len(data.train_paths) + len(data.valid_paths) + len(data.test_paths)
    frozen = FrozenPass(split, data_config, images=job, engine=rd.features_engine(out, config))
    order = spread_first(len(data.train_paths), _FIRST)  # the first images hold several classes
    paths = [data.train_paths[i] for i in order]
    first = frozen.run(paths[:_FIRST])  # chooses the engine; its speed (and head) gives the estimate
    _estimate(events, name, size, side, frozen, first.reindexed(order), data, plan, config)
    tr = first.concat(frozen.run(paths[_FIRST:], progress=events), _FIRST).reindexed(order)
    va = frozen.run(data.valid_paths, progress=events)
    y_train = torch.tensor([data.train_targets[i] for i in tr.kept])
    y_valid = torch.tensor([data.valid_targets[i] for i in va.kept])
    check_trainable(data.classes, y_train, y_valid)
    n_img = len(tr.kept) + len(va.kept)
    seconds_per_image = (tr.seconds + va.seconds) / max(1, n_img)

    # 2. head: logistic regression chosen on validation, refit on train + validation, saved
    k = len(data.classes)
    t_head = time.perf_counter()
    fit, head_metrics = fit_head(tr.features, y_train, va.features, y_valid, n_classes=k, seed=config.seed)
    fold(fit, split.classifier)
    head_state = state_copy(split.tail)  # the WiSE-FT end point alpha = 0 (fitted on train only)
    metrics_log.append(
        {
            "candidate": name,
            "phase": "head",
            "epoch": 0,
            "step": 0,
            **{f"val_{m}": v for m, v in head_metrics.items()},
        }
    )
    emit(
        events,
        ProgressEvent(
            "head",
            1,
            1,
            dict(head_metrics),
            0.0,
            f"Logistic-regression head: validation accuracy {head_metrics['accuracy']:.3f}",
        ),
    )
    refit: dict[str, Any] = {"applied": False, "items": len(y_train), "what": "head"}
    if plan.refit:
        fold(
            refit_head(
                fit,
                torch.cat([tr.features, va.features]),
                torch.cat([y_train, y_valid]),
                n_classes=k,
                seed=config.seed,
            ),
            split.classifier,
        )
        refit = {"applied": True, "items": n_img, "what": "head", "C": fit.C, "scaling": fit.scaling}
    # what this run measured, remembered for the next estimate on this machine (speeds.py)
    speeds: dict[str, Any] = {
        "seconds_per_image": seconds_per_image,
        "head_seconds_per_item": (time.perf_counter() - t_head) / max(1, n_img),
        "setup_seconds": built + frozen.setup_seconds,
        "engine": frozen.engine,
        "fine_tunes": split.fine_tunes,
        "cores": torch.get_num_threads(),
    }
    final_state = state_copy(split.tail)
    engine: dict[str, Any] = {
        "features_engine": frozen.engine,
        **{k2: round(v, 5) for k2, v in frozen.timing.items()},
        "features_seconds_per_image": round(seconds_per_image, 5),
        "split": split.kind,
        "threads": torch.get_num_threads(),
        "cpu": env.cpu,
        "processes": env.world,
    }
    result = CandidateResult(
        name,
        side,
        "head",
        head_metrics,
        head_metrics,
        out / "model",
        stopped="head_only",
        engine=engine,
        refit=refit,
    )
    if env.is_main:
        t_save = time.perf_counter()
        rd.save_model(model, data_config, data, config, result)
        speeds["save_seconds"] = time.perf_counter() - t_save
    result.first_model_seconds = time.perf_counter() - run_start
    _announce(events, result, "head")

    # 3. fine-tune the tail where it pays, from the head fitted on train only (honest validation)
    go, why, epochs = worth_finetuning(plan, head_metrics, len(y_valid))
    cap_at: float | None = None
    if not split.fine_tunes:  # backbones side by side: the head on their features is the model
        go, why, epochs = False, "side_by_side", 0
    if go:
        split.tail.load_state_dict(head_state)
        t_warm = time.perf_counter()
        key = speed_cache.speed_key(name, size, config)
        batch_size, precision, step_timing = warm_up(split, tr.acts, y_train, config, speed_key=key)
        speeds.update(
            step_timing,
            warm_up_seconds=time.perf_counter() - t_warm,
            precision=precision.dtype,
            batch_size=batch_size,
        )
        engine.update(
            precision=precision.dtype, precision_reason=precision.reason, batch_size=batch_size, **step_timing
        )

        def finetune_seconds(n_epochs: int) -> float:
            return estimate_seconds(
                {"seconds_per_image": seconds_per_image, **step_timing},
                n_train=len(y_train),
                n_valid=0,
                n_test=0,
                views=plan.views,
                epochs=n_epochs,
                batch_size=batch_size,
                world=env.world,
            )["finetune"]

        one, two = finetune_seconds(1), finetune_seconds(2)
        left = None if deadline is None else deadline - time.perf_counter()
        go, why, epochs = worth_finetuning(
            plan,
            head_metrics,
            len(y_valid),
            epoch_seconds=two - one,
            fixed_seconds=2 * one - two,  # the augmented views' pass
            spent=result.first_model_seconds,
            time_left=left,
        )
        resumed = latest_checkpoint_state(out / "checkpoints") if config.resume else None
        if resumed is not None:  # keep the decision the interrupted run made
            go, why, epochs = True, "", int(resumed.get("epochs", config.epochs))
        engine["finetune_epochs"] = epochs
        engine["finetune_estimate_seconds"] = round(finetune_seconds(epochs) if go else 0.0, 1)
        # auto's share is a cap, not a forecast: a step timed once can be off, so the loop also
        # stops before an epoch that would end past it, at the speed the epochs then show
        if plan.finetune == "auto" and left is None and resumed is None:
            cap_at = time.perf_counter() + FINETUNE_SHARE * result.first_model_seconds
    result.stopped = why or "completed"
    if go:
        emit(
            events,
            ProgressEvent(
                "train",
                0,
                0,
                {"seconds": engine["finetune_estimate_seconds"], "epochs": epochs},
                engine["finetune_estimate_seconds"],
                (
                    "Training the whole network from random weights"
                    if split.kind == "scratch"
                    else "Fine-tuning to improve it"
                )
                + f" (Ctrl-C keeps the current best): at most {epochs} "
                f"epochs, about {human(engine['finetune_estimate_seconds'])} ({precision.dtype}, "
                f"{torch.get_num_threads()} threads)",
            ),
        )
        acts_train = [tr.acts]
        if plan.views and (deadline is None or time.perf_counter() < deadline):
            from sortsight.training.views import build_views

            kept = [data.train_paths[i] for i in tr.kept]
            pixels = build_views(
                kept,
                data_config,
                views=plan.views,
                preset=config.augmentation,
                seed=config.seed,
                progress=events,
            )
            for view in pixels:
                acts_train.append(
                    torch.cat([frozen(view[j : j + 32])[0].half() for j in range(0, len(view), 32)])
                )
        from dataclasses import replace

        ft = finetune(
            split,
            acts_train,
            y_train,
            va.acts,
            y_valid,
            head_metrics,
            config=replace(config, batch_size=batch_size, epochs=epochs),
            precision=precision,
            out=out,
            env=env,
            metrics_log=metrics_log,
            name=name,
            progress=events,
            deadline=deadline,
            cap_at=cap_at,
            features_engine=frozen.engine,
        )
        result.epochs, result.steps, result.stopped = ft.epochs, ft.steps, ft.stopped
        # 4. WiSE-FT: the mixing weight with the best validation score (alpha 0 is the head itself);
        # from random weights the head on untrained features is no end point: the network is the model
        if ft.best_state is not None and split.kind == "scratch":
            final_state, result.wise_alpha, result.metrics = ft.best_state, 1.0, dict(ft.best)
            result.chosen = "finetune"
            result.refit = {
                "applied": False,
                "items": len(y_train),
                "what": "none",
                "why": "trained from random weights: the best epoch on validation is the model",
            }
        elif ft.best_state is not None:
            t_wise = time.perf_counter()
            alpha, mixed = choose_wise(split, head_state, ft.best_state, va.acts, y_valid, head_metrics)
            speeds["eval_seconds_per_item"] = (time.perf_counter() - t_wise) / max(
                1, (len(WISE_ALPHAS) - 1) * len(y_valid)
            )
            result.wise_alpha, result.metrics = alpha, mixed
            if alpha > 0:
                final_state = wise(head_state, ft.best_state, alpha)
                result.chosen = "finetune" if alpha == 1 else "wise"
                result.refit = {
                    "applied": False,
                    "items": len(y_train),
                    "what": "none",
                    "why": "fine-tuned weights kept as chosen on validation",
                }
        split.tail.load_state_dict(final_state)

    # 5. test: the kept model on the held-out test split, the honest headline
    if data.test_paths:
        te = frozen.run(data.test_paths, progress=events, phase="test")
        if te.kept:
            y_test = torch.tensor([data.test_targets[i] for i in te.kept])
            if result.chosen == "head" or not split.fine_tunes:
                # the tail is the pretrained one: its pooled features are what the frozen pass
                # gave, so the classifier alone scores them (no second pass through the tail);
                # side by side, the features are the activations, at full precision
                with torch.no_grad():
                    scores = split.classifier(te.features.float())
            else:
                scores = logits(split, te.acts)
            result.test_metrics = metrics(scores, y_test)
    result.seconds = time.perf_counter() - t0
    if env.is_main:
        rd.save_model(model, data_config, data, config, result)
        rd.mark_finished(out, result)
        _announce(events, result, "final")
        _remember_speeds(speeds, data_config, data, name, size, config)
    env.wait()
    return result


def _remember_speeds(
    measured: dict[str, Any],
    data_config: Any,
    data: RunData,
    name: str,
    size: int | None,
    config: TrainConfig,
) -> None:
    """Keep what this run measured for the next estimate of the same model on this machine."""
    record = {**measured, **speed_cache.geometry(data_config)}
    record["decode_seconds_per_image"] = speed_cache.decode_seconds(data.train_paths, record) or 0.0
    speed_cache.remember(record, speed_cache.speed_key(name, size, config), source="run")


def _estimate(
    events: ProgressCallback,
    name: str,
    size: int | None,
    side: int,
    frozen: FrozenPass,
    first: Frozen,
    data: RunData,
    plan: Plan,
    config: TrainConfig,
) -> None:
    """The ``estimate`` event: the time to the model from the feature engine's speed measured on
    the first images, plus the head's fits and the model's saving as an earlier run of this model
    measured them on this machine; none remembered, the fits are timed on the first images and the
    save's imports paid now (the save then has them)."""
    n_all = len(data.train_paths) + len(data.valid_paths) + len(data.test_paths)
    per_image = first.seconds / max(1, len(first.kept))
    known = speed_cache.recall(speed_cache.speed_key(name, size, config)) or {}
    if "head_seconds_per_item" in known:
        head = float(known["head_seconds_per_item"]) * (len(data.train_paths) + len(data.valid_paths))
    else:
        y = torch.tensor([data.train_targets[i] for i in first.kept])
        head = head_seconds(first.features, y, len(data.train_paths), refit=plan.refit, seed=config.seed)
    head += float(known["save_seconds"]) if "save_seconds" in known else rd.save_imports()
    seconds = per_image * (n_all - len(first.kept)) + head
    ft = " (fine-tuning, where it pays, comes on top)" if plan.epochs and frozen.split.fine_tunes else ""
    emit(
        events,
        ProgressEvent(
            "estimate",
            0,
            0,
            {"seconds": round(seconds, 1)},
            seconds,
            f"{name} at {side}px: estimated about {human(seconds)} to the model ({frozen.engine} features, "
            f"{torch.get_num_threads()} threads){ft}",
        ),
    )


def _announce(events: ProgressCallback, result: CandidateResult, stage: str) -> None:
    """The ``model_ready`` event: a complete, loadable ``model/`` is on disk."""
    emit(
        events,
        ProgressEvent(
            "model_ready",
            0,
            0,
            {
                "model_dir": str(result.model_dir),
                "stage": stage,
                "val_accuracy": result.metrics.get("accuracy"),
            },
            None,
            # the head kept as the final model was announced already: say it once
            ""
            if stage == "final" and result.chosen == "head"
            else f"model ready: {result.model_dir}" + ("" if stage == "head" else f" ({result.chosen})"),
        ),
    )
