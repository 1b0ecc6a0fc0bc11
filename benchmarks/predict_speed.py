"""Prediction speed and memory: transformers' pipeline against `sortsight predict`, in one run.

Same images, same model (EfficientNet-Lite0 with the bundled ImageNet weights and a 2-class head,
saved as the HF folder sortsight writes), same machine, same process:

1. transformers ``pipeline("image-classification", model=folder)`` over the image paths — as
   users call it (batch size 1, its default) and with ``batch_size=32``;
2. ``sortsight predict`` (``predict_paths`` with the default engine, batched, decoding in
   DataLoader workers, writing predictions.csv) — and each engine alone on the same images;
3. peak resident memory of a ``sortsight predict`` process (and its decoding workers) streaming
   many small generated images, sampled through the run to show it stays flat;
4. a cold start: a few images classified by a fresh process, ``sortsight predict`` against a
   fresh ``python -c`` running transformers' pipeline on the same folder, taking turns (``--cold``
   rounds, medians), from process start to exit — what a user waits for to sort a handful;
5. which ONNX graph a job should make (``--export`` images, Lite0 and Lite2): seconds to export
   the quick (TorchScript) and the optimised (torch.export) graph, end-to-end predict speed with
   each and with eager PyTorch, and the job sizes from which each export pays
   (``engines.ONNX_PAYS_FROM``, ``engines.OPTIMISED_PAYS_FROM``).

Every figure is printed with the CPU capability and thread count beside it.

    python benchmarks/predict_speed.py                    # 512 images, 20,000 for memory (~5 min)
    python benchmarks/predict_speed.py --images 64 --stream-images 500   # a quick check
    python benchmarks/predict_speed.py --images 0 --stream-images 0 --cold 5   # the cold start only
    python benchmarks/predict_speed.py --images 0 --stream-images 0 --cold 0 --export 256   # graphs only
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw


def _cpu() -> str:
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    return f"[cpu {capability}, {os.cpu_count()} cores, {torch.get_num_threads()} threads]"


def _write_images(root: Path, n: int, size: tuple[int, int], quality: int = 88) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    paths = []
    for i in range(n):
        img = Image.new("RGB", size, tuple(rng.randint(0, 80) for _ in range(3)))  # type: ignore[arg-type]
        draw = ImageDraw.Draw(img)
        for _ in range(6):
            x, y = rng.randint(0, size[0] - 10), rng.randint(0, size[1] - 10)
            w, h = rng.randint(8, size[0] // 2), rng.randint(8, size[1] // 2)
            colour = tuple(rng.randint(0, 255) for _ in range(3))
            draw.rectangle([x, y, x + w, y + h], fill=colour)  # type: ignore[arg-type]
        path = root / f"{i // 1000:03d}" / f"img_{i:06d}.jpg"
        path.parent.mkdir(exist_ok=True)
        img.save(path, quality=quality)
        paths.append(path)
    return paths


def _model_folder(root: Path) -> Path:
    import torch

    from sortsight.model_folder import save_model_folder
    from sortsight.models import create_model

    torch.manual_seed(0)
    model, data_config = create_model("efficientnet_lite0", ["document", "photo"])
    return save_model_folder(
        model, ["document", "photo"], data_config, root / "model", name="efficientnet_lite0"
    )


def _timed(label: str, n: int, fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    rate = n / seconds
    print(f"  {label:<44} {n:>6} images {seconds:8.1f} s {rate:8.1f} img/s  {_cpu()}", flush=True)
    return rate


def speed(work: Path, n_images: int) -> None:
    from transformers import pipeline
    from transformers.utils import logging as hf_logging

    from sortsight.predict import Classifier, collect_paths, predict_paths

    hf_logging.set_verbosity_error()
    print(f"\n== Speed: {n_images} JPEGs of 640x480, EfficientNet-Lite0 at 224 px ==")
    images = _write_images(work / "speed", n_images, (640, 480))
    folder = _model_folder(work)
    paths = [str(p) for p in images]
    pipe = pipeline("image-classification", model=str(folder))
    pipe(paths[:4])  # warm-up
    base1 = _timed("transformers pipeline (batch 1, its default)", n_images, lambda: pipe(paths))
    base32 = _timed("transformers pipeline (batch_size=32)", n_images, lambda: pipe(paths, batch_size=32))

    start = time.perf_counter()
    clf = Classifier.load(folder)  # the default engine; the first load exports + caches the ONNX graph
    print(
        f"  sortsight load (default engine: {clf.engine.name}) {time.perf_counter() - start:.1f} s "
        f"(the ONNX export is cached after the first time)"
    )
    found = collect_paths([work / "speed"])
    out = work / "predictions.csv"
    ours = _timed(
        f"sortsight predict (engine {clf.engine.name}, to CSV)",
        n_images,
        lambda: predict_paths(clf, found, out),
    )
    print(f"  ratio sortsight / pipeline batch 1:  {ours / base1:5.2f}x  (goal >= 3x)  {_cpu()}")
    print(f"  ratio sortsight / pipeline batch 32: {ours / base32:5.2f}x  {_cpu()}")

    print("  engines alone, same images (predict_paths, batch 32):")
    for engine in ("eager", "jit", "onnx"):
        c = Classifier.load(folder, engine=engine)
        (work / f"p-{engine}.csv").unlink(missing_ok=True)
        _timed(f"    {engine}", n_images, lambda c=c, e=engine: predict_paths(c, found, work / f"p-{e}.csv"))
    onnx_settings(folder, found, work, n_images)


def _interleaved(clf, engines, found, out: Path, n_images: int, rounds: int) -> dict[str, list[float]]:  # type: ignore[no-untyped-def]
    """``sortsight predict`` end to end (img/s) with each of ``engines`` in turn, ``rounds`` times."""
    from sortsight.predict import predict_paths

    rates: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(rounds):
        for name, engine in engines.items():
            out.unlink(missing_ok=True)
            start = time.perf_counter()
            predict_paths(dataclasses.replace(clf, engine=engine), found, out)
            rates[name].append(n_images / (time.perf_counter() - start))
    return rates


def onnx_settings(folder: Path, found: list[Path], work: Path, n_images: int, rounds: int = 3) -> None:
    """Why the ONNX engine runs a batch a few images at a time with threads that do not spin.

    The three settings take turns, ``rounds`` times, on the same images; the median is printed
    (single runs on a shared 2-core machine vary by +-15 %).
    """
    import statistics

    from sortsight.engines import OnnxEngine, find_current_onnx
    from sortsight.predict import Classifier

    clf = Classifier.load(folder, engine="onnx")  # the engine users get, as they get it
    graph = find_current_onnx(folder)
    if graph is None or not isinstance(clf.engine, OnnxEngine):
        return
    settings = {
        "ONNX Runtime's defaults (whole batch, spinning)": OnnxEngine(graph, micro_batch=32, spin=True),
        "whole batch of 32, no spinning": OnnxEngine(graph, micro_batch=32),
        f"sortsight: micro-batch {clf.engine.micro_batch}, no spinning": clf.engine,
    }
    rates = _interleaved(clf, settings, found, work / "p-settings.csv", n_images, rounds)
    print(f"  ONNX engine settings, sortsight predict end to end (median of {rounds} interleaved runs):")
    for name, values in rates.items():
        print(f"    {name:<50} {statistics.median(values):8.1f} img/s  {_cpu()}")


def memory(work: Path, n_images: int) -> None:
    import psutil

    print(f"\n== Memory: `sortsight predict` streaming {n_images} generated 96x96 JPEGs ==")
    start = time.perf_counter()
    _write_images(work / "stream", n_images, (96, 96))
    print(f"  generated in {time.perf_counter() - start:.0f} s")
    folder = work / "model" if (work / "model").is_dir() else _model_folder(work)
    from sortsight.predict import Classifier

    Classifier.load(folder)  # a user's second run: the ONNX export (a one-time cost) is cached already
    out = work / "stream.csv"
    cmd = [sys.executable, "-m", "sortsight", "predict", str(folder), str(work / "stream"), "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ps = psutil.Process(proc.pid)
    # (rows written, PSS MB of the process + its workers, RSS MB of the main process). PSS counts pages
    # shared with forked decoding workers once; a plain RSS sum would count torch's libraries twice.
    samples: list[tuple[int, float, float]] = []
    start = time.perf_counter()
    while proc.poll() is None:
        try:
            procs = [ps, *ps.children(recursive=True)]
            pss = sum(getattr(q.memory_full_info(), "pss", q.memory_info().rss) for q in procs)
            rss = ps.memory_info().rss
        except psutil.Error:
            break
        rows = max(0, out.read_bytes().count(b"\n") - 1) if out.is_file() else 0
        samples.append((rows, pss / 1e6, rss / 1e6))
        time.sleep(0.5)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        print(f"  sortsight predict failed with exit code {proc.returncode}")
        return
    print(f"  {n_images} images in {seconds:.0f} s ({n_images / seconds:.1f} img/s incl. start-up)  {_cpu()}")
    print(
        f"  peak memory, process + decoding workers (PSS): {max(s[1] for s in samples):.0f} MB; "
        f"main process peak RSS: {max(s[2] for s in samples):.0f} MB  (goal: flat, well under 1500 MB)"
    )
    for fraction in (0.1, 0.25, 0.5, 0.75, 0.95):
        target = fraction * n_images
        at = next((s for s in samples if s[0] >= target), None)
        if at is not None:
            print(f"    after {int(target):>6} images: PSS {at[1]:7.0f} MB, main RSS {at[2]:7.0f} MB")


def cold_start(work: Path, rounds: int, n_images: int = 2) -> None:
    import statistics

    print(f"\n== Cold start: {n_images} JPEGs from a fresh process, {rounds} rounds taking turns ==")
    images = [str(p) for p in _write_images(work / "cold", n_images, (640, 480))]
    folder = work / "model" if (work / "model").is_dir() else _model_folder(work)
    out = work / "cold.csv"
    ours = [sys.executable, "-m", "sortsight", "predict", str(folder), *images, "--out", str(out)]
    theirs = [
        sys.executable,
        "-c",
        "import sys; from transformers import pipeline; "
        "p = pipeline('image-classification', model=sys.argv[1]); print(p(sys.argv[2:]))",
        str(folder),
        *images,
    ]
    times: dict[str, list[float]] = {"sortsight predict": [], "transformers pipeline": []}
    for _ in range(rounds):
        for name, cmd in (("sortsight predict", ours), ("transformers pipeline", theirs)):
            out.unlink(missing_ok=True)
            start = time.perf_counter()
            done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            times[name].append(time.perf_counter() - start)
            if done.returncode != 0:
                print(f"  {name} failed (exit {done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
                return
    for name, values in times.items():
        print(
            f"  {name:<24} median {statistics.median(values):5.2f} s (min {min(values):.2f}, "
            f"max {max(values):.2f})  {_cpu()}"
        )
    ratio = statistics.median(a / b for a, b in zip(*times.values(), strict=True))
    print(f"  ratio sortsight / pipeline, round by round, median: {ratio:.2f}  {_cpu()}")


def export_choice(work: Path, n_images: int, rounds: int = 3) -> None:
    """Quick against optimised ONNX graph, and eager PyTorch, for Lite0 (224 px) and Lite2 (260 px)."""
    import statistics

    import torch

    from sortsight.engines import EagerEngine, OnnxEngine, export_onnx
    from sortsight.model_folder import load_model_folder, save_model_folder
    from sortsight.models import create_model
    from sortsight.predict import Classifier, collect_paths

    print(f"\n== ONNX graphs: {n_images} JPEGs of 640x480, medians of {rounds} interleaved runs ==")
    _write_images(work / "graphs", n_images, (640, 480))
    found = collect_paths([work / "graphs"])
    for name in ("efficientnet_lite0", "efficientnet_lite2"):
        torch.manual_seed(0)
        model, data_config = create_model(name, ["document", "photo"])
        folder = save_model_folder(model, ["document", "photo"], data_config, work / name, name=name)
        loaded = load_model_folder(folder)
        made: dict[str, float] = {}
        engines: dict[str, object] = {"eager": EagerEngine(loaded.module)}
        for kind, optimised in (("quick", False), ("optimised", True)):
            start = time.perf_counter()
            graph = export_onnx(loaded, work / f"{name}-{kind}.onnx", optimised=optimised)
            made[kind] = time.perf_counter() - start  # export + parity check, as a job pays it
            engines[kind] = OnnxEngine(graph)
        clf = Classifier.load(folder, engine="eager")
        rates = _interleaved(clf, engines, found, work / "p-graphs.csv", n_images, rounds)
        rate = {kind: statistics.median(values) for kind, values in rates.items()}
        side = data_config.input_size
        print(f"  {name} at {side} px  {_cpu()}")
        for kind in engines:
            cost = f"export {made[kind]:5.1f} s" if kind in made else "export   -   "
            print(f"    {kind:<10} {cost}  predict {rate[kind]:7.1f} img/s")
        for cheap, dear in (("eager", "quick"), ("quick", "optimised")):
            saved = 1 / rate[cheap] - 1 / rate[dear]  # seconds saved per image
            extra = made[dear] - made.get(cheap, 0.0)
            pays = f"from ~{extra / saved:,.0f} images" if saved > 0 else "never (not faster here)"
            print(f"    {dear} graph instead of {cheap}: pays {pays}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=512, help="images for the speed comparison (0: skip)")
    parser.add_argument(
        "--stream-images", type=int, default=20_000, help="images for the memory run (0: skip)"
    )
    parser.add_argument("--cold", type=int, default=3, help="rounds of the cold start (0: skip)")
    parser.add_argument(
        "--export", type=int, default=0, help="images for the quick/optimised ONNX graph comparison (0: skip)"
    )
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sortsight-bench-") as tmp:
        work = args.work or Path(tmp)
        os.environ.setdefault("SORTSIGHT_CACHE", str(work / "cache"))
        if args.images:
            speed(work, args.images)
        if args.stream_images:
            memory(work, args.stream_images)
        if args.cold:
            cold_start(work, args.cold)
        if args.export:
            export_choice(work, args.export)


if __name__ == "__main__":
    main()
