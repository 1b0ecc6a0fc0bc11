"""Unit tests of the training package: head, refit, WiSE-FT, schedule, model split, checkpoints,
the frozen-feature engines, the plan (aliases), resume options, and errors. Tiny inputs, seconds."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import write_class_folder

from sortsight.config import TrainConfig
from sortsight.errors import ConfigError, ModelError
from sortsight.training.checkpoint import load_latest_checkpoint, restore_optimizer, save_checkpoint
from sortsight.training.head import fit_head, fold, metrics, refit_head, wise
from sortsight.training.loop import Finetuned
from sortsight.training.plan import FINETUNE_SHARE, candidate_specs, make_plan, worth_finetuning
from sortsight.training.schedule import layer_lrs, lr_factor
from sortsight.training.split import Split


def _blobs(n: int, k: int = 3, d: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    centres = torch.randn(k, d, generator=torch.Generator().manual_seed(99)) * 3
    y = torch.arange(n) % k
    return centres[y] + torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), y


@pytest.fixture(scope="module")
def lite0_split() -> object:
    from sortsight.models import create_model
    from sortsight.training.split import split_model

    torch.manual_seed(0)
    model, dc = create_model("efficientnet_lite0", ["a", "b", "c"], input_size=32)
    model.eval()
    return model, dc, split_model(model, tuple(dc.mean), tuple(dc.std))


def _finetune(
    split: Split, acts: torch.Tensor, y: torch.Tensor, head: dict, config: TrainConfig, out: Path, **kw: Any
) -> Finetuned:
    """``loop.finetune`` on one view of ``acts``, validated on the same images, fp32, one process."""
    from sortsight.training import run_dir as rd
    from sortsight.training.distributed import setup_environment
    from sortsight.training.loop import finetune
    from sortsight.training.precision import choose_precision

    env = setup_environment()
    return finetune(
        split, [acts], y, acts, y, head,
        config=config, precision=choose_precision("fp32", lambda dtype: None), out=out, env=env,
        metrics_log=rd.MetricsLog(out, env, config.log), name="t", progress=None, deadline=None, **kw,
    )  # fmt: skip


def test_head_folded_into_a_layer_computes_the_fit() -> None:
    x, y = _blobs(60)
    xv, yv = _blobs(30, seed=1)
    fit, m = fit_head(x, y, xv, yv, n_classes=3, seed=0)
    assert fit.C in (0.01, 0.1, 1.0) and fit.scaling in ("per_feature", "global") and fit.n_items == 60
    assert m["accuracy"] == metrics(fit.logits(xv), yv)["accuracy"] > 0.9
    layer = torch.nn.Linear(8, 3)
    fold(fit, layer)
    with torch.no_grad():
        assert torch.allclose(layer(xv), fit.logits(xv).float(), atol=1e-4)


def test_binary_head_has_two_outputs() -> None:
    x, y = _blobs(40, k=2)
    fit, _ = fit_head(x, y, x, y, n_classes=2, seed=0)
    assert fit.weight.shape == (2, 8) and metrics(fit.logits(x), y)["accuracy"] > 0.9


def test_refit_uses_every_train_and_validation_item() -> None:
    x, y = _blobs(60)
    xv, yv = _blobs(30, seed=1)
    fit, _ = fit_head(x, y, xv, yv, n_classes=3, seed=0)
    again = refit_head(fit, torch.cat([x, xv]), torch.cat([y, yv]), n_classes=3, seed=0)
    assert again.n_items == 90 and (again.C, again.scaling) == (fit.C, fit.scaling)
    assert not torch.allclose(torch.from_numpy(again.weight), torch.from_numpy(fit.weight))


def test_wise_zero_is_the_head_and_one_the_finetuned_model(lite0_split: tuple) -> None:
    from sortsight.training.loop import logits, state_copy

    _, _, split = lite0_split
    head = state_copy(split.tail)
    params = {name for name, _ in split.tail.named_parameters()}  # (BatchNorm variances stay positive)
    tuned = {k: v + 0.01 * torch.randn_like(v) if k in params else v for k, v in head.items()}
    acts = split.trunk(torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8))
    outputs = []
    for state in (head, tuned):
        split.tail.load_state_dict(state)
        outputs.append(logits(split, acts))
    for alpha, expected_state, expected in ((0.0, head, outputs[0]), (1.0, tuned, outputs[1])):
        mixed = wise(head, tuned, alpha)
        assert all(torch.equal(mixed[k], expected_state[k]) for k in head)
        split.tail.load_state_dict(mixed)
        assert torch.equal(logits(split, acts), expected)
    half = wise(head, tuned, 0.5)
    key = next(iter(params))
    assert torch.allclose(half[key], (head[key] + tuned[key]) / 2)
    split.tail.load_state_dict(head)


def test_wise_keeps_the_mix_with_the_best_validation_score() -> None:
    """choose_wise returns the mixing weight whose validation accuracy is highest: here neither end
    (head: boundary at x = 1, fine-tuned: at x = -1) but their average (boundary at 0)."""
    from torch import nn

    from sortsight.training.loop import choose_wise
    from sortsight.training.split import Split

    layer = nn.Linear(1, 2)
    split = Split(nn.Identity(), layer, layer, "partial")
    head = {"weight": torch.tensor([[0.0], [1.0]]), "bias": torch.tensor([0.0, -1.0])}
    tuned = {"weight": torch.tensor([[0.0], [1.0]]), "bias": torch.tensor([0.0, 1.0])}
    x, y = torch.tensor([[-0.5], [-0.4], [0.4], [0.5]]), torch.tensor([0, 0, 1, 1])
    layer.load_state_dict(head)
    head_metrics = metrics(layer(x).detach(), y)
    assert head_metrics["accuracy"] == 0.5
    alpha, best = choose_wise(split, head, tuned, x, y, head_metrics)
    assert alpha == 0.5 and best["accuracy"] == 1.0
    # when no mix beats the head, the head (alpha 0) and its own metrics are kept
    alpha, best = choose_wise(split, tuned, tuned, x, y, {"accuracy": 1.0, "loss": 0.0})
    assert alpha == 0.0 and best == {"accuracy": 1.0, "loss": 0.0}


def test_split_tail_of_trunk_is_the_model(lite0_split: tuple) -> None:
    from sortsight.geometry import normalize

    model, dc, split = lite0_split
    pixels = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.allclose(split.tail(split.trunk(pixels)), model(normalize(pixels, dc)), atol=1e-5)
    assert split.kind == "partial" and len(split.tail.param_groups()) >= 3


def test_frozen_pass_engines_agree(lite0_split: tuple) -> None:
    from sortsight.training.frozen import FrozenPass

    _, dc, split = lite0_split
    pixels = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    onnx, eager = FrozenPass(split, dc, engine="onnx"), FrozenPass(split, dc, engine="eager")
    a1, f1 = onnx(pixels)
    a2, f2 = eager(pixels)
    assert (onnx.engine, eager.engine) == ("onnx", "eager")
    assert torch.allclose(f1, f2, atol=1e-3) and torch.allclose(a1, a2, atol=1e-3)
    assert {"eager_seconds_per_image", "onnx_seconds_per_image"} <= set(onnx.timing)


def test_a_small_frozen_pass_stays_eager_and_exports_nothing(
    lite0_split: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pass that eager PyTorch finishes sooner than any export could run eager, with no graph
    made; a big pass exports one, and then a small pass may use it."""
    from sortsight.training import frozen as frozen_module

    monkeypatch.setenv("SORTSIGHT_CACHE", str(tmp_path))
    _, dc, split = lite0_split
    pixels = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    small = frozen_module.FrozenPass(split, dc)
    small.pending = 6
    small(pixels)
    assert small.engine == "eager" and small.timing["eager_pass_seconds"] < frozen_module.EXPORT_FLOOR_SECONDS
    assert not list(tmp_path.rglob("frozen-*.onnx"))
    big = frozen_module.FrozenPass(split, dc)
    big.pending = 10**7  # eager would take hours: the export pays
    big(pixels)
    assert "onnx_seconds_per_image" in big.timing and len(list(tmp_path.rglob("frozen-*.onnx"))) == 1
    again = frozen_module.FrozenPass(split, dc)
    again.pending = 6
    again(pixels)
    assert "eager_pass_seconds" not in again.timing and "onnx_seconds_per_image" in again.timing


def test_the_frozen_engine_is_chosen_for_the_whole_job_not_its_first_run(
    lite0_split: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Training's first run passes a few images (the estimate's sample) and the engine it picks
    serves every later run: told the job's size, a first run over 4 images still exports the
    graph (it decided 'eager' for the whole job before, and a first training on a machine ran its
    frozen pass eager); a job that really is 4 images stays eager."""
    from PIL import Image

    from sortsight.training import frozen as frozen_module

    monkeypatch.setenv("SORTSIGHT_CACHE", str(tmp_path / "cache"))
    _, dc, split = lite0_split
    paths = []
    for k in range(4):
        paths.append(tmp_path / f"{k}.png")
        Image.new("RGB", (40, 40), (60 * k, 90, 200 - 40 * k)).save(paths[-1])
    small_job = frozen_module.FrozenPass(split, dc)
    small_job.run(paths)
    assert small_job.engine == "eager" and "eager_pass_seconds" in small_job.timing
    assert not list(tmp_path.rglob("frozen-*.onnx"))
    big_job = frozen_module.FrozenPass(split, dc, images=10**6)  # eager would take hours: the export pays
    first = big_job.run(paths)
    assert first.kept == [0, 1, 2, 3]
    assert "onnx_seconds_per_image" in big_job.timing and len(list(tmp_path.rglob("frozen-*.onnx"))) == 1


def test_schedule_warms_up_then_decays() -> None:
    total = 100
    assert lr_factor(0, total, 0.1, "cosine") == pytest.approx(0.1)
    assert lr_factor(9, total, 0.1, "cosine") == pytest.approx(1.0)
    assert lr_factor(10, total, 0.1, "cosine") == pytest.approx(1.0)
    assert lr_factor(99, total, 0.1, "cosine") < 0.01
    assert lr_factor(55, total, 0.1, "linear") == pytest.approx(0.5)
    assert lr_factor(80, total, 0.0, "constant") == 1.0
    lrs = layer_lrs(1e-3, 3)
    assert lrs == pytest.approx([1e-4, 1e-3 * 10**-0.5, 1e-3])


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    layer = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(layer.parameters(), lr=0.1)
    layer(torch.ones(1, 3)).sum().backward()
    opt.step()
    for half in (".epoch-0002.tmp-77-0a1b2c3d", ".epoch-0001.old-77-0a1b2c3d", ".tmp-epoch-0001-x"):
        (tmp_path / half).mkdir()  # what killed runs leave: half-written, or moved aside
        (tmp_path / half / "model.safetensors").write_bytes(b"half")
    for epoch in (1, 2, 2):  # the same epoch again (a resume) replaces it
        save_checkpoint(
            tmp_path,
            epoch,
            model_state=layer.state_dict(),
            best_state=layer.state_dict(),
            optimizer=opt,
            state={"step": epoch * 5, "flag": True},
            keep=1,
        )
    assert [p.name for p in tmp_path.iterdir()] == ["epoch-0002"]  # only the newest kept, no leftovers
    ckpt = load_latest_checkpoint(tmp_path)
    assert ckpt is not None
    model_state, best_state, opt_tensors, state = ckpt
    assert set(best_state) == set(model_state)
    assert state["epoch"] == 2 and state["step"] == 10 and state["flag"] is True
    assert all(torch.equal(model_state[k], v) for k, v in layer.state_dict().items())
    fresh = torch.optim.AdamW(torch.nn.Linear(3, 2).parameters(), lr=0.5)
    restore_optimizer(fresh, opt_tensors, state["optimizer_groups"])
    exp = opt.state_dict()["state"][0]["exp_avg"]
    assert torch.equal(fresh.state_dict()["state"][0]["exp_avg"], exp)
    assert fresh.param_groups[0]["lr"] == 0.1
    assert not list(tmp_path.glob("*/*.pt")) and not list(tmp_path.glob("*/*.pkl"))  # no pickle


def test_candidate_specs_resolve_aliases() -> None:
    assert candidate_specs(TrainConfig(model="lite0", candidates=2)) == [
        ("efficientnet_lite0", None),
        ("efficientnet_lite1", None),
    ]
    assert candidate_specs(TrainConfig(models=("lite0", "efficientnet_lite0", "lite2@160"))) == [
        ("efficientnet_lite0", None),
        ("efficientnet_lite2", 160),
    ]


def test_plan_and_the_finetune_rule() -> None:
    assert make_plan(TrainConfig(strategy="head")).epochs == 0
    auto = make_plan(TrainConfig())
    assert auto.finetune == "auto" and auto.refit and auto.views == 1
    assert make_plan(TrainConfig(augmentation="none")).views == 0
    assert worth_finetuning(auto, {"accuracy": 0.99}, 100) == (False, "head_good_enough", 0)
    assert worth_finetuning(auto, {"accuracy": 0.9}, 100) == (True, "", 5)  # room; cost not yet measured
    share = FINETUNE_SHARE
    slow = {"epoch_seconds": 30.0, "spent": 45.0 / share}  # 45 s allowed: one epoch fits, two do not
    assert worth_finetuning(auto, {"accuracy": 0.9}, 100, **slow) == (False, "finetune_too_slow", 0)
    assert worth_finetuning(auto, {"accuracy": 0.9}, 100, **slow, time_left=100.0) == (True, "", 3)
    assert worth_finetuning(auto, {"accuracy": 0.9}, 100, **slow, time_left=10.0) == (False, "time_budget", 0)
    # capped to what fits in FINETUNE_SHARE x the first model's time, after the views' fixed cost
    fits = {"epoch_seconds": 10.0, "fixed_seconds": 15.0, "spent": 80.0 / share}  # (80 - 15) // 10 = 6 > 5
    assert worth_finetuning(auto, {"accuracy": 0.9}, 100, **fits) == (True, "", 5)
    assert worth_finetuning(auto, {"accuracy": 0.9}, 100, **{**fits, "spent": 50.0 / share}) == (True, "", 3)
    forced = make_plan(TrainConfig(strategy="finetune"))
    assert worth_finetuning(forced, {"accuracy": 1.0}, 100, **slow) == (True, "", 5)


def test_resume_keeps_the_options_given_with_it(tmp_path: Path) -> None:
    from sortsight.training.distributed import setup_environment
    from sortsight.training.run_dir import prepare_run_dir

    out = tmp_path / "run"
    out.mkdir()
    stored = TrainConfig(data_path=str(tmp_path), out=str(out), epochs=3, lr=1e-3)
    from sortsight.config import config_to_dict

    (out / "sortsight.json").write_text(json.dumps({"config": config_to_dict(stored)}))
    env = setup_environment()
    resumed = prepare_run_dir(TrainConfig(out=str(out), resume=True, epochs=8, time_budget="1m"), env)
    assert (resumed.epochs, resumed.lr, resumed.time_budget, resumed.resume) == (8, 1e-3, 60.0, True)
    with pytest.raises(ConfigError, match="'lr' cannot change when resuming"):
        prepare_run_dir(TrainConfig(out=str(out), resume=True, lr=0.5), env)
    with pytest.raises(ConfigError, match="its own data"):
        prepare_run_dir(TrainConfig(data_path=str(tmp_path / "x"), out=str(out), resume=True), env)


def test_unsupported_model_is_a_model_error_in_train_and_estimate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sortsight.training.run as run
    from sortsight.estimate import estimate_training
    from sortsight.train import train

    def refuse(*_a: object, **_k: object) -> object:
        raise TypeError("model has no forward_features()")

    monkeypatch.setattr(run, "split_model", refuse)
    data = write_class_folder(tmp_path / "d", ("a", "b"), per_class=4, size=24)
    config = TrainConfig(data_path=str(data), out=str(tmp_path / "r"), image_size=32)
    for call in (lambda: estimate_training(config), lambda: train(config)):
        with pytest.raises(ModelError, match="cannot be trained by sortsight"):
            call()


def test_head_only_run_refits_on_train_and_validation(tmp_path: Path) -> None:
    from sortsight.train import train

    data = write_class_folder(tmp_path / "d", ("a", "b", "c"), per_class=6, size=32)
    result = train(TrainConfig(data_path=str(data), out=str(tmp_path / "r"), image_size=32, test_split=0.2))
    record = json.loads((result.run_dir / "sortsight.json").read_text())
    splits = record["data"]["splits"]
    assert record["refit"] == {**record["refit"], "applied": True, "what": "head"}
    assert record["refit"]["items"] == len(splits["train"]) + len(splits["validation"])
    assert record["best"]["chosen"] == "head" and record["best"]["stopped"] == "head_good_enough"
    assert set(record["test_metrics"]) >= {"accuracy", "f1_macro"} and math.isfinite(record["seconds"])
    card = (result.model_dir / "README.md").read_text()
    assert "before that refit" in card and "## Test results" in card


def test_head_scores_from_pooled_features_equal_the_tail(lite0_split: tuple) -> None:
    """A kept head is scored on the frozen pass's features (no second pass through the tail)."""
    _, _, split = lite0_split
    acts = split.trunk(torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8))
    with torch.no_grad():
        assert torch.allclose(split.classifier(split.tail.features(acts)), split.tail(acts), atol=1e-5)


def test_auto_cap_stops_between_epochs(lite0_split: tuple, tmp_path: Path) -> None:
    """Past auto's cap, the loop ends after the epoch under way instead of running the others."""
    import time

    from sortsight.training.loop import state_copy

    _, _, split = lite0_split
    saved = state_copy(split.tail)
    acts = split.trunk(torch.randint(0, 256, (12, 3, 32, 32), dtype=torch.uint8)).half()
    y = torch.arange(12) % 3
    config = TrainConfig(epochs=3, batch_size=4, early_stopping_patience=0)
    runs = {}
    for cap in (None, time.perf_counter()):
        out = tmp_path / ("capped" if cap else "free")
        out.mkdir()
        split.tail.load_state_dict(saved)
        runs[cap is None] = _finetune(split, acts, y, {"accuracy": 0.5, "loss": 1.0}, config, out, cap_at=cap)
    split.tail.load_state_dict(saved)
    assert (runs[True].epochs, runs[True].stopped) == (3, "completed")
    assert (runs[False].epochs, runs[False].stopped) == (1, "time_cap")


def test_no_gain_stop_after_epochs_below_the_head(lite0_split: tuple, tmp_path: Path) -> None:
    """No epoch can beat this head: the loop stops after NO_GAIN_EPOCHS of them (not before, and
    not at the last epoch); patience 0 turns the stop off."""
    from sortsight.training.loop import state_copy
    from sortsight.training.plan import MIN_FINETUNE_EPOCHS, NO_GAIN_EPOCHS

    assert MIN_FINETUNE_EPOCHS <= NO_GAIN_EPOCHS
    _, _, split = lite0_split
    saved = state_copy(split.tail)
    acts = split.trunk(torch.randint(0, 256, (12, 3, 32, 32), dtype=torch.uint8)).half()
    y = torch.arange(12) % 3
    runs = {}
    for patience in (5, 0):
        config = TrainConfig(epochs=NO_GAIN_EPOCHS + 1, batch_size=4, early_stopping_patience=patience)
        out = tmp_path / f"p{patience}"
        out.mkdir()
        split.tail.load_state_dict(saved)
        runs[patience] = _finetune(split, acts, y, {"accuracy": 2.0, "loss": 0.0}, config, out)
    split.tail.load_state_dict(saved)
    assert (runs[5].epochs, runs[5].stopped) == (NO_GAIN_EPOCHS, "no_gain")
    assert (runs[0].epochs, runs[0].stopped) == (NO_GAIN_EPOCHS + 1, "completed")


def test_a_warm_up_reuses_the_precision_remembered_under_its_key(
    lite0_split: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first warm-up of a model on a machine times both precisions and remembers them; the next
    one with the same key decides from that (two steps instead of ten), and still times its step."""
    from sortsight.training import loop, precision, speeds

    monkeypatch.setenv("SORTSIGHT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(precision, "_cpu_has_fast_bf16", lambda: True)
    _, _, split = lite0_split
    acts = split.trunk(torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8))
    y, config = torch.arange(8) % 3, TrainConfig(batch_size=4)
    key = speeds.speed_key("efficientnet_lite0", 32, config)
    calls: list[int] = []
    real_step = split.tail.forward

    def step(x: torch.Tensor) -> torch.Tensor:  # steps of a steady length: bf16 clearly faster
        import time

        calls.append(1)
        time.sleep(0.02 if torch.is_autocast_enabled("cpu") else 0.2)
        return real_step(x)

    monkeypatch.setattr(split.tail, "forward", step)

    _, first, timing = loop.warm_up(split, acts, y, config, speed_key=key)
    assert len(calls) == 10 and "earlier" not in first.reason  # 2 + 6 timed both ways, then 2
    speeds.remember(timing, key, source="run")
    calls.clear()
    _, second, again = loop.warm_up(split, acts, y, config, speed_key=key)
    assert len(calls) == 2 and "earlier" in second.reason and second.dtype == first.dtype == "bf16"
    remembered = speeds.recall(key) or {}
    assert again["step_seconds"] > 0 and again["fp32_step_seconds"] == remembered["fp32_step_seconds"]
    # remembered steps far slower than the one timed now: the machine changed, both are timed again
    speeds.remember({"fp32_step_seconds": 100.0, "bf16_step_seconds": 10.0}, key, source="run")
    calls.clear()
    _, third, _ = loop.warm_up(split, acts, y, config, speed_key=key)
    assert len(calls) == 12 and "earlier" not in third.reason and not third.remembered


def test_weight_averaging_keeps_the_mean_of_the_steps_after_the_first_epoch(
    lite0_split: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sortsight.training import loop

    _, _, split = lite0_split
    saved = loop.state_copy(split.tail)
    acts = split.trunk(torch.randint(0, 256, (12, 3, 32, 32), dtype=torch.uint8)).half()
    y = torch.arange(12) % 3
    seen: list[dict[str, torch.Tensor]] = []
    real = loop._average_into

    def recorded(mean: dict | None, module: torch.nn.Module, count: int) -> dict:
        seen.append(loop.state_copy(module))
        return real(mean, module, count)

    monkeypatch.setattr(loop, "_average_into", recorded)
    config = TrainConfig(epochs=2, batch_size=4, early_stopping_patience=0, weight_averaging=True)
    ft = _finetune(split, acts, y, {"accuracy": 0.0, "loss": 9.0}, config, tmp_path)
    assert len(seen) == 3 and ft.best_state is not None  # the three steps of the second epoch
    for k, v in ft.best_state.items():
        if v.is_floating_point():
            assert torch.allclose(v, torch.stack([s[k] for s in seen]).mean(0), atol=1e-6), k
    floats = [k for k, v in ft.best_state.items() if v.is_floating_point()]
    assert any(not torch.equal(ft.best_state[k], seen[-1][k]) for k in floats)  # not the last step's
    split.tail.load_state_dict(ft.best_state)
    assert ft.best == loop.SINGLE_LABEL.score(loop.logits(split, acts), y)  # scored as returned
    split.tail.load_state_dict(saved)


def test_a_resumed_run_averages_the_same_weights(lite0_split: tuple, tmp_path: Path) -> None:
    """Killed after epoch 2 of 3 (its last checkpoint removed) and resumed, fine-tuning ends with the
    same averaged weights as the run that was not interrupted: the running mean is checkpointed."""
    import shutil

    from sortsight.training import loop

    _, _, split = lite0_split
    saved = loop.state_copy(split.tail)
    acts = split.trunk(torch.randint(0, 256, (12, 3, 32, 32), dtype=torch.uint8)).half()
    y = torch.arange(12) % 3

    def run(config: TrainConfig) -> dict[str, torch.Tensor]:
        ft = _finetune(split, acts, y, {"accuracy": 0.0, "loss": 9.0}, config, tmp_path)
        assert ft.best_state is not None
        return ft.best_state

    config = TrainConfig(epochs=3, batch_size=4, early_stopping_patience=0, save_total_limit=3)
    whole = run(config)
    shutil.rmtree(tmp_path / "checkpoints" / "epoch-0003")
    split.tail.load_state_dict(saved)  # the resumed run loads its weights from the checkpoint
    resumed = run(TrainConfig(epochs=3, batch_size=4, early_stopping_patience=0, resume=True))
    split.tail.load_state_dict(saved)
    assert config.weight_averaging and all(torch.equal(whole[k], resumed[k]) for k in whole)
