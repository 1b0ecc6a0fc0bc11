"""``sortsight predict --engine ray``: same CSV and same sorting as the local engine, on a local Ray.

One Ray session for the whole module (starting Ray costs seconds); the shared tiny Lite0 at 64 px.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import TINY_LABELS, write_class_folder

ray = pytest.importorskip("ray")

from sortsight.cli import cli  # noqa: E402
from sortsight.errors import PredictError  # noqa: E402
from sortsight.predict_ray import collect_sources, list_uris, predict_paths_ray  # noqa: E402


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ray_engine")


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    """One local Ray instance for the module; its actors inherit this environment (the test cache)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir: Path) -> Path:
    return tiny_model_dir


@pytest.fixture(scope="module")
def images(workdir: Path) -> Path:
    root = write_class_folder(workdir / "images", TINY_LABELS, per_class=8, size=40, seed=7)
    (root / "bird" / "broken.jpg").write_bytes(b"this is not a jpeg")
    nested = root / "dog" / "deeper"
    nested.mkdir()
    shutil.copy(root / "dog" / "dog_000.png", nested / "again.PNG")
    return root


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _same_rows(got: list[dict[str, str]], want: list[dict[str, str]], *, path_of=lambda p: p) -> None:
    """Same rows in the same order; scores equal to 1e-5 (engines may differ in the last bits)."""
    assert [path_of(r["path"]) for r in got] == [r["path"] for r in want]
    for g, w in zip(got, want, strict=True):
        for column in ("label", "status", "error"):
            assert g[column] == w[column], (g, w)
        if w["score"]:
            assert abs(float(g["score"]) - float(w["score"])) <= 1e-5
        else:
            assert g["score"] == ""


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.suffix != ".jsonl")


@pytest.fixture(scope="module")
def local_run(workdir: Path, model_dir: Path, images: Path) -> Path:
    """The local engine's predictions and sorting — the reference for the Ray engine."""
    args = ["predict", str(model_dir), str(images), "--csv", str(workdir / "local.csv"),
            "--sort-into", str(workdir / "sorted_local"), "--threshold", "0.6"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return workdir / "local.csv"


def test_cli_ray_engine_writes_the_same_csv_and_sorts_the_same(
    ray_session: None, workdir: Path, model_dir: Path, images: Path, local_run: Path
) -> None:
    out = workdir / "ray.csv"
    result = CliRunner().invoke(cli, ["predict", str(model_dir), str(images), "--csv", str(out),
                                      "--sort-into", str(workdir / "sorted_ray"), "--threshold", "0.6",
                                      "--engine", "ray"])
    assert result.exit_code == 0, result.output
    assert "(ray)" in result.output
    want = _rows(local_run)
    got = _rows(out)
    assert len(got) == 26  # 24 images + a broken one + a nested copy, each exactly once
    _same_rows(got, want)
    statuses = {r["status"] for r in got}
    assert statuses == {"ok", "unsure", "unreadable"}, statuses
    assert next(r for r in got if r["path"].endswith("broken.jpg"))["error"]
    assert _tree(workdir / "sorted_ray") == _tree(workdir / "sorted_local")
    assert any(p.startswith("unsure/") for p in _tree(workdir / "sorted_ray"))


def test_ray_engine_resumes_a_file_the_local_engine_started(
    ray_session: None, workdir: Path, model_dir: Path, images: Path, local_run: Path
) -> None:
    lines = local_run.read_text(encoding="utf-8").splitlines(keepends=True)
    partial = workdir / "partial.csv"
    partial.write_text("".join(lines[:11]), encoding="utf-8")  # header + 10 rows, as after a kill
    summary = predict_paths_ray(str(model_dir), collect_sources([images]), partial, threshold=0.6,
                                batch_size=4, actors=1)
    assert summary.already_done == 10
    assert summary.predicted == 16
    assert summary.engine == "ray"
    _same_rows(_rows(partial), _rows(local_run))
    # nothing left to do: a third run writes nothing
    again = predict_paths_ray(str(model_dir), collect_sources([images]), partial, threshold=0.6)
    assert again.predicted == 0 and again.already_done == 26
    assert len(_rows(partial)) == 26


def test_object_store_uris_are_read_through_pyarrow(
    ray_session: None, workdir: Path, model_dir: Path, images: Path, local_run: Path
) -> None:
    uri = f"file://{images}/"
    sources = collect_sources([uri])
    assert all(s.startswith("file://") for s in sources)
    assert len(sources) == 26
    out = workdir / "uri.csv"
    summary = predict_paths_ray(str(model_dir), sources, out, threshold=0.6, actors=1, batch_size=8)
    assert summary.unreadable == 1
    got = sorted(_rows(out), key=lambda r: r["path"])
    want = sorted(_rows(local_run), key=lambda r: f"file://{r['path']}")
    _same_rows(got, want, path_of=lambda p: p[len("file://"):])


def test_bad_inputs_are_one_line_errors_before_ray_starts(
    workdir: Path, model_dir: Path, images: Path
) -> None:
    runner = CliRunner()
    not_a_model = runner.invoke(cli, ["predict", str(images), str(images), "--csv", str(workdir / "x.csv"),
                                      "--engine", "ray"])
    assert not_a_model.exit_code != 0
    assert "Error:" in not_a_model.output and "Traceback" not in not_a_model.output
    assert "model folder" in not_a_model.output

    uri_args = ["predict", str(model_dir), f"file://{images}/", "--csv", str(workdir / "y.csv"),
                "--sort-into", str(workdir / "s"), "--engine", "ray"]
    uri_sort = runner.invoke(cli, uri_args)
    assert uri_sort.exit_code != 0
    assert "--sort-into" in uri_sort.output and "Traceback" not in uri_sort.output

    with pytest.raises(PredictError, match="not found"):
        list_uris(f"file://{workdir}/no-such-folder/")
    assert not (workdir / "x.csv").exists() and not (workdir / "s").exists()


def test_an_unreachable_cluster_names_only_options_that_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    import sortsight.predict_ray as pr
    from sortsight.cli.predict import predict

    def refuse(**_k: object) -> None:
        raise ConnectionError("could not connect to ray://nowhere:10001")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    with pytest.raises(PredictError) as caught:
        pr._start_ray("ray://nowhere:10001")
    message = str(caught.value)
    assert "ray://nowhere:10001" in message and "RAY_ADDRESS" in message
    flags = {opt for p in predict.params for opt in getattr(p, "opts", ())}
    named = {word.strip("'.,()") for word in message.split() if word.startswith("--")} - {"--head"}
    assert "ray start --head" in message  # Ray's own command; every other flag must be predict's
    assert named <= flags, named - flags  # it once named a --ray-address flag that does not exist
