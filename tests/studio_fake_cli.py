"""A quick stand-in for the sortsight CLI, used by the studio's API tests through ``create_app(cli=...)``.

It writes the same files as the real commands (run folder with ``events.jsonl`` as the
library/studio contract says, evaluation.json, predictions.csv) in milliseconds, so the API tests
exercise the studio, not training; ``train --estimate-only --json`` prints ``{"seconds": …}``;
``train --lr-find --json`` writes ``lr_find.png`` in the working folder and prints the suggestions.
``FAKE_CLI_MODE`` in the environment makes it ``fail`` (exit 1 with an ``Error:`` line) or
``sleep`` (run until stopped); ``FAKE_CLI_GATE=PATH`` holds training after the first model is
ready until PATH exists.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from pathlib import Path


def _opt(args: list[str], name: str, default: str | None = None) -> str | None:
    return args[args.index(name) + 1] if name in args else default


class Events:
    """Writes ``RUN/events.jsonl`` exactly as the contract between the library and the studio says:
    one ``{"time", "phase", "step", "total", "metrics", "eta", "message"}`` object per line."""

    def __init__(self, run: Path) -> None:
        self.path = run / "events.jsonl"

    def __call__(
        self,
        phase: str,
        step: int = 0,
        total: int = 0,
        eta: float | None = None,
        message: str = "",
        **metrics: object,
    ) -> None:
        event = {"time": time.time(), "phase": phase, "step": step, "total": total, "metrics": metrics}
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({**event, "eta": eta, "message": message}) + "\n")


def _wait_for_gate() -> None:
    """With FAKE_CLI_GATE=PATH, wait (at most 60 s) until PATH exists: a test holds training there."""
    gate = os.environ.get("FAKE_CLI_GATE")
    deadline = time.monotonic() + 60
    while gate and not Path(gate).exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def train(args: list[str]) -> int:
    data = Path(args[0])
    mode = os.environ.get("FAKE_CLI_MODE", "")
    if "--estimate-only" in args:
        if mode == "fail":
            print("Error: The model could not be measured.", file=sys.stderr)
            return 1
        print("efficientnet_lite0 at 224 px: about 3 s (fp32)", file=sys.stderr)  # progress goes to stderr
        estimate = {"seconds": 3.0, "finetune_seconds": 6.0}  # as the real one: auto's fine-tuning apart
        print(json.dumps(estimate, indent=2) if "--json" in args else "about 3 s")
        return 0
    if "--lr-find" in args:  # like the real one: the plot lands in the working folder
        if mode == "fail":
            print("Error: The learning-rate test stopped after too few steps.", file=sys.stderr)
            return 1
        from PIL import Image

        Image.new("RGB", (60, 36), (51, 101, 138)).save("lr_find.png")
        plot = str(Path("lr_find.png").resolve())
        print(json.dumps({"suggested": 0.002, "valley": 0.002, "steep": 0.01, "plot": plot}, indent=2))
        return 0
    run = Path(_opt(args, "--out") or "run")
    if mode == "fail":
        print("loading…")
        print("Error: Class 'dogs' has 1 image; add images or lower valid_split.", file=sys.stderr)
        return 1
    epochs = int(_opt(args, "--epochs", "2") or 2)
    run.mkdir(parents=True, exist_ok=True)
    event = Events(run)
    classes = sorted(p.name for p in data.iterdir() if p.is_dir())
    event("estimate", 0, 0, 3.0, "efficientnet_lite0 at 224px: estimated about 3 s", seconds=3.0)
    event("cache", 6, 12, 1.5)
    event("features", 12, 12, 0.0)
    candidates = int(_opt(args, "--candidates", "1") or 1)
    if candidates > 1:  # like the real engine: one folder per candidate, then leaderboard.json
        rows = []
        for i, slug in enumerate(("efficientnet_lite0", "efficientnet_lite1")[:candidates]):
            out = run / "candidates" / slug
            out.mkdir(parents=True)
            with open(out / "metrics.jsonl", "w", encoding="utf-8") as fh:
                for epoch in range(epochs + 1):
                    fh.write(
                        json.dumps({"candidate": slug, "epoch": epoch, "val_accuracy": 0.5 + 0.1 * i}) + "\n"
                    )
            rows.append({"rank": 2 - i, "model": slug, "val_accuracy": 0.5 + 0.1 * i, "model_dir": str(out)})
        (run / "leaderboard.json").write_text(json.dumps(rows[::-1]), encoding="utf-8")
    # the head (epoch 0) scores 0.8; fine-tuning never beats it, so the head is kept
    scores = [0.8] + [0.5 + 0.1 * epoch for epoch in range(1, epochs + 1)]
    model = run / "model"
    with open(run / "metrics.jsonl", "a", encoding="utf-8") as fh:
        for epoch, accuracy in enumerate(scores):
            row = {
                "candidate": "efficientnet_lite0",
                "epoch": epoch,
                "val_accuracy": accuracy,
                "val_loss": 1.0 / (epoch + 1),
            }
            fh.write(json.dumps(row) + "\n")
            fh.flush()
            if epoch == 0:
                event("head", 1, 1, None, "", accuracy=accuracy)
                model.mkdir(exist_ok=True)
                config = {"id2label": dict(enumerate(classes))}
                (model / "config.json").write_text(json.dumps(config), encoding="utf-8")
                (model / "model.safetensors").write_bytes(b"not really weights")
                event("model_ready", model_dir=str(model), stage="head", val_accuracy=accuracy)
                _wait_for_gate()
            else:
                event("validate", epoch, epochs, 2.0 * (epochs - epoch), "", **row)
            if mode == "sleep":
                time.sleep(60)
    event("model_ready", model_dir=str(model), stage="final", val_accuracy=0.8)
    (run / "sortsight.json").write_text(
        json.dumps(
            {
                "data_path": str(data),
                "status": "done",
                "candidates": [
                    {
                        "rank": 1,
                        "model": "efficientnet_lite0",
                        "image_size": 224,
                        "val_accuracy": 0.8,
                        "chosen": "head",
                        "stopped": "early_stopping",
                        "seconds": 1.5,
                        "model_dir": str(model),
                    }
                ],
            }
        ),
        encoding="utf-8",
    )
    event("done", 1, 1, 0.0, f"Kept efficientnet_lite0 (head) in {model}", chosen="head", val_accuracy=0.8)
    return 0


def evaluate(args: list[str]) -> int:
    run = Path(args[0])
    data = Path(json.loads((run / "sortsight.json").read_text())["data_path"])
    classes = sorted(p.name for p in data.iterdir() if p.is_dir())
    first = sorted((data / classes[0]).iterdir())[:2]
    predictions = [
        {"path": str(p), "true": classes[0], "predicted": classes[1], "probability": 0.8, "loss": 1.6 + i}
        for i, p in enumerate(first)
    ]
    predictions.append(
        {
            "path": str(sorted((data / classes[1]).iterdir())[0]),
            "true": classes[1],
            "predicted": classes[1],
            "probability": 0.9,
            "loss": 0.1,
        }
    )
    (run / "evaluation.json").write_text(
        json.dumps(
            {
                "labels": classes,
                "split": "validation",
                "note": "no test split: the validation split was used",
                "metrics": {"accuracy": 0.8, "f1_macro": 0.79, "n_images": 10},
                "confusion_matrix": [[3, 2], [0, 5]],
                "top_losses": predictions,
                "predictions": predictions,
            }
        ),
        encoding="utf-8",
    )
    (run / "report.html").write_text("<!doctype html><title>report</title>", encoding="utf-8")
    return 0


def predict(args: list[str]) -> int:
    model, source = Path(args[0]), Path(args[1])
    out = Path(_opt(args, "--csv") or "predictions.csv")
    threshold = float(_opt(args, "--threshold", "0") or 0)
    files = sorted(p for p in source.rglob("*") if p.is_file())
    with open(out, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "score", "top_k", "status", "model"])
        for i, path in enumerate(files):
            score = 0.9 if i % 2 == 0 else 0.4
            status = "ok" if score >= threshold else "unsure"
            top = [{"label": "cats", "score": score}, {"label": "dogs", "score": 1 - score}]
            writer.writerow([str(path), "cats", f"{score:.4f}", json.dumps(top), status, str(model)])
    sort_dir = _opt(args, "--sort-into")
    if sort_dir:
        (Path(sort_dir) / "cats").mkdir(parents=True, exist_ok=True)
        for path in files:
            (Path(sort_dir) / "cats" / path.name).write_bytes(path.read_bytes())
    return 0


def check(args: list[str]) -> int:
    data, out = Path(args[0]), Path(_opt(args, "--doctor-out") or "doctor")
    out.mkdir(parents=True, exist_ok=True)
    suspect = sorted((data / "cats").iterdir())[0]
    report = {
        "kind": "sortsight-doctor",
        "root": str(data),
        "n_images": 12,
        "classes": ["cats", "dogs"],
        "summary": {
            "images": 12,
            "exact_duplicate_groups": 1,
            "near_duplicate_groups": 0,
            "leakage": 1,
            "label_conflicts": 0,
            "label_issues": 1,
            "quality": {"dark": 1},
        },
        "duplicates": [
            {
                "kind": "exact",
                "paths": ["cats/cats_1.png", "cats/cats_2.png"],
                "labels": ["cats", "cats"],
                "splits": ["train", "validation"],
                "leakage": True,
                "label_conflict": False,
            }
        ],
        "label_issues": [
            {
                "rank": 1,
                "path": str(suspect.relative_to(data)),
                "label": "cats",
                "suggested_label": "dogs",
                "label_score": 0.1,
                "suggested_score": 0.9,
            }
        ],
        "quality": [
            {"path": "dogs/dogs_0.png", "label": "dogs", "issue": "dark", "value": 5.0, "threshold": 20.0}
        ],
        "notes": [],
    }
    (out / "doctor.json").write_text(json.dumps(report), encoding="utf-8")
    return 0


def main() -> int:
    command, *args = sys.argv[1:]
    return {"train": train, "evaluate": evaluate, "predict": predict, "check": check}[command](args)


if __name__ == "__main__":
    sys.exit(main())
