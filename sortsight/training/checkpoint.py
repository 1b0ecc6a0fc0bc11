"""Atomic, pickle-free checkpoints for resume: safetensors for tensors, JSON for the rest.

A checkpoint is a folder ``checkpoints/epoch-0003/`` holding ``model.safetensors`` (the trained
layers now), ``best.safetensors`` (the best layers so far), ``optimizer.safetensors`` and
``state.json``. It is written under a temporary name and renamed into place, so a ``kill -9`` at
any moment leaves either the previous checkpoint or the new one — never half of one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from sortsight._outputs import STAGED_NAME
from sortsight.fileops import atomic_write_text, staged_folder

__all__ = ["Checkpoint", "load_latest_checkpoint", "save_checkpoint", "write_json_atomic"]

Checkpoint = tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` through a temporary file and a rename."""
    atomic_write_text(path, json.dumps(data, indent=2, default=str))


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().clone() for k, v in state.items()}


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[Any]]:
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for idx, per_param in sd["state"].items():
        for key, value in per_param.items():
            tensors[f"{idx}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    return _contiguous(tensors), sd["param_groups"]


def restore_optimizer(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list[Any]
) -> None:
    """Load what :func:`save_checkpoint` stored back into ``optimizer``."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def save_checkpoint(
    folder: Path,
    epoch: int,
    *,
    model_state: dict[str, torch.Tensor],
    best_state: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    keep: int = 1,
    averaged: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write checkpoint ``epoch`` atomically and keep only the newest ``keep`` checkpoints
    (``averaged``: the running mean of the weights, when fine-tuning averages them)."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"epoch-{epoch:04d}"
    with staged_folder(final) as tmp:  # a re-run of the same epoch after a resume replaces it
        save_file(_contiguous(model_state), str(tmp / "model.safetensors"))
        save_file(_contiguous(best_state), str(tmp / "best.safetensors"))
        if averaged is not None:
            save_file(_contiguous(averaged), str(tmp / "averaged.safetensors"))
        opt_tensors, groups = _optimizer_tensors(optimizer)
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        (tmp / "state.json").write_text(
            json.dumps({**state, "epoch": epoch, "optimizer_groups": groups}, indent=2, default=str),
            encoding="utf-8",
        )
    done = sorted(p for p in folder.glob("epoch-*") if (p / "state.json").is_file())
    for old in done[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in folder.iterdir():  # half-written or set aside by a killed run (older runs: .tmp-epoch-*)
        if STAGED_NAME.match(stale.name) or stale.name.startswith(".tmp-epoch-"):
            shutil.rmtree(stale, ignore_errors=True)
    return final


def _latest(folder: Path) -> Path | None:
    """The newest complete checkpoint folder (its ``state.json`` is written last), or None."""
    done = (
        sorted(p for p in folder.glob("epoch-*") if (p / "state.json").is_file()) if folder.is_dir() else []
    )
    return done[-1] if done else None


def latest_checkpoint_state(folder: Path) -> dict[str, Any] | None:
    """The ``state.json`` of the newest complete checkpoint (no tensors read), or None."""
    last = _latest(folder)
    return None if last is None else dict(json.loads((last / "state.json").read_text(encoding="utf-8")))


def load_latest_checkpoint(folder: Path) -> Checkpoint | None:
    """(model_state, best_state, optimizer_tensors, state) of the newest complete checkpoint, or None."""
    last = _latest(folder)
    if last is None:
        return None
    state = json.loads((last / "state.json").read_text(encoding="utf-8"))
    return (
        load_file(str(last / "model.safetensors")),
        load_file(str(last / "best.safetensors")),
        load_file(str(last / "optimizer.safetensors")),
        state,
    )


def load_latest_average(folder: Path) -> dict[str, torch.Tensor] | None:
    """The running mean of the weights kept by the newest complete checkpoint, or None."""
    last = _latest(folder)
    if last is None or not (last / "averaged.safetensors").is_file():
        return None
    return load_file(str(last / "averaged.safetensors"))
