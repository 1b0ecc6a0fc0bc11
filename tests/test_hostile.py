"""The standing hostile-input suite (issue 15): every kind of bad input over check, check
--doctor, train, predict --sort-into and undo gets a one-line error or a listed skip, the
right exit code, and leaves every input file byte-identical (hashed before and after).

The corpus (tests/hostile_corpus.py) is built once per module; one tiny model (``--strategy
head``, 64 px) is trained on it once and used by the predict cases. Permission cases run in one
child process without privileges (see ``permission_runner``)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hostile_corpus import (
    NON_UTF8,
    Corpus,
    build_corpus,
    copy_corpus,
    permission_runner,
    run_without_privileges,
    snapshot,
)

from sortsight.cli import cli
from sortsight.fileops import ActionLog, file_mode
from sortsight.sheets import contact_sheet

TRAIN = ["--strategy", "head", "--image-size", "64", "--batch-size", "8", "--mixed-precision", "no"]
PREDICT = ["--engine", "eager", "--workers", "0"]


def _run(*args: object) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def _one_line_error(result: Result) -> str:
    """Exit 1 and one ``Error:`` line (or click's usage error: exit 2, usage + one ``Error:`` line)."""
    assert result.exit_code in (1, 2), (result.exit_code, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.stderr
    assert len(lines) == 1 or (result.exit_code == 2 and lines[0].startswith("Usage:")), result.stderr
    return errors[0]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corpus]:
    c = build_corpus(tmp_path_factory.mktemp("hostile"))
    before = snapshot(c.root)
    yield c
    assert snapshot(c.root) == before, "an input file of the hostile corpus changed"
    os.chmod(c.data / "b" / "locked", 0o755)  # let pytest clean up


@pytest.fixture(scope="module")
def run(corpus: Corpus, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    out = tmp_path_factory.mktemp("hostile-run") / "run"
    result = _run("train", corpus.data, "--out", out, *TRAIN)
    assert result.exit_code == 0, result.output
    return out, result


def test_check_lists_every_bad_file_and_reads_every_good_one(corpus: Corpus) -> None:
    result = _run("check", corpus.data, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    skipped = {s["path"]: s["reason"] for s in summary["skipped"]}
    for rel, reason in corpus.skipped.items():
        assert reason in skipped.get(rel, ""), (rel, skipped.get(rel))
    for rel in [*corpus.usable, *corpus.ignored]:
        assert rel not in skipped, (rel, skipped[rel])
    readable_locked = 2 if os.geteuid() == 0 else 0  # root reads the two locked images
    assert summary["totals"]["total"] == 8 + len(corpus.usable) + readable_locked
    table = _run("check", corpus.data)
    assert table.exit_code == 0 and table.exception is None, table.output
    line = next(x for x in table.stdout.splitlines() if "file(s) skipped" in x)
    for reason in {r for r in corpus.skipped.values()}:
        assert reason in line, (reason, line)  # the one-line summary names every reason


def test_grid_and_contact_sheet_take_a_10000x2_strip(corpus: Corpus, tmp_path: Path) -> None:
    grid = tmp_path / "grid.png"
    result = _run("check", corpus.data, "--grid", grid)
    assert result.exit_code == 0 and result.exception is None, result.output
    assert stat.S_IMODE(grid.stat().st_mode) == file_mode()  # the umask, not mkstemp's 0600
    # the doctor's contact sheet is the same function; the full doctor is tested in test_doctor.py
    entries = [(corpus.data / rel, kind) for rel, kind in corpus.usable.items()]
    sheet = contact_sheet(entries + [(corpus.data / rel, r) for rel, r in corpus.skipped.items()], thumb=48)
    assert sheet.width > 0 and sheet.height > 0


def test_train_on_the_corpus_shows_the_skipped_files(corpus: Corpus, run: tuple[Path, Result]) -> None:
    out, result = run
    assert "file(s) skipped" in result.stdout, result.stdout
    for reason in set(corpus.skipped.values()):
        assert reason in result.stdout, reason
    assert "sortsight.json" in result.stdout  # where the full list is
    model = out / "model" / "model.safetensors"
    assert stat.S_IMODE(model.stat().st_mode) == file_mode()
    record = json.loads((out / "sortsight.json").read_text())
    used = [p for split in record["data"]["splits"].values() for p in split]
    assert any(p.endswith(NON_UTF8) for p in used)  # trained on, and recorded exactly


def _error_cases(c: Corpus, run: Path, tmp: Path) -> dict[str, tuple[list[object], str]]:
    a_file = tmp / "a_file.txt"
    a_file.write_text("mine")
    contacts = tmp / "contacts.csv"
    contacts.write_text("name,phone\nAda,123\n")
    nested = tmp / "oldrun"
    (nested / "images").mkdir(parents=True)
    (nested / "sortsight.json").write_text("{}")
    shutil.copytree(c.data / "a", nested / "images" / "a", symlinks=True)
    shutil.copytree(c.data / "b", nested / "images" / "b", symlinks=True, ignore=lambda d, n: ["locked"])
    return {
        "check: missing folder": (["check", tmp / "missing"], "does not exist"),
        "check --grid a folder": (["check", c.data, "--grid", tmp], "--grid"),
        "check --grid not .png": (["check", c.data, "--grid", tmp / "g.jpg"], ".png"),
        "check --doctor-out a file": (["check", c.data, "--doctor", "--doctor-out", a_file], "is a file"),
        "train --out a file": (["train", c.data, "--out", a_file], "is a file"),
        "train --overwrite data inside": (
            ["train", nested / "images", "--out", nested, "--overwrite"],
            "inside",
        ),
        "train --lr inf": (["train", c.data, "--out", tmp / "r1", "--lr", "inf"], "finite"),
        "train --lr nan": (["train", c.data, "--out", tmp / "r2", "--lr", "nan"], "finite"),
        "train --weight-decay -inf": (
            ["train", c.data, "--out", tmp / "r3", "--weight-decay", "-inf"],
            "finite",
        ),
        "train --time-budget inf": (
            ["train", c.data, "--out", tmp / "r4", "--time-budget", "inf"],
            "time budget",
        ),
        "predict --threshold inf": (["predict", run, c.data, "--threshold", "inf"], "finite"),
        "predict --dry-run alone": (["predict", run, c.data, "--dry-run"], "sort_into"),
        "predict --move alone": (["predict", run, c.data, "--move"], "sort_into"),
        "predict --follow-links --move": (
            ["predict", run, c.data, "--follow-links", "--move", "--sort-into", tmp / "s"],
            "links",
        ),
        "predict -o a folder": (["predict", run, c.data, "-o", tmp, *PREDICT], "is a folder"),
        "predict -o a user's CSV": (["predict", run, c.data, "-o", contacts, *PREDICT], "not a sortsight"),
        "predict --sort-into a file": (
            ["predict", run, c.data, "--sort-into", a_file, *PREDICT],
            "is a file",
        ),
        "predict: missing model": (["predict", tmp / "nomodel", c.data], "model"),
        "predict: missing input": (["predict", run, tmp / "none"], "not found"),
        "undo: missing log": (["undo", tmp / "none.jsonl"], "not found"),
    }


ERROR_CASES = 20
PERMISSION_CASES = 8  # the commands of test_without_permissions after its check


@pytest.mark.parametrize("index", range(ERROR_CASES))
def test_bad_options_and_outputs_are_one_line_errors(
    index: int, corpus: Corpus, run: tuple[Path, Result], tmp_path: Path
) -> None:
    cases = _error_cases(corpus, run[0], tmp_path)
    assert len(cases) == ERROR_CASES
    name, (args, needle) = list(cases.items())[index]
    before = snapshot(tmp_path)
    line = _one_line_error(_run(*args))
    assert needle.lower() in line.lower(), (name, line)
    assert snapshot(tmp_path) == before, name  # the user's file, CSV and old run are untouched


def _rows(csv_path: Path) -> dict[str, dict[str, str]]:
    with open(csv_path, encoding="utf-8", errors="surrogateescape", newline="") as fh:
        return {row["path"]: row for row in csv.DictReader(fh)}


def test_predict_and_sort_by_copy_reads_everything_and_changes_nothing(
    corpus: Corpus, run: tuple[Path, Result], tmp_path: Path
) -> None:
    out, dest = tmp_path / "p.csv", tmp_path / "sorted"
    args = ["predict", run[0], corpus.data, "-o", out, "--sort-into", dest, *PREDICT]
    dry = _run(*args, "--dry-run")  # prints odd names (markup, newlines, non-UTF-8) as they are
    assert dry.exit_code == 0 and dry.exception is None and not dest.exists(), dry.output
    result = _run(*args)  # resumes the dry run's predictions
    assert result.exit_code == 0 and result.exception is None, result.output
    rows = _rows(out)
    for rel in corpus.usable:
        path = str(corpus.data / rel)
        if rel.startswith("b/linked_dir/"):
            assert path not in rows  # a linked folder is not entered without --follow-links
        else:
            assert rows[path]["status"] in ("ok", "unsure"), (rel, rows[path])
    for rel in corpus.skipped:
        if rel.endswith((".txt", ".heic")) or rel == "loose.png":
            continue  # not an image by name (left out) / a loose file is predicted like any other
        assert rows[str(corpus.data / rel)]["status"] == "unreadable", rel
    placed = [p for p in dest.rglob("*") if p.is_file() and p.name != "sortsight-moves.jsonl"]
    ok = sum(r["status"] != "unreadable" for r in rows.values())
    assert len(placed) == ok  # every readable input is its own file, twins included
    assert any(p.name == NON_UTF8 for p in placed)


def test_predict_move_then_undo_restores_every_path(
    corpus: Corpus, run: tuple[Path, Result], tmp_path: Path
) -> None:
    data = copy_corpus(corpus, tmp_path / "data")
    before = snapshot(tmp_path)
    dest = tmp_path / "sorted"
    result = _run("predict", run[0], data, "-o", tmp_path / "p.csv", "--sort-into", dest, "--move", *PREDICT)
    assert result.exit_code == 0 and result.exception is None, result.output
    assert (data / "b" / "link_in.png").is_symlink()  # never moved through a link
    assert "never moved" in result.stdout
    assert (corpus.outside / "dir" / "out.png").is_file()
    assert not (data / "b" / "twin.png").exists() and not (data / "a" / "a0.png").exists()
    kinds = {e["action"] for e in ActionLog(dest / "sortsight-moves.jsonl").entries()}
    assert kinds == {"move"}
    undo = _run("undo", dest / "sortsight-moves.jsonl")
    assert undo.exit_code == 0, undo.output
    after = {
        k: v for k, v in snapshot(tmp_path).items() if not bytes.fromhex(k).startswith((b"sorted", b"p.csv"))
    }
    assert after == before


def test_predict_a_folder_into_itself_sorts_in_place(
    corpus: Corpus, run: tuple[Path, Result], tmp_path: Path
) -> None:
    data = copy_corpus(corpus, tmp_path / "inbox")
    before = snapshot(data)
    args = ["predict", run[0], data, "-o", tmp_path / "p.csv", "--sort-into", data, *PREDICT]
    result = _run(*args)
    assert result.exit_code == 0, result.output
    assert "No images found" not in result.output and "Sorted" in result.stdout
    sorted_once = snapshot(data)
    again = _run(*args)  # the copies it made are not taken as new inputs
    assert again.exit_code == 0, again.output
    assert snapshot(data).keys() == sorted_once.keys()
    assert _run("undo", data / "sortsight-moves.jsonl").exit_code == 0
    after = {
        k: v for k, v in snapshot(data).items() if "sortsight-moves" not in bytes.fromhex(k).decode("latin-1")
    }
    assert after == before


def test_without_permissions(corpus: Corpus, run: tuple[Path, Result], tmp_path: Path) -> None:
    prefix = permission_runner()
    if prefix is None:
        pytest.skip("no way to drop privileges here (root without setpriv): permission cases need it")
    tmp_path.chmod(0o755)
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    own_csv = tmp_path / "old.csv"
    own_csv.write_text("path,label,score,top_k,status,model,error\n")
    own_csv.chmod(0o444)
    model = tmp_path / "model"
    shutil.copytree(run[0] / "model", model)
    (model / "model.safetensors").chmod(0)
    for onnx in model.glob("*.onnx"):
        onnx.chmod(0)
    stuck = tmp_path / "stuck"
    stuck.mkdir()
    shutil.copy(corpus.data / "a" / "a0.png", stuck / "keep.png")
    stuck.chmod(0o555)
    read_only.chmod(0o555)
    before = snapshot(tmp_path)
    import sortsight

    here = str(Path(sortsight.__file__).resolve().parents[1])  # the child imports this checkout
    env = {**os.environ, "SORTSIGHT_CACHE": str(tmp_path / "cache"), "PYTHONPATH": here}
    commands = [
        ["check", str(corpus.data), "--json"],
        ["check", str(corpus.data), "--grid", str(read_only / "g.png")],
        ["check", str(corpus.data), "--doctor", "--doctor-out", str(read_only / "doctor")],
        ["train", str(corpus.data), "--out", str(read_only / "run")],
        ["predict", str(run[0]), str(stuck), "-o", str(read_only / "p.csv"), *PREDICT],
        ["predict", str(run[0]), str(stuck), "-o", str(own_csv), *PREDICT],
        [
            "predict",
            str(run[0]),
            str(stuck),
            "-o",
            str(tmp_path / "s.csv"),
            "--sort-into",
            str(read_only / "s"),
            *PREDICT,
        ],
        ["predict", str(model), str(stuck), "-o", str(tmp_path / "q.csv"), *PREDICT],
        [
            "predict",
            str(run[0]),
            str(stuck),
            "-o",
            str(tmp_path / "m.csv"),
            "--move",
            "--sort-into",
            str(tmp_path / "sorted"),
            *PREDICT,
        ],
    ]
    assert len(commands) == 1 + PERMISSION_CASES
    results = run_without_privileges(prefix, commands, env, cwd=tmp_path)
    check, *errors, moved = results
    assert check["code"] == 0, check
    skipped = {s["path"]: s["reason"] for s in json.loads(check["stdout"])["skipped"]}
    for rel, reason in corpus.locked.items():
        assert reason in skipped.get(rel, ""), (rel, skipped)
    for r in errors:
        assert r["crash"] is None and r["code"] == 1, r
        lines = [x for x in r["stderr"].splitlines() if x.strip()]
        assert len(lines) == 1 and lines[0].startswith("Error: "), r
    assert moved["code"] == 0 and moved["crash"] is None, moved
    assert "could not be removed" in moved["stdout"], moved["stdout"]
    (entry,) = ActionLog(tmp_path / "sorted" / "sortsight-moves.jsonl").entries()
    assert entry["action"] == "copy" and "could not be removed" in entry["note"]
    changed = {k for k, v in snapshot(tmp_path).items() if before.get(k) != v}
    assert all(bytes.fromhex(k).split(b"/")[0] in (b"sorted", b"cache", b"m.csv") for k in changed)
    for path in (stuck, read_only):
        path.chmod(0o755)


def test_the_suite_covers_the_kinds_it_claims(corpus: Corpus) -> None:
    """The count the docs quote: 44 corpus entries (30 usable, 6 skipped, 2 locked, 6 ignored),
    20 bad options/outputs, 8 permission cases besides the locked entries, and 3 sorting
    scenarios (copy, move + undo, a folder into itself): 75 kinds."""
    assert (len(corpus.usable), len(corpus.skipped), len(corpus.locked), len(corpus.ignored)) in (
        (30, 6, 2, 6),
        (29, 7, 2, 6),  # without pillow-heif the HEIC file is a listed skip
    )
    assert corpus.kinds + ERROR_CASES + PERMISSION_CASES + 3 == 75
