"""Streaming predict: rows reach the disk batch by batch, and after ``kill -9`` the same command
finishes the job — every image exactly once in predictions.csv and in the sorted folder.

The 100,000-image version of this (with peak memory over time) is benchmarks/stream_scale.py.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

N_IMAGES = 300


@pytest.fixture(scope="module")
def many_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 small noisy PNGs in three subfolders (noise makes decoding cost a little, as real photos do)."""
    import numpy as np

    root = tmp_path_factory.mktemp("scale") / "inbox"
    rng = np.random.default_rng(0)
    for i in range(N_IMAGES):
        folder = root / f"box{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 255, size=(96, 96, 3), dtype=np.uint8)
        pixels[:, :, i % 3] = 220  # a dominant colour per folder
        Image.fromarray(pixels).save(folder / f"scan_{i:04d}.png")
    return root


def _data_rows(path: Path) -> int:
    if not path.exists():
        return 0
    return max(0, path.read_bytes().count(b"\n") - 1)


def _predict_cmd(model: Path, images: Path, out: Path, dest: Path) -> list[str]:
    return [sys.executable, "-m", "sortsight", "predict", str(model), str(images), "--csv", str(out),
            "--sort-into", str(dest), "--batch-size", "4", "--workers", "0", "--threshold", "0.5"]


def test_kill_9_then_rerun_predicts_and_sorts_every_image_exactly_once(
    tiny_model_dir: Path, many_images: Path, tmp_path: Path
) -> None:
    out = tmp_path / "predictions.csv"
    dest = tmp_path / "sorted"
    cmd = _predict_cmd(tiny_model_dir, many_images, out, dest)

    log = tmp_path / "stderr.txt"
    with open(log, "wb") as err:  # a file, not a pipe: a full pipe would block the job
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    killed_at = None
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        written = _data_rows(out)
        if written >= 8:  # streaming: rows are on disk while the job still runs
            os.kill(proc.pid, signal.SIGKILL)
            killed_at = written
            break
        time.sleep(0.005)
    proc.wait()
    stderr = log.read_text(errors="replace")
    assert killed_at is not None, f"the job ended before it could be killed: {stderr[-800:]}"
    assert proc.returncode == -signal.SIGKILL
    partial = _data_rows(out)
    assert 8 <= partial < N_IMAGES, "kill -9 should have stopped the job part-way"
    assert not dest.exists() or not any(dest.rglob("*.png")), "sorting starts only after predicting"

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    said = " ".join(rerun.stdout.split())  # rich wraps long lines
    assert f"Predicted {N_IMAGES - partial} images" in said and f"({partial} already done earlier)" in said

    with open(out, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    counts = Counter(row["path"] for row in rows)
    expected = {str(p) for p in many_images.rglob("*.png")}
    assert set(counts) == expected
    assert max(counts.values()) == 1
    assert {row["status"] for row in rows} <= {"ok", "unsure"}

    sorted_files = list(dest.rglob("*.png"))
    assert len(sorted_files) == N_IMAGES
    assert Counter(p.name for p in sorted_files).most_common(1)[0][1] == 1  # no duplicates
    assert len(list(many_images.rglob("*.png"))) == N_IMAGES  # copying kept every original
