"""Tests for sortsight.fix (relabel / delete-to-trash decisions, logged, with undo) and its CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from sortsight.cli import cli
from sortsight.data import scan
from sortsight.errors import DataError
from sortsight.fileops import sha256_file
from sortsight.fix import apply_decisions, relabel, trash, undo


def _tree(root: Path) -> dict[str, str]:
    """Relative path → content hash of every visible file (the trash and log excluded)."""
    return {
        p.relative_to(root).as_posix(): sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
        and p.name != "sortsight-moves.jsonl"
    }


def _write_csv(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    path.write_text("path,action,new_label\n" + "".join(",".join(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_apply_then_undo_restores_everything(image_folder: Path, tmp_path: Path) -> None:
    before = _tree(image_folder)
    decisions = _write_csv(
        tmp_path / "decisions.csv",
        [
            ("cats/cats_000.png", "relabel", "dogs"),
            ("dogs/dogs_001.png", "delete", ""),
            ("cats/cats_002.png", "keep", ""),
        ],
    )
    summary = apply_decisions(decisions, root=image_folder)

    assert summary.relabelled == 1 and summary.deleted == 1
    assert (image_folder / "dogs" / "cats_000.png").is_file() and not (
        image_folder / "cats" / "cats_000.png"
    ).exists()
    trashed = image_folder / ".sortsight-trash" / "dogs" / "dogs_001.png"
    assert trashed.is_file() and sha256_file(trashed) == before["dogs/dogs_001.png"]
    log = [json.loads(x) for x in (image_folder / "sortsight-moves.jsonl").read_text().splitlines()]
    assert [e["action"] for e in log] == ["relabel", "delete"]
    assert log[0]["old_label"] == "cats" and log[0]["new_label"] == "dogs"
    assert log[0]["sha256"] == before["cats/cats_000.png"]
    # the dataset now sees the new label, and the trash is not scanned
    ds = scan(image_folder, verify=False)
    assert dict(zip([i.path.name for i in ds.items], ds.labels, strict=True))["cats_000.png"] == "dogs"
    assert len(ds) == 19

    undone = undo(summary.log_path)
    assert len(undone) == 2
    assert _tree(image_folder) == before
    assert undo(summary.log_path) == []  # a second undo does nothing


def test_dry_run_changes_nothing(image_folder: Path, tmp_path: Path) -> None:
    before = _tree(image_folder)
    rows = [("cats/cats_000.png", "relabel", "dogs"), ("dogs/dogs_001.png", "delete", "")]
    summary = apply_decisions(rows, root=image_folder, dry_run=True)
    assert [r.status for r in summary.results] == ["planned", "planned"]
    assert summary.results[0].destination == str((image_folder / "dogs" / "cats_000.png").resolve())
    assert _tree(image_folder) == before
    assert not (image_folder / "sortsight-moves.jsonl").exists()
    assert not (image_folder / ".sortsight-trash").exists()


def test_bad_rows_change_nothing(image_folder: Path) -> None:
    before = _tree(image_folder)
    cases = [
        ([("cats/cats_000.png", "relabel", "dogs"), ("cats/nope.png", "delete", "")], "not found"),
        ([("cats/cats_000.png", "rename", "x")], "unknown action 'rename'"),
        ([("cats/cats_000.png", "relabel", "")], "needs a new_label"),
        ([("cats/cats_000.png", "relabel", "../evil")], "not a usable folder name"),
        ([("../outside.png", "delete", "")], "outside the data folder"),
        (
            [("cats/cats_000.png", "delete", ""), ("cats/cats_000.png", "relabel", "dogs")],
            "different decision",
        ),
    ]
    for rows, message in cases:
        with pytest.raises(DataError, match=message):
            apply_decisions(rows, root=image_folder)
    assert _tree(image_folder) == before


def test_relabel_never_overwrites_and_handles_identical_copies(image_folder: Path) -> None:
    cats, dogs = image_folder / "cats", image_folder / "dogs"
    # a different image with the same name already in the target folder → suffix
    (dogs / "cats_000.png").write_bytes((dogs / "dogs_000.png").read_bytes())
    clash_before = sha256_file(dogs / "cats_000.png")
    result = relabel(cats / "cats_000.png", "dogs", root=image_folder)
    assert result.status == "done" and Path(result.destination or "").name == "cats_000 (1).png"
    assert sha256_file(dogs / "cats_000.png") == clash_before
    # the exact same content already in the target folder → this copy goes to the trash, not lost
    (dogs / "cats_001.png").write_bytes((cats / "cats_001.png").read_bytes())
    dup = relabel(cats / "cats_001.png", "dogs", root=image_folder)
    assert dup.status == "duplicate" and ".sortsight-trash" in (dup.destination or "")
    assert not (cats / "cats_001.png").exists() and (dogs / "cats_001.png").is_file()
    undo(image_folder / "sortsight-moves.jsonl")
    assert (cats / "cats_000.png").is_file() and (cats / "cats_001.png").is_file()
    assert (dogs / "cats_001.png").is_file()  # the copy that was there before stays


def test_split_layout_and_single_actions(make_folder: Callable[..., Path], tmp_path: Path) -> None:
    root = tmp_path / "splits"
    root.mkdir()
    for split in ("train", "validation"):
        make_folder(classes=("maps", "letters"), per_class=3).rename(root / split)
    moved = relabel(root / "train" / "maps" / "maps_000.png", "letters", root=root)
    assert Path(moved.destination or "") == (root / "train" / "letters" / "maps_000.png").resolve()
    gone = trash(root / "validation" / "letters" / "letters_002.png", root=root, trash_dir=tmp_path / "bin")
    assert Path(gone.destination or "") == tmp_path / "bin" / "validation" / "letters" / "letters_002.png"
    entries = undo(root / "sortsight-moves.jsonl")
    assert len(entries) == 2
    assert (root / "train" / "maps" / "maps_000.png").is_file()
    assert (root / "validation" / "letters" / "letters_002.png").is_file()
    # through the CLI with absolute paths: the data folder above the split folders is found
    decisions = _write_csv(
        tmp_path / "d.csv", [(str(root / "train" / "maps" / "maps_001.png"), "delete", "")]
    )
    result = CliRunner().invoke(cli, ["fix", str(decisions)])
    assert result.exit_code == 0, result.output
    assert (root / ".sortsight-trash" / "train" / "maps" / "maps_001.png").is_file()
    assert len((root / "sortsight-moves.jsonl").read_text().splitlines()) == 5  # 2 + 2 undos + 1
    with pytest.raises(DataError, match="not in a class folder"):
        (root / "loose.png").write_bytes(b"x")
        relabel(root / "loose.png", "maps", root=root)


def test_cli_fix_and_undo(image_folder: Path, tmp_path: Path) -> None:
    before = _tree(image_folder)
    runner = CliRunner()
    # absolute paths in a CSV kept elsewhere: the data folder is found from the paths
    decisions = _write_csv(
        tmp_path / "decisions.csv",
        [
            (str(image_folder / "cats" / "cats_003.png"), "relabel", "dogs"),
            (str(image_folder / "dogs" / "dogs_004.png"), "delete", ""),
        ],
    )
    dry = runner.invoke(cli, ["fix", str(decisions), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "Would relabel 1" in dry.output and _tree(image_folder) == before

    done = runner.invoke(cli, ["fix", str(decisions)])
    assert done.exit_code == 0, done.output
    assert (image_folder / "dogs" / "cats_003.png").is_file()
    log = image_folder / "sortsight-moves.jsonl"
    assert f"sortsight undo {log}" in done.output.replace("\n", "")

    back = runner.invoke(cli, ["undo", str(log)])
    assert back.exit_code == 0 and "Undid 2 action(s)." in back.output
    assert _tree(image_folder) == before
    assert "Nothing to undo." in runner.invoke(cli, ["undo", str(log)]).output

    for args, message in [
        (["fix", str(tmp_path / "missing.csv")], "not found"),
        (
            [
                "fix",
                str(_write_csv(tmp_path / "bad.csv", [("cats/nope.png", "delete", "")])),
                "--root",
                str(image_folder),
            ],
            "not found",
        ),
        (["undo", str(tmp_path / "no-log.jsonl")], "not found"),
    ]:
        result = runner.invoke(cli, args)
        assert result.exit_code == 1 and "Error:" in result.output and message in result.output
        assert "Traceback" not in result.output


@pytest.mark.parametrize("label", ["train", "Validation", "test", "val", "dev", "testing"])
def test_split_folder_names_are_refused_as_labels(image_folder: Path, tmp_path: Path, label: str) -> None:
    """A class folder named like a split would turn the data into split folders (and hide classes)."""
    before = _tree(image_folder)
    decisions = _write_csv(tmp_path / "d.csv", [("cats/cats_000.png", "relabel", label)])
    result = CliRunner().invoke(cli, ["fix", str(decisions), "--root", str(image_folder)])
    assert result.exit_code == 1 and f"'{label}' is the name of a split folder" in result.output
    assert "Traceback" not in result.output
    with pytest.raises(DataError, match="is the name of a split folder"):
        relabel(image_folder / "cats/cats_000.png", label, root=image_folder)
    assert _tree(image_folder) == before and not (image_folder / "sortsight-moves.jsonl").exists()
