"""Fine-tuning for tags: the single-label loop (:mod:`sortsight.training.loop`) with binary
cross-entropy per tag, the best epoch and the WiSE-FT mix kept by validation mAP.

:func:`sortsight.multilabel.train_multilabel` calls :func:`finetune_tags` after the tag head is
fitted; the estimate and the learning-rate finder time and train with :func:`tag_objective`.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from sortsight.config import TrainConfig
from sortsight.progress import ProgressCallback, ProgressEvent, emit
from sortsight.tagmetrics import sigmoid
from sortsight.training import distributed as _dist
from sortsight.training import plan as _plan

__all__ = ["finetune_tags", "tag_objective"]


def tag_objective() -> Any:
    """Fine-tuning's objective for tags: binary cross-entropy per tag, the epoch and the WiSE-FT
    mix kept by validation mAP (it does not depend on the thresholds, chosen afterwards)."""
    import torch.nn.functional as F

    from sortsight.training.loop import Objective

    def score(logits: Any, y: Any) -> dict[str, float]:
        from sklearn.metrics import average_precision_score

        scores, truth = sigmoid(logits.float().numpy()), y.numpy() > 0.5
        ap = [
            average_precision_score(truth[:, t], scores[:, t])
            for t in range(truth.shape[1])
            if truth[:, t].any()
        ]
        return {
            "map": float(np.mean(ap)) if ap else 0.0,
            "loss": float(F.binary_cross_entropy_with_logits(logits.float(), y.float())),
        }

    return Objective(F.binary_cross_entropy_with_logits, score, "map")


def finetune_tags(
    config: TrainConfig,
    plan: _plan.Plan,
    split: Any,
    acts: Any,
    n_train: int,
    y_train: np.ndarray,
    y_valid: np.ndarray,
    head_metrics: dict[str, float],
    *,
    seconds_per_image: float,
    spent: float,
    deadline: float | None,
    env: _dist.Environment,
    metrics_log: Any,
    progress: ProgressCallback | None,
    engine: dict[str, Any],
) -> dict[str, Any]:
    """Fine-tune the tail on the trunk activations the frozen pass kept, when ``plan`` and the
    measured speed say it pays (:func:`sortsight.training.plan.worth_finetuning`, with the head's
    images-with-a-wrong-tag as its errors). ``auto`` fine-tunes a tagger only within a time
    budget: on the benchmark (docs/multilabel.md) the head alone met the goal, +2.1 micro-F1
    points over the probe in 0.50x its time, while fine-tuning added 0.9 points for 3.9x the
    head's time. Returns ``stopped``, ``epochs``, ``steps`` and, when
    a mix with the fine-tuned weights beat the head's validation mAP, ``alpha`` and the kept
    model's validation ``scores`` (the tail then holds its weights)."""
    from dataclasses import replace

    import torch

    from sortsight.training.head import wise
    from sortsight.training.loop import choose_wise, finetune, logits, state_copy, warm_up

    if plan.finetune == "auto" and deadline is None:  # measured: the head alone meets the goal
        return {"stopped": "no_time_budget"}
    go, why, epochs = _plan.worth_finetuning(plan, head_metrics, len(y_valid))
    if not go or not split.fine_tunes:
        return {"stopped": why or "head_only"}
    objective = tag_objective()
    acts_train, acts_valid = acts[:n_train], acts[n_train:]
    yt = torch.from_numpy(np.asarray(y_train, dtype=np.float32))
    yv = torch.from_numpy(np.asarray(y_valid, dtype=np.float32))
    head_state = state_copy(split.tail)
    head_scores = objective.score(logits(split, acts_valid), yv)
    batch_size, precision, timing = warm_up(split, acts_train, yt, config, objective)

    def seconds(n_epochs: int) -> float:
        return _plan.estimate_seconds(
            {"seconds_per_image": seconds_per_image, **timing},
            n_train=len(yt),
            n_valid=0,
            n_test=0,
            views=0,
            epochs=n_epochs,
            batch_size=batch_size,
            world=env.world,
        )["finetune"]

    left = None if deadline is None else deadline - time.perf_counter()
    go, why, epochs = _plan.worth_finetuning(
        plan, head_metrics, len(y_valid), epoch_seconds=seconds(1), spent=spent, time_left=left
    )
    engine.update(precision=precision.dtype, batch_size=batch_size, finetune_epochs=epochs if go else 0)
    if not go:
        return {"stopped": why}
    cap_at = (
        time.perf_counter() + _plan.FINETUNE_SHARE * spent
        if plan.finetune == "auto" and left is None
        else None
    )
    estimate = seconds(epochs)
    engine["finetune_estimate_seconds"] = round(estimate, 1)
    emit(
        progress,
        ProgressEvent(
            "train",
            0,
            0,
            {"seconds": estimate, "epochs": epochs},
            estimate,
            f"Fine-tuning for the tags (Ctrl-C keeps the tag head): at most {epochs} epochs, "
            f"about {_plan.human(estimate)} ({precision.dtype}, {torch.get_num_threads()} threads)",
        ),
    )
    ft = finetune(
        split,
        [acts_train],
        yt,
        acts_valid,
        yv,
        head_scores,
        # weight averaging was measured on single-label sets only: the tagger keeps its best epoch
        config=replace(config, batch_size=batch_size, epochs=epochs, weight_averaging=False),
        precision=precision,
        out=config.run_dir,
        env=env,
        metrics_log=metrics_log,
        name=config.model,
        progress=progress,
        deadline=deadline,
        cap_at=cap_at,
        objective=objective,
    )
    out: dict[str, Any] = {"stopped": ft.stopped, "epochs": ft.epochs, "steps": ft.steps}
    engine["finetune_best_map"] = ft.best.get("map")
    if ft.best_state is None:
        split.tail.load_state_dict(head_state)
        return out
    alpha, _ = choose_wise(split, head_state, ft.best_state, acts_valid, yv, head_scores, objective)
    engine["wise_alpha"] = alpha
    if alpha == 0:
        split.tail.load_state_dict(head_state)
        return out
    split.tail.load_state_dict(wise(head_state, ft.best_state, alpha))
    return {**out, "alpha": alpha, "scores": sigmoid(logits(split, acts_valid).numpy())}
