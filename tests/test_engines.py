"""Engines: jit and ONNX Runtime agree with eager PyTorch; ONNX export carries labels and preprocessing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from sortsight.engines import (
    EagerEngine,
    JitEngine,
    OnnxEngine,
    build_engine,
    export_onnx,
    read_onnx_metadata,
)
from sortsight.errors import ModelError
from sortsight.model_folder import load_model_folder
from sortsight.predict import Classifier


@pytest.fixture(scope="module")
def loaded(tiny_model_dir: Path):  # type: ignore[no-untyped-def]
    return load_model_folder(tiny_model_dir)


@pytest.fixture(scope="module")
def onnx_file(loaded, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    return export_onnx(loaded, tmp_path_factory.mktemp("onnx") / "tiny.onnx", optimised=False)


def _batch(n: int = 5) -> torch.Tensor:
    return torch.randn(n, 3, 64, 64, generator=torch.Generator().manual_seed(1))  # (B, 3, H, W)


def test_jit_matches_eager(loaded) -> None:  # type: ignore[no-untyped-def]
    x = _batch()
    expected = EagerEngine(loaded.module)(x)
    jit = JitEngine(loaded.module, 64)
    got = jit(x)
    assert got.shape == (5, 3)
    assert np.abs(got - expected).max() < 1e-3
    assert np.abs(jit(x[:1]) - expected[:1]).max() < 1e-3  # any batch size


def test_onnx_matches_eager_for_any_batch_size(loaded, onnx_file: Path) -> None:  # type: ignore[no-untyped-def]
    engine = OnnxEngine(onnx_file)
    for n in (1, 5):
        x = _batch(n)
        assert np.abs(engine(x) - EagerEngine(loaded.module)(x)).max() < 1e-3


def test_onnx_micro_batches_give_the_logits_of_whole_batches(onnx_file: Path) -> None:
    x = _batch(7)  # not a multiple of the micro-batch: the last run has 3 images
    whole = OnnxEngine(onnx_file, micro_batch=32, spin=True)(x)
    got = OnnxEngine(onnx_file, micro_batch=4)(x)
    assert got.shape == whole.shape == (7, 3) and got.dtype == np.float32
    assert np.abs(got - whole).max() < 1e-5


def test_onnx_metadata_has_labels_and_preprocessing(loaded, onnx_file: Path) -> None:  # type: ignore[no-untyped-def]
    labels, data_config, name, meta = read_onnx_metadata(onnx_file)
    assert labels == loaded.labels == ["bird", "cat", "dog"]
    assert data_config == loaded.data_config and data_config.input_size == 64
    assert json.loads(meta["mean"]) == pytest.approx(list(loaded.data_config.mean))
    assert json.loads(meta["id2label"]) == {"0": "bird", "1": "cat", "2": "dog"}
    assert name == loaded.name
    assert meta["sortsight.exporter"] == "torchscript"  # the quick graph, as asked


def test_classifier_from_onnx_file_alone_agrees(
    tiny_model_dir: Path, onnx_file: Path, tmp_path: Path
) -> None:
    from conftest import make_image

    alone = tmp_path / "only.onnx"
    shutil.copy(onnx_file, alone)  # no model folder beside it
    images = [make_image(i % 3, size=64, seed=40 + i) for i in range(4)]
    a = Classifier.load(alone).predict(images, top_k=3)
    b = Classifier.load(tiny_model_dir, engine="eager").predict(images, top_k=3)
    assert [[d["label"] for d in r] for r in a] == [[d["label"] for d in r] for r in b]
    with pytest.raises(Exception, match="only with the onnx engine"):
        Classifier.load(alone, engine="jit")


def _count_exports(
    monkeypatch: pytest.MonkeyPatch, onnx_file: Path, kinds: list[bool] | None = None
) -> list[Path]:
    """Replace the ONNX export by a copy of ``onnx_file``; the returned list gets each target
    (and ``kinds`` whether each export was asked for the optimised graph)."""
    import sortsight.engines as engines

    exports: list[Path] = []

    def fake_export(loaded, out, *, optimised=True):  # type: ignore[no-untyped-def]
        exports.append(Path(out))
        if kinds is not None:
            kinds.append(optimised)
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(onnx_file, out)
        return Path(out)

    monkeypatch.setattr(engines, "export_onnx", fake_export)
    return exports


def test_auto_uses_model_onnx_beside_the_weights_only_when_current(
    tiny_model_dir: Path, onnx_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    shutil.copy(onnx_file, folder / "model.onnx")
    cache = tmp_path / "cache"
    engine = build_engine(load_model_folder(folder), "auto", cache_dir=cache)
    assert engine.name == "onnx" and not cache.exists()  # the folder's own export, made from these weights
    # the weights change after the export: the stale graph is not used; a new export goes to the cache
    exports = _count_exports(monkeypatch, onnx_file)
    import onnx

    stale = onnx.load(str(folder / "model.onnx"))
    onnx.helper.set_model_props(
        stale, {**{m.key: m.value for m in stale.metadata_props}, "sortsight.source_sha256": "0" * 64}
    )  # made from other weights
    onnx.save(stale, str(folder / "model.onnx"))
    build_engine(load_model_folder(folder), "onnx", cache_dir=cache)
    assert len(exports) == 1 and exports[0].parent == cache
    build_engine(load_model_folder(folder), "onnx", cache_dir=cache)
    assert len(exports) == 1  # cached: not exported again


def test_unknown_engine_suggests(loaded) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ModelError, match="Did you mean 'onnx'"):
        build_engine(loaded, "onx")
    with pytest.raises(ModelError, match="not found"):
        read_onnx_metadata("/nonexistent/model.onnx")


def test_auto_skips_a_first_export_that_would_not_pay(
    tiny_model_dir: Path, onnx_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job of a few images runs eager and exports nothing; an unknown or big one exports; a graph
    exported before is used even for one image."""
    import sortsight.engines as engines

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    loaded = load_model_folder(folder)
    exports = _count_exports(monkeypatch, onnx_file)
    cache = tmp_path / "cache"
    size = loaded.data_config.input_size
    pays_from = engines.ONNX_PAYS_FROM * (224 / size) ** 2
    assert not engines.export_pays(int(pays_from) - 1, size) and engines.export_pays(int(pays_from) + 1, size)
    assert build_engine(loaded, "auto", cache_dir=cache, images=8).name == "eager" and exports == []
    assert build_engine(loaded, "onnx", cache_dir=cache, images=8).name == "onnx"  # asked for: exported
    assert len(exports) == 1
    assert build_engine(loaded, "auto", cache_dir=cache, images=1).name == "onnx"  # exported before
    other = tmp_path / "other"
    shutil.copytree(tiny_model_dir, other)
    (other / "config.json").write_text((other / "config.json").read_text() + " ")  # other weights' digest
    assert build_engine(load_model_folder(other), "auto", cache_dir=cache).name == "onnx"  # unknown size
    assert len(exports) == 2


def test_a_job_makes_the_quick_graph_and_a_big_one_the_optimised(
    tiny_model_dir: Path, onnx_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The quick graph (seconds to make) for a job of unknown or ordinary size; the optimised one
    (slower to make, faster to run) for a job big enough to repay it, even when a quick one exists;
    once made, the optimised graph serves every job."""
    import onnx

    import sortsight.engines as engines

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    loaded = load_model_folder(folder)
    cache = tmp_path / "cache"
    kinds: list[bool] = []
    exports = _count_exports(monkeypatch, onnx_file, kinds)
    big = engines.OPTIMISED_PAYS_FROM
    assert not engines.wants_optimised(None) and not engines.wants_optimised(big - 1)
    assert engines.wants_optimised(big)

    build_engine(loaded, "auto", cache_dir=cache)  # unknown size: the quick graph
    build_engine(loaded, "auto", cache_dir=cache, images=big - 1)  # found: not made again
    assert kinds == [False] and exports[0].name.endswith("-quick.onnx")
    assert engines.find_current_onnx(folder, cache) == exports[0]
    assert engines.find_current_onnx(folder, cache, optimised=True) is None
    build_engine(loaded, "auto", cache_dir=cache, images=big)  # big: the optimised graph is made
    assert kinds == [False, True] and not exports[1].name.endswith("-quick.onnx")
    build_engine(loaded, "auto", cache_dir=cache, images=1)
    assert len(exports) == 2 and engines.find_current_onnx(folder, cache) == exports[1]  # preferred

    # a quick model.onnx beside the weights serves ordinary jobs, not a big one
    other = tmp_path / "other"
    shutil.copytree(tiny_model_dir, other)
    (other / "config.json").write_text((other / "config.json").read_text() + " ")  # other weights' digest
    proto = onnx.load(str(onnx_file))
    meta = {m.key: m.value for m in proto.metadata_props}
    onnx.helper.set_model_props(proto, {**meta, "sortsight.source_sha256": engines.source_digest(other)})
    onnx.save(proto, str(other / "model.onnx"))
    assert engines.find_current_onnx(other, cache) == other / "model.onnx"
    assert engines.find_current_onnx(other, cache, optimised=True) is None
