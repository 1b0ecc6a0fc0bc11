"""Streaming predict at archive scale: flat memory over 100,000 images, and resume after kill -9.

What it does, in one run:

1. writes N small generated JPEGs (default 100,000; 1,000 per subfolder), or reuses ``--images``;
2. makes a model folder from the bundled EfficientNet-Lite0 weights (2-label head; the labels
   do not matter for streaming) unless ``--model`` is given;
3. runs ``sortsight predict MODEL IMAGES --csv predictions.csv`` as a subprocess, samples the
   resident memory (RSS) of its process tree every ``--interval`` seconds, and ``kill -9``\\ s it
   once ``--kill-at`` of the images are in the CSV;
4. runs the same command again: it must finish the job; then checks that every image is in the
   CSV exactly once;
5. prints images/s, peak RSS of each run and RSS over time (flat, not growing with N).

Usage::

    python benchmarks/stream_scale.py                       # 100,000 images (tens of minutes)
    python benchmarks/stream_scale.py -n 5000 --keep-images /tmp/imgs
    python benchmarks/stream_scale.py -n 2000 -- --engine eager --batch-size 16

Arguments after ``--`` go to ``sortsight predict`` unchanged.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

PER_FOLDER = 1000


def generate_images(root: Path, n: int, *, size: int = 64, seed: int = 0) -> list[Path]:
    """``n`` small JPEGs under ``root/<shard>/``; existing ones are kept (so a set can be reused)."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    paths = []
    for i in range(n):
        shard = root / f"{i // PER_FOLDER:05d}"
        path = shard / f"img_{i:07d}.jpg"
        paths.append(path)
        if path.exists():
            continue
        shard.mkdir(parents=True, exist_ok=True)
        img = Image.new("RGB", (size, size), tuple(rng.randint(0, 255) for _ in range(3)))  # type: ignore[arg-type]
        a, b = rng.randint(0, size // 2), rng.randint(size // 2, size)
        ImageDraw.Draw(img).ellipse([a, a, b, b], fill=tuple(rng.randint(0, 255) for _ in range(3)))
        img.save(path, quality=85)
    return paths


def make_model(out: Path) -> Path:
    """A model folder from the bundled Lite0 weights with an untrained 2-label head."""
    from sortsight.model_folder import save_model_folder
    from sortsight.models import create_model

    model, data_config = create_model("efficientnet_lite0", ["a", "b"])
    return save_model_folder(model, ["a", "b"], data_config, out, name="efficientnet_lite0")


def _tree_rss(proc: object) -> tuple[int, int]:
    """(RSS of the process, RSS of it and all its children) in bytes; (0, 0) when it is gone."""
    import psutil

    assert isinstance(proc, psutil.Process)
    try:
        own = proc.memory_info().rss
        total = own
        for child in proc.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                pass
        return own, total
    except psutil.Error:
        return 0, 0


def count_rows(csv_path: Path) -> int:
    """Data rows in a predictions CSV (fast: counts lines; top_k JSON has no newlines)."""
    if not csv_path.exists():
        return 0
    with open(csv_path, "rb") as fh:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
    return max(0, lines - 1)


@dataclass
class RunStats:
    """What one ``sortsight predict`` process did."""

    seconds: float = 0.0
    rows_before: int = 0
    rows_after: int = 0
    returncode: int | None = None
    killed: bool = False
    samples: list[tuple[float, int, int, int]] = field(default_factory=list)  # (t, rows, rss, tree rss)

    @property
    def peak_rss(self) -> int:
        return max((s[2] for s in self.samples), default=0)

    @property
    def peak_tree_rss(self) -> int:
        return max((s[3] for s in self.samples), default=0)

    @property
    def images_per_second(self) -> float:
        """Over the whole run, start-up (imports, model load) included."""
        return (self.rows_after - self.rows_before) / self.seconds if self.seconds else 0.0

    @property
    def steady_images_per_second(self) -> float:
        """From the first row written to the last sample: the streaming rate itself."""
        moving = [(t, rows) for t, rows, _, _ in self.samples if rows > self.rows_before]
        if len(moving) < 2 or moving[-1][0] <= moving[0][0]:
            return 0.0
        return (moving[-1][1] - moving[0][1]) / (moving[-1][0] - moving[0][0])


def run_predict(cmd: list[str], csv_path: Path, *, kill_at_rows: int | None, interval: float) -> RunStats:
    """Run ``cmd`` while sampling memory; ``kill -9`` it once the CSV holds ``kill_at_rows`` rows."""
    import psutil

    stats = RunStats(rows_before=count_rows(csv_path))
    log = csv_path.with_suffix(".stderr.txt")
    start = time.perf_counter()
    with open(log, "wb") as err:  # a file, not a pipe: a full pipe would block the job
        popen = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    proc = psutil.Process(popen.pid)
    try:
        while popen.poll() is None:
            rows = count_rows(csv_path)
            own, tree = _tree_rss(proc)
            stats.samples.append((time.perf_counter() - start, rows, own, tree))
            if kill_at_rows is not None and rows >= kill_at_rows:
                os.kill(popen.pid, signal.SIGKILL)  # kill -9 of the predict process itself
                stats.killed = True
                popen.wait()
                break
            time.sleep(interval)
    finally:
        if popen.poll() is None:
            popen.kill()
        try:  # its DataLoader workers, if any, must not outlive it (same session id = ours)
            os.killpg(popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        popen.wait()
    stats.seconds = time.perf_counter() - start
    stats.rows_after = count_rows(csv_path)
    stats.returncode = popen.returncode
    if not stats.killed and popen.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:]
        raise SystemExit(f"sortsight predict failed (exit {popen.returncode}):\n{tail}")
    return stats


def check_once(csv_path: Path, expected: list[Path]) -> tuple[int, int, int, Counter]:
    """(missing, duplicated, unexpected, statuses) of the CSV against the expected images."""
    want = {os.path.realpath(p) for p in expected}
    seen: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    with open(csv_path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            seen[os.path.realpath(row["path"])] += 1
            statuses[row.get("status", "")] += 1
    missing = len(want - set(seen))
    duplicated = sum(1 for c in seen.values() if c > 1)
    unexpected = len(set(seen) - want)
    return missing, duplicated, unexpected, statuses


def _mb(n: int) -> str:
    return f"{n / 2**20:,.0f} MB"


def timeline(stats: RunStats, points: int = 8) -> str:
    """RSS at evenly spaced moments of a run, as ``rows: MB`` pairs."""
    if not stats.samples:
        return "-"
    step = max(1, len(stats.samples) // points)
    picked = [*stats.samples[::step][:points], stats.samples[-1]]
    return "  ".join(f"{rows:,}:{_mb(tree)}" for _, rows, _, tree in picked)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="streaming sortsight predict: memory, speed, resume")
    parser.add_argument("-n", "--images-count", type=int, default=100_000, help="images (default 100,000)")
    parser.add_argument("--images", type=Path, default=None, help="keep/reuse generated images here")
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: bundled Lite0)")
    parser.add_argument("--kill-at", type=float, default=0.3, help="kill -9 when this fraction is done")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between memory samples")
    parser.add_argument("predict_args", nargs=argparse.REMAINDER, help="-- then sortsight predict options")
    args = parser.parse_args(argv)
    extra = [a for a in args.predict_args if a != "--"]

    work = Path(tempfile.mkdtemp(prefix="sortsight-stream-"))
    try:
        image_root = args.images or work / "images"
        t0 = time.perf_counter()
        paths = generate_images(image_root, args.images_count)
        prepared = time.perf_counter() - t0
        print(f"images: {len(paths):,} JPEGs 64x64 in {image_root} ({prepared:.0f}s to prepare)")
        model = args.model or make_model(work / "model")
        csv_path = work / "predictions.csv"
        cmd = [sys.executable, "-m", "sortsight", "predict", str(model), str(image_root),
               "--csv", str(csv_path), *extra]
        print("command:", " ".join(cmd))

        kill_at = int(args.kill_at * len(paths))
        first = run_predict(cmd, csv_path, kill_at_rows=kill_at, interval=args.interval)
        print(f"run 1: killed with kill -9 after {first.rows_after:,} rows, {first.seconds:.1f}s, "
              f"{first.images_per_second:.1f} img/s, peak RSS {_mb(first.peak_rss)} "
              f"(with workers {_mb(first.peak_tree_rss)})")
        second = run_predict(cmd, csv_path, kill_at_rows=None, interval=args.interval)
        print(f"run 2: resumed at {second.rows_before:,} rows, finished at {second.rows_after:,} rows in "
              f"{second.seconds:.1f}s, {second.images_per_second:.1f} img/s with start-up, "
              f"{second.steady_images_per_second:.1f} img/s streaming, peak RSS {_mb(second.peak_rss)} "
              f"(with workers {_mb(second.peak_tree_rss)})")
        print(f"RSS over run 2 (rows:RSS with workers): {timeline(second)}")
        half = [s[3] for s in second.samples[len(second.samples) // 2:]]
        early = [s[3] for s in second.samples[len(second.samples) // 10: len(second.samples) // 2]]
        if half and early:
            ratio = max(half) / max(early)
            print(f"flatness: peak RSS in the second half / first half of run 2 = {ratio:.2f}")
        missing, duplicated, unexpected, statuses = check_once(csv_path, paths)
        ok = missing == 0 and duplicated == 0 and unexpected == 0
        print(f"resume check: {len(paths):,} images, {missing} missing, {duplicated} duplicated, "
              f"{unexpected} unexpected; statuses {dict(statuses)} -> {'OK' if ok else 'FAILED'}")
        return 0 if ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
