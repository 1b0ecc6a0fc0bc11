"""A newcomer's first run, timed: ``sortsight quickstart``, and how well training estimates hold.

Default mode runs ``python -m sortsight quickstart --out FRESH`` as one process and prints

* **head ready** — seconds from the start until a usable model exists: the ``model_ready`` event of
  ``runs/fashion/events.jsonl`` when the engine writes one, else the moment a complete
  ``runs/fashion/model/`` (``config.json`` + ``model.safetensors``) first appeared (polled 4x/s);
* **total** — wall time of the whole command (model, report and sorted inbox);
* **estimate ratio** — the pre-training estimate divided by the time training then took from the
  moment the estimate was given until training ended (the ``estimate`` and ``done`` events when
  present, else the estimate in ``sortsight.json`` and the stderr lines' arrival times).

``--estimate-sets`` runs, on each benchmark set of :mod:`sets`, ``sortsight train DATA
--estimate-only --json`` and then the real ``sortsight train DATA``, and prints estimate / actual
(whole-process wall time of the train command) and the estimate's own cost as % of that run; with
``auto`` also (estimate + the most fine-tuning may add, ``finetune_seconds``) / actual, the upper
bound the studio shows, and the figure for the branch the run took (``auto`` decides after the head
whether fine-tuning pays: the estimate says "X, plus up to Y if fine-tuning pays"; a run that kept
the head is held to X, one that fine-tuned to X + Y). Each set is estimated twice: ``cold``, with
no speeds remembered (the model is built and timed), and ``warm``, from the speeds this machine
remembers (:mod:`sortsight.training.speeds`: the earlier sets' runs; on the first set, the cold
estimate's own sample). The benchmark uses a cache folder of its own (``WORK/quickstart/cache``)
whose speeds are cleared at the start. Goal of issue 16: ratio within 0.75–1.25, cost <= 5 %.

Usage::

    python benchmarks/quickstart.py                       # fresh folder under ./bench-work
    python benchmarks/quickstart.py --repeat 2 --json qs.json
    python benchmarks/quickstart.py --repeat 2 --cold     # each run without the ONNX graphs made before
    python benchmarks/quickstart.py --estimate-sets --sets fonts,scanner --scale 0.2

The machine may be shared: the CPU capability, cores and load average are printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import machine, sortsight_location
from sets import QUICK_SCALE, build
from shift import ModelWatcher, read_events, run

ESTIMATE_LINE = re.compile(r"estimated about", re.IGNORECASE)
TRAIN_END_LINE = re.compile(r"3/4 Evaluating|model ready", re.IGNORECASE)


def timed_lines(stream: Any, into: list[tuple[float, str]]) -> None:
    """Collect (arrival time, text) for every line or carriage-return update of ``stream``."""
    buf = b""
    for chunk in iter(lambda: stream.read1(4096), b""):
        buf += chunk
        *parts, buf = re.split(rb"[\r\n]", buf)
        now = time.time()
        into.extend((now, p.decode(errors="replace")) for p in parts if p.strip())
    if buf.strip():
        into.append((time.time(), buf.decode(errors="replace")))


def first_time(lines: list[tuple[float, str]], pattern: re.Pattern[str]) -> float | None:
    return next((t for t, text in lines if pattern.search(text)), None)


def quickstart_once(work: Path, log: Path) -> dict[str, Any]:
    # a folder that does not exist yet: quickstart writes an existing one's "-2" sibling instead
    out = Path(tempfile.mkdtemp(prefix="qs-", dir=work)) / "quickstart"
    run_dir = out / "runs" / "fashion"
    watcher = ModelWatcher(run_dir)
    lines: list[tuple[float, str]] = []
    started = time.time()
    watcher.start()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sortsight", "quickstart", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    reader = threading.Thread(target=timed_lines, args=(proc.stderr, lines), daemon=True)
    reader.start()
    stdout = proc.stdout.read() if proc.stdout else b""
    code = proc.wait()
    total = time.time() - started
    reader.join()
    watcher.stop.set()
    watcher.join()
    log.write_text("\n".join(f"{t - started:8.1f} {text}" for t, text in lines) + "\n" + stdout.decode())
    if code != 0:
        raise RuntimeError(f"sortsight quickstart exited {code} (log: {log})")
    events = read_events(run_dir)
    by_phase: dict[str, dict[str, Any]] = {}
    for e in events:
        by_phase.setdefault(str(e.get("phase")), e)
    info = json.loads((run_dir / "sortsight.json").read_text(encoding="utf-8"))
    if "model_ready" in by_phase:
        head_ready, head_source = float(by_phase["model_ready"]["time"]) - started, "events.jsonl"
    elif watcher.seen_at is not None:
        head_ready, head_source = watcher.seen_at - started, "model/ on disk"
    else:
        head_ready, head_source = None, "none"
    estimate: float | None
    said_at: float | None
    if "estimate" in by_phase:
        estimate, said_at = (
            float(by_phase["estimate"]["metrics"]["seconds"]),
            float(by_phase["estimate"]["time"]),
        )
    else:
        estimate = info.get("engine", {}).get("estimate_seconds")
        said_at = first_time(lines, ESTIMATE_LINE)
    ended = float(by_phase["done"]["time"]) if "done" in by_phase else first_time(lines, TRAIN_END_LINE)
    actual = ended - said_at if ended is not None and said_at is not None else None
    return {
        "head_ready_s": head_ready,
        "head_ready_source": head_source,
        "total_s": total,
        "train_s": info.get("seconds"),
        "estimate_s": estimate,
        "estimate_at_s": said_at - started if said_at is not None else None,
        "trained_after_estimate_s": actual,
        "estimate_ratio": estimate / actual if estimate and actual else None,
        "chosen": (info.get("best") or {}).get("chosen"),
        "folder": str(out),
    }


def estimate_set(name: str, data: Path, work: Path, log: Path) -> dict[str, Any]:
    """Per set: the estimate with nothing remembered (``cold``: the model built and timed), then
    with the speeds this machine remembers (``warm``: from the earlier sets' runs, or on the first
    set the cold estimate's own), then the real run."""
    py = sys.executable
    run_dir = work / "runs" / f"estimate-{name}"
    if run_dir.exists():
        shutil.rmtree(run_dir)  # this benchmark's own output from an earlier run
    estimate_cmd = [
        py,
        "-m",
        "sortsight",
        "train",
        str(data),
        "--out",
        str(run_dir),
        "--estimate-only",
        "--json",
    ]
    speeds = Path(os.environ["SORTSIGHT_CACHE"]) / "speeds.json"
    aside = speeds.with_name("speeds.json.aside")
    if speeds.is_file():
        os.replace(speeds, aside)
    cold_cost, out = run(estimate_cmd, log)
    cold = json.loads(out)
    if aside.is_file():
        os.replace(aside, speeds)  # what the runs measured, not the cold estimate's sample
    warm_cost, out = run(estimate_cmd, log)
    warm = json.loads(out)
    wrote = run_dir.exists()  # --estimate-only should write nothing; noted, then cleared for the real run
    if wrote:
        shutil.rmtree(run_dir)
    actual, _ = run([py, "-m", "sortsight", "train", str(data), "--out", str(run_dir)], log)
    # auto decides after the head whether to fine-tune: the estimate gives both figures, and the one
    # to hold is the branch the run then took (the plan alone, or the plan + fine-tuning)
    info = json.loads((run_dir / "sortsight.json").read_text(encoding="utf-8"))
    tuned = any(c.get("epochs") for c in info.get("candidates", []))
    row: dict[str, Any] = {
        "set": name,
        "train_s": actual,
        "fine_tuned": tuned,
        "estimate_only_wrote_out": wrote,
    }
    for kind, said, cost in (("cold", cold, cold_cost), ("warm", warm, warm_cost)):
        estimate = float(said["seconds"])
        finetune = float(said.get("finetune_seconds") or 0.0)  # auto: what fine-tuning may add at most
        row[kind] = {
            "speeds": [c.get("speeds") for c in said.get("candidates", [])],
            "estimate_s": estimate,
            "finetune_s": finetune,
            "cost_s": cost,
            "cost_percent": 100 * cost / actual,
            "ratio": estimate / actual,
            "ratio_with_finetune": (estimate + finetune) / actual,
            "ratio_taken_branch": (estimate + (finetune if tuned else 0.0)) / actual,
        }
    return row


def _f(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default="bench-work", help="folder for the runs")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--json", dest="json_out", help="write the figures to this JSON file")
    parser.add_argument("--estimate-sets", action="store_true", help="estimate vs actual on benchmark sets")
    parser.add_argument("--sets", default="fashion,fonts,scanner,digits", help="with --estimate-sets")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of each set's images")
    parser.add_argument(
        "--cold", action="store_true", help="remove the cached ONNX graphs before each quickstart run"
    )
    parser.add_argument("--quick", action="store_true", help="tiny sets: a smoke run, figures mean nothing")
    args = parser.parse_args(argv)
    work = Path(args.work).resolve() / "quickstart"
    (work / "logs").mkdir(parents=True, exist_ok=True)
    info = {**machine(), "load_avg_start": os.getloadavg(), "sortsight": sortsight_location()}
    print(
        f"CPU capability {info['cpu_capability']} | {info['cores']} cores | torch {info['torch']} | "
        f"{info['cpu']} | load {info['load_avg_start'][0]:.1f} | sortsight from {info['sortsight']}",
        flush=True,
    )
    rows: list[dict[str, Any]] = []
    if args.estimate_sets:
        # a cache of this benchmark's own: its ONNX graphs are kept between runs, the speeds are not
        os.environ["SORTSIGHT_CACHE"] = str(work / "cache")
        (work / "cache" / "speeds.json").unlink(missing_ok=True)
        scale = QUICK_SCALE if args.quick else args.scale
        for name in [s.strip() for s in args.sets.split(",") if s.strip()]:
            data = build(name, Path(args.work).resolve() / "sets", scale=scale)
            for rep in range(1, args.repeat + 1):
                row = estimate_set(name, data, work, work / "logs" / f"estimate-{name}-{rep}.log")
                rows.append(row)
                branch = "fine-tuned" if row["fine_tuned"] else "kept the head"
                print(f"{name:8s} #{rep}: train {row['train_s']:6.1f} s, {branch}", flush=True)
                for kind in ("cold", "warm"):
                    e = row[kind]
                    print(
                        f"    {kind} ({'/'.join(map(str, e['speeds']))}): estimate {e['estimate_s']:6.1f} s "
                        f"+ up to {e['finetune_s']:5.1f} s | taken branch / actual "
                        f"{e['ratio_taken_branch']:.2f} | cost {e['cost_s']:4.1f} s = "
                        f"{e['cost_percent']:4.1f} % of the run",
                        flush=True,
                    )
        print("goals: estimate/actual within 0.75–1.25, cost ≤ 5 % of the run")
    else:
        for rep in range(1, args.repeat + 1):
            if args.cold:  # a machine's first run: no ONNX graph made before (the speeds are kept)
                from sortsight.fileops import cache_dir

                for graph in (cache_dir() / "onnx").glob("*.onnx*"):
                    graph.unlink()
            row = quickstart_once(work, work / "logs" / f"quickstart-{rep}.log")
            rows.append(row)
            print(
                f"quickstart #{rep}: head ready {_f(row['head_ready_s'], '.1f')} s "
                f"({row['head_ready_source']}) | "
                f"total {row['total_s']:.1f} s | estimate {_f(row['estimate_s'], '.1f')} s vs "
                f"{_f(row['trained_after_estimate_s'], '.1f')} s trained after it: ratio "
                f"{_f(row['estimate_ratio'], '.2f')} | kept {row['chosen']}",
                flush=True,
            )
        print("goal: model, report and sorted inbox ≤ 60 s; estimate/actual within 0.75–1.25")
    info["load_avg_end"] = os.getloadavg()
    print(f"load average {info['load_avg_start'][0]:.1f} at start, {info['load_avg_end'][0]:.1f} at end")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"machine": info, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
