"""The embeddings index of an unlabelled pile, similarity search, the collection map, assisted labelling.

Small generated images at 64 px through the eager engine (the ONNX export is tested in
test_engines.py); one index per module is shared where a test only reads it.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import make_image, write_class_folder

from sortsight.errors import DataError, ModelError
from sortsight.index import EmbeddingIndex, build_index, load_index
from sortsight.labelling import LabelSession
from sortsight.similar import results_sheet, search

CLASSES = ("red", "green", "blue")
OPTS = {"image_size": 64, "engine": "eager", "num_workers": 0, "batch_size": 8}


def make_pile(root: Path, per_class: int = 8) -> Path:
    write_class_folder(root, CLASSES, per_class=per_class, size=40)
    (root / "broken.jpg").write_bytes(b"not a jpeg at all")
    (root / ".DS_Store").write_bytes(b"junk")
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("pile")
    pile = make_pile(base / "pile")
    build_index(pile, base / "pile.index", **OPTS)
    BUILT[:] = [base / "pile.index"]
    return pile, base / "pile.index"


def assert_same_vectors(index: EmbeddingIndex, skip: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    """The vectors of ``index`` equal those of the same images in the module's index."""
    reference = load_index(BUILT[0])
    mine, theirs = index.vectors(), reference.vectors()
    for i, rel in enumerate(index.relative_paths):
        if rel not in skip:
            np.testing.assert_allclose(mine[i], theirs[reference.position(rel)], atol=1e-5)


BUILT: list[Path] = []


def table_rows(index_dir: Path) -> list[dict[str, str]]:
    with open(index_dir / "files.csv", encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


# --------------------------------------------------------------------------- building


def test_build_lists_unreadable_and_stores_the_format(built: tuple[Path, Path]) -> None:
    pile, index_dir = built
    meta = json.loads((index_dir / "index.json").read_text())
    assert meta["format"] == "sortsight-index" and meta["backbone"]["id"] == "efficientnet_lite0@64"
    assert meta["files"] == 24 and meta["unreadable"] == 1
    rows = table_rows(index_dir)
    assert len(rows) == 25 and len({r["path"] for r in rows}) == 25
    broken = next(r for r in rows if r["path"] == "broken.jpg")
    assert broken["status"] == "unreadable" and broken["error"] == "not an image" and not broken["shard"]
    good = next(r for r in rows if r["path"] == "red/red_000.png")
    assert good["sha256"] == __import__("hashlib").sha256((pile / "red/red_000.png").read_bytes()).hexdigest()
    index = load_index(index_dir)
    assert len(index) == 24 and index.vectors().shape == (24, 1280)
    assert index.unreadable == [("broken.jpg", "not an image")]


def test_vectors_are_the_backbone_features(built: tuple[Path, Path]) -> None:
    from sortsight.features import extract_features

    _pile, index_dir = built
    index = load_index(index_dir)
    paths = index.paths[:5]
    expected = extract_features(paths, image_size=64, use_cache=False)
    np.testing.assert_allclose(index.vectors()[:5], expected, rtol=1e-3, atol=1e-3)


def test_each_input_size_gets_its_own_onnx_export() -> None:
    import torch

    from sortsight._index_embed import _weights_folder
    from sortsight.engines import source_digest

    net = torch.nn.Linear(2, 2)  # the weights are the same; an exported graph's input side is not
    small, large = (
        _weights_folder(net, "efficientnet_lite0", 64),
        _weights_folder(net, "efficientnet_lite0", 96),
    )
    assert source_digest(small) != source_digest(large)
    assert source_digest(small) == source_digest(_weights_folder(net, "efficientnet_lite0", 64))


def test_rerun_embeds_only_new_and_changed_files(built: tuple[Path, Path], tmp_path: Path) -> None:
    pile = make_pile(tmp_path / "pile", per_class=3)
    out = tmp_path / "pile.index"
    first = build_index(pile, out, **OPTS)
    assert (first.embedded, first.unreadable, first.already) == (9, 1, 0)
    assert first.skipped == [(str(pile / "broken.jpg"), "not an image")]
    stamp = json.loads((out / "index.json").read_text())["updated"]
    again = build_index(pile, out, **OPTS)
    assert (again.embedded, again.unreadable, again.already) == (0, 0, 10)
    assert json.loads((out / "index.json").read_text())["updated"] == stamp  # derived caches stay valid
    make_image(2, size=40, seed=77).save(pile / "red" / "red_001.png")  # changed content
    os.utime(pile / "red" / "red_001.png", ns=(1, 1))
    make_image(1, size=40, seed=78).save(pile / "new.png")
    (pile / "green" / "green_000.png").unlink()
    third = build_index(pile, out, **OPTS)
    assert (third.embedded, third.already, third.removed) == (2, 8, 1)
    rows = table_rows(out)
    assert sorted(r["path"] for r in rows) == sorted(
        p.relative_to(pile).as_posix() for p in pile.rglob("*") if p.is_file() and not p.name.startswith(".")
    )
    assert_same_vectors(load_index(out), skip={"red/red_001.png", "new.png"})


def test_another_backbone_and_bad_folders_are_refused(built: tuple[Path, Path], tmp_path: Path) -> None:
    pile, index_dir = built
    with pytest.raises(
        ModelError, match="built with backbone efficientnet_lite0@64, not efficientnet_lite0@96"
    ):
        build_index(pile, index_dir, **{**OPTS, "image_size": 96})
    with pytest.raises(ModelError, match="built with backbone"):
        load_index(index_dir, backbone="efficientnet_lite1@240")
    with pytest.raises(DataError, match="indexes"):
        build_index(make_pile(tmp_path / "other", per_class=1), index_dir, **OPTS)
    with pytest.raises(DataError, match="not a folder"):
        build_index(tmp_path / "missing", tmp_path / "x.index", **OPTS)
    with pytest.raises(DataError, match="inside the pile"):
        build_index(pile, pile / "in.index", **OPTS)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("mine")
    with pytest.raises(DataError, match="not a sortsight index"):
        build_index(pile, tmp_path / "notes", **OPTS)
    assert (tmp_path / "notes" / "a.txt").read_text() == "mine"
    with pytest.raises(DataError, match="not a sortsight index"):
        load_index(tmp_path / "notes")


_SLOW_BUILD = textwrap.dedent(
    """
    import sys, time
    from sortsight.index import build_index
    def slow(event):
        time.sleep(0.3)  # a slow machine: the test's kill lands mid-run
    build_index(sys.argv[1], sys.argv[2], image_size=64, engine="eager", num_workers=0, batch_size=4,
                shard_size=4, progress=slow)
    """
)


def test_kill_9_mid_run_then_resume_gives_no_duplicates_or_gaps(
    built: tuple[Path, Path], tmp_path: Path
) -> None:
    pile = make_pile(tmp_path / "pile")  # the same images as the module's index
    out = tmp_path / "pile.index"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_BUILD, str(pile), str(out)], env=env)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if (out / "files.csv").is_file() and len(table_rows(out)) >= 8:
                break
            assert proc.poll() is None, "the build ended before it could be killed"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    partial = len(table_rows(out))
    assert 8 <= partial < 25
    resumed = build_index(pile, out, **OPTS)
    assert resumed.embedded + resumed.unreadable == 25 - resumed.already and resumed.already >= 8
    rows = table_rows(out)
    assert len(rows) == 25 and len({r["path"] for r in rows}) == 25
    named = {int(r["shard"]) for r in rows if r["shard"]}
    assert {int(p.stem) for p in (out / "shards").glob("*.npy")} == named  # no orphan shard left
    assert_same_vectors(load_index(out))


# --------------------------------------------------------------------------- similar


def test_similar_by_pile_image_and_outside_image(built: tuple[Path, Path], tmp_path: Path) -> None:
    pile, index_dir = built
    index = load_index(index_dir)
    found = search(index, pile / "red" / "red_003.png", top=5)
    assert len(found) == 5 and [m.rank for m in found] == [1, 2, 3, 4, 5]
    assert all(m.path != pile / "red" / "red_003.png" for m in found)
    assert [m.score for m in found] == sorted((m.score for m in found), reverse=True)
    assert sum(m.path.parent.name == "red" for m in found) >= 4
    outside = tmp_path / "query.png"
    shutil.copy(pile / "blue" / "blue_005.png", outside)
    best = search(index, outside, top=3, engine="eager")[0]
    assert best.path == pile / "blue" / "blue_005.png" and best.score > 0.999
    sheet = results_sheet(found, pile / "red" / "red_003.png", tmp_path / "sheet.png")
    from PIL import Image

    assert Image.open(sheet).size[0] > 128 * 5
    with pytest.raises(DataError, match="not found"):
        search(index, tmp_path / "nope.jpg")


def test_similar_with_faiss_agrees_with_exact_search(built: tuple[Path, Path]) -> None:
    pytest.importorskip("faiss")
    pile, index_dir = built
    index = load_index(index_dir)
    exact = search(index, pile / "green" / "green_002.png", top=5)
    approx = search(index, pile / "green" / "green_002.png", top=5, ann_threshold=0)
    assert (index_dir / "vectors.faiss").is_file()
    assert [m.path for m in approx][:3] == [m.path for m in exact][:3]
    np.testing.assert_allclose([m.score for m in approx][:3], [m.score for m in exact][:3], atol=1e-4)


def test_cli_index_similar_json_and_map(tmp_path: Path) -> None:
    from sortsight.cli import cli

    pile = make_pile(tmp_path / "pile", per_class=4)
    runner = CliRunner()
    result = runner.invoke(
        cli,
        ["index", str(pile), "--out", str(tmp_path / "p.index"), "--image-size", "64", "--engine", "eager"],
    )
    assert result.exit_code == 0, result.output
    assert "12 embedded" in result.output and "broken.jpg: not an image" in result.output
    result = runner.invoke(
        cli, ["similar", str(tmp_path / "p.index"), str(pile / "red/red_000.png"), "--top", "3", "--json"]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert len(payload["results"]) == 3 and {"rank", "path", "score"} <= set(payload["results"][0])
    labels = tmp_path / "labels.csv"
    labels.write_text("image,label\npile/red/red_000.png,warm\n")
    result = runner.invoke(
        cli,
        [
            "map",
            str(tmp_path / "p.index"),
            "--out",
            str(tmp_path / "m.html"),
            "--method",
            "tsne",
            "--labels",
            str(labels),
        ],
    )
    assert result.exit_code == 0, result.output
    html = (tmp_path / "m.html").read_text()
    assert '"p": "red/red_000.png"' in html and '"l": "warm"' in html and "data:image/jpeg;base64," in html
    result = runner.invoke(cli, ["similar", str(tmp_path / "p.index"), str(tmp_path / "none.png")])
    assert result.exit_code == 1 and result.output.startswith("Error: Query image")
    result = runner.invoke(
        cli, ["index", str(pile), "--out", str(tmp_path / "p.index"), "--image-size", "96"]
    )
    assert result.exit_code == 1 and "built with backbone" in result.output


def test_map_clusters_follow_the_classes(built: tuple[Path, Path], tmp_path: Path) -> None:
    from sortsight.collection_map import compute_map, map_payload, per_image

    _, index_dir = built
    index = load_index(index_dir)
    cmap = compute_map(index, method="tsne", clusters=6)
    assert cmap.xy.shape == (24, 2) and cmap.xy.min() >= 0 and cmap.xy.max() <= 1
    truth = [p.parent.name for p in index.paths]
    for cluster in set(cmap.clusters.tolist()):  # the colours are easy: clusters are nearly pure
        members = [t for t, c in zip(truth, cmap.clusters, strict=True) if c == cluster]
        assert max(members.count(name) for name in CLASSES) >= 0.75 * len(members)
    again = compute_map(index, method="tsne", clusters=6)  # from the cache beside the index
    np.testing.assert_array_equal(again.xy, cmap.xy)
    table = tmp_path / "predictions.csv"
    table.write_text(f"path,label,score\n{index.paths[0]},warm,0.9\nelsewhere.png,cold,0.8\n")
    payload = map_payload(index, cmap, predictions=per_image(index, table, "label"), thumbs=False)
    assert [p["g"] for p in payload["points"]][:2] == ["warm", ""] and "t" not in payload["points"][0]
    # a labels file is read as training reads it: a spreadsheet's TSV too
    labels = tmp_path / "labels.tsv"
    labels.write_text(f"image\tlabel\n{index.paths[1]}\tcold\n")
    assert per_image(index, labels)[1] == "cold"


# --------------------------------------------------------------------------- labelling


def test_labelling_session_suggests_refits_and_persists(built: tuple[Path, Path], tmp_path: Path) -> None:
    _pile, index_dir = built
    session = LabelSession(tmp_path / "labelling", index=index_dir)
    with pytest.raises(DataError, match="at least two classes"):
        session.classify(session.index.vectors()[:1])
    first = session.next(3)
    assert len({s.position for s in first}) == 3 and all(s.guess == "" for s in first)
    assert len({s.path.parent.name for s in first}) >= 2  # a diverse start, not three of a kind
    for name in CLASSES:
        session.add_class(name)
    truth = {i: p.parent.name for i, p in enumerate(session.index.paths)}
    for _ in range(9):
        pick = session.next(1)[0]
        session.label(pick.position, truth[pick.position])
    assert session.probs is not None and session.fit_seconds < 1.0
    guesses = session.predictions()
    assert sum(guesses[i] == truth[i] for i in truth) >= 0.9 * len(truth)
    assert session.classify(session.index.vectors()[:6]) == guesses[:6]  # the same head on raw vectors
    likely = session.next(4, mode="likely", target="green")
    assert [truth[s.position] for s in likely] == ["green"] * 4 and likely[0].score >= likely[-1].score
    session.reject(likely[0].position, "green")
    assert likely[0].position not in {s.position for s in session.next(10, mode="likely", target="green")}
    with pytest.raises(DataError, match="cannot be a class name"):
        session.add_class("a/b")
    with pytest.raises(DataError, match="Unknown mode"):
        session.next(1, mode="random")
    reopened = LabelSession(tmp_path / "labelling")  # a restart: everything comes back from disk
    assert reopened.labels == session.labels and reopened.classes == list(CLASSES)
    assert reopened.rejected == {"green": {likely[0].position}}
    assert reopened.stats()["labelled"] == 9


def test_labels_export_reads_as_a_labels_file_and_sorting_is_undoable(
    built: tuple[Path, Path], tmp_path: Path
) -> None:
    from sortsight.labelfile import read_labels_file
    from sortsight.undo import undo_log

    pile, _index_dir = built
    copy = tmp_path / "pile"
    shutil.copytree(pile, copy)
    index = tmp_path / "copy.index"
    build_index(copy, index, **OPTS)
    session = LabelSession(tmp_path / "labelling", index=index)
    with pytest.raises(DataError, match="No image is labelled"):
        session.export(tmp_path / "labels.csv")
    session.label([copy / "red/red_000.png", copy / "red/red_001.png"], "warm")
    session.label(copy / "blue/blue_000.png", "cold")
    _, rows, skipped = read_labels_file(session.export(tmp_path / "out" / "labels.csv"))
    assert (
        sorted((p.name, label) for p, label, _ in rows)
        == [
            ("blue_000.png", "cold"),
            ("red_000.png", "warm"),
            ("red_001.png", "warm"),
        ]
        and not skipped
    )
    log = session.sort_into(tmp_path / "sorted", move=True)
    assert (tmp_path / "sorted/warm/red_000.png").is_file() and not (copy / "red/red_000.png").exists()
    undo_log(log)
    assert (copy / "red/red_000.png").is_file() and not (tmp_path / "sorted/warm/red_000.png").exists()
