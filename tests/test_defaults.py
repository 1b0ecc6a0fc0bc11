"""Shared defaults are declared once, in sortsight.config: the configs' fields, the library
functions and the CLI options that take the same setting all have the same default (issue 17)."""

from __future__ import annotations

import ast
import dataclasses
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import pytest

import sortsight
from sortsight import (
    _index_embed,
    _stratify,
    data,
    features,
    index,
    predict,
    predict_ray,
    sheets,
    tagdata,
    tagdoctor,
    taghead,
    websearch,
)
from sortsight.cli.check import check as check_command
from sortsight.cli.index import index as index_command
from sortsight.config import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_NEAR_DISTANCE,
    DEFAULT_SEED,
    DEFAULT_TOP_K,
    DEFAULT_VALID_SPLIT,
    PREDICT_ENGINES,
    PredictConfig,
    TrainConfig,
)
from sortsight.doctor import doctor
from sortsight.evaluate import evaluate

SHARED = {
    "seed": DEFAULT_SEED,
    "valid_split": DEFAULT_VALID_SPLIT,
    "batch_size": DEFAULT_BATCH_SIZE,
    "top_k": DEFAULT_TOP_K,
    "near_distance": DEFAULT_NEAR_DISTANCE,
}

FUNCTIONS: list[tuple[Callable[..., Any], str]] = [
    (data.split_dataset, "valid_split"),
    (data.split_dataset, "seed"),
    (data.load_dataset, "valid_split"),
    (data.load_dataset, "seed"),
    (tagdata.split_tags, "valid_split"),
    (tagdata.split_tags, "seed"),
    (tagdata.load_tag_dataset, "valid_split"),
    (tagdata.load_tag_dataset, "seed"),
    (_stratify.iterative_split, "seed"),
    (taghead.fit_tag_head, "seed"),
    (doctor, "seed"),
    (tagdoctor.tag_doctor, "seed"),
    (sheets.sample_grid, "seed"),
    (predict.Classifier.load, "batch_size"),
    (predict.Classifier.predict, "top_k"),
    (predict.predict_paths, "top_k"),
    (predict_ray.predict_paths_ray, "top_k"),
    (predict_ray.predict_paths_ray, "batch_size"),
    (evaluate, "batch_size"),
    (features.extract_features, "batch_size"),
    (index.build_index, "batch_size"),
    (_index_embed.iter_embeddings, "batch_size"),
    (doctor, "near_distance"),
    (tagdoctor.tag_doctor, "near_distance"),
    (websearch.fetch_search, "near_distance"),
]

# files that still write a shared default as a literal, and why (kept short on purpose)
LITERAL_ALLOWED: set[str] = set()


@pytest.mark.parametrize(
    ("func", "name"), FUNCTIONS, ids=[f"{f.__module__}.{f.__qualname__}:{n}" for f, n in FUNCTIONS]
)
def test_function_default_is_the_config_default(func: Callable[..., Any], name: str) -> None:
    assert inspect.signature(func).parameters[name].default == SHARED[name]


def _field_default(cls: type, name: str) -> Any:
    return next(f.default for f in dataclasses.fields(cls) if f.name == name)


def test_config_fields_use_the_constants() -> None:
    assert _field_default(TrainConfig, "seed") == DEFAULT_SEED
    assert _field_default(TrainConfig, "valid_split") == DEFAULT_VALID_SPLIT
    assert _field_default(TrainConfig, "batch_size") == DEFAULT_BATCH_SIZE
    assert _field_default(PredictConfig, "batch_size") == DEFAULT_BATCH_SIZE
    assert _field_default(PredictConfig, "top_k") == DEFAULT_TOP_K
    assert _field_default(predict.Classifier, "batch_size") == DEFAULT_BATCH_SIZE
    assert TrainConfig(valid_split="validation").valid_fraction == DEFAULT_VALID_SPLIT


def test_cli_options_use_the_constants() -> None:
    # check's split options are TrainConfig's fields (None = not typed: the config's default applies)
    check_options = {p.name: p for p in check_command.params if isinstance(p, click.Option)}
    seed, valid = check_options["seed"], check_options["valid_split"]
    assert seed.default is None and f"[default: {DEFAULT_SEED};" in str(seed.help)
    assert valid.default is None and f"[default: {DEFAULT_VALID_SPLIT:g};" in str(valid.help)
    # so are index's (IndexConfig's fields, sharing PredictConfig's declarations of batch and engine)
    index_options = {p.name: p for p in index_command.params if isinstance(p, click.Option)}
    batch, engine = index_options["batch_size"], index_options["engine"]
    assert batch.default is None and f"[default: {DEFAULT_BATCH_SIZE};" in str(batch.help)
    assert engine.type.choices == PREDICT_ENGINES  # type: ignore[attr-defined]


def _literal_repeats(source: str) -> list[tuple[int, str]]:
    """``(line, name)`` of each parameter or class field named like a shared default whose
    default is written as the shared value itself (a literal) instead of the constant."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            a = node.args
            positional = a.posonlyargs + a.args
            pairs = list(zip(positional[len(positional) - len(a.defaults) :], a.defaults, strict=True))
            pairs += [(k, d) for k, d in zip(a.kwonlyargs, a.kw_defaults, strict=True) if d is not None]
            found += [
                (d.lineno, arg.arg)
                for arg, d in pairs
                if arg.arg in SHARED and isinstance(d, ast.Constant) and d.value == SHARED[arg.arg]
            ]
        elif isinstance(node, ast.ClassDef):
            found += [
                (st.lineno, st.target.id)
                for st in node.body
                if isinstance(st, ast.AnnAssign)
                and isinstance(st.target, ast.Name)
                and st.target.id in SHARED
                and isinstance(st.value, ast.Constant)
                and st.value.value == SHARED[st.target.id]
            ]
    return found


def test_no_function_repeats_a_shared_default_as_a_literal() -> None:
    package = Path(sortsight.__file__).parent
    repeats = [
        f"{path.relative_to(package).as_posix()}:{line} {name}"
        for path in sorted(package.rglob("*.py"))
        if path.relative_to(package).as_posix() not in {"config.py", *LITERAL_ALLOWED}
        for line, name in _literal_repeats(path.read_text(encoding="utf-8"))
    ]
    assert not repeats, f"use the sortsight.config DEFAULT_* constants: {repeats}"


def test_the_literal_check_sees_a_repeat() -> None:
    drifted = "def f(x, *, seed: int = 42, top_k=3):\n    pass\nclass C:\n    batch_size: int = 32\n"
    assert _literal_repeats(drifted) == [(1, "seed"), (4, "batch_size")]


def test_the_web_search_downloads_as_fetch_does() -> None:
    """fetch_search hands its downloads to fetch(): the politeness defaults are fetch's."""
    from sortsight import fetch

    ours, theirs = (
        inspect.signature(websearch.fetch_search).parameters,
        inspect.signature(fetch.fetch).parameters,
    )
    for name in ("concurrency", "per_host", "delay", "retries", "timeout"):
        assert ours[name].default == theirs[name].default, name
    assert websearch.search_images.__kwdefaults__["limit"] == ours["limit"].default
