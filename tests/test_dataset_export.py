"""``sortsight export DATA --dataset-out/--dataset-to-hub``: a folder ``datasets.load_dataset`` reads
offline, a dataset card, a private push that fails fast offline with the folder intact."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import write_class_folder
from share_helpers import free_port, tree_digest

from sortsight.cli import cli
from sortsight.dataset_export import export_dataset, push_dataset_to_hub
from sortsight.errors import DataError, ExportError

FAKE_TOKEN = "hf_FakeTokenForTests0123456789abcdefXYZ"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "birds"
    write_class_folder(root / "train", ("cygnet", "duckling"), per_class=4)
    write_class_folder(root / "test", ("cygnet", "duckling"), per_class=2, seed=50)
    (root / "sources.csv").write_text("url,query,label\nhttp://x/1.png,duckling,duckling\n", encoding="utf-8")
    return root


def test_export_loads_with_datasets_offline(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    before = tree_digest(data)
    done = export_dataset(data, tmp_path / "export", shard_size=3)
    assert done.counts == {"train": {"cygnet": 4, "duckling": 4}, "test": {"cygnet": 2, "duckling": 2}}
    assert len(list((tmp_path / "export" / "data").glob("train-*.parquet"))) == 3  # 8 images, 3 a shard
    card = (tmp_path / "export" / "README.md").read_text(encoding="utf-8")
    assert "| duckling | 4 | 2 |" in card and "sources.csv" in card and "licence" in card
    assert (tmp_path / "export" / "sources.csv").is_file()
    ds = datasets.load_dataset(str(tmp_path / "export"), cache_dir=str(tmp_path / "hf-cache"))
    assert sorted(ds) == ["test", "train"] and ds["train"].num_rows == 8 and ds["test"].num_rows == 4
    assert ds["train"].features["label"].names == ["cygnet", "duckling"]
    row = ds["train"][0]
    original = data / "train" / ds["train"].features["label"].int2str(row["label"])
    assert row["image"].size == (48, 48) and original.is_dir()
    assert tree_digest(data) == before  # the source is only read


def test_export_refuses_a_used_folder_and_one_inside_the_data(data: Path, tmp_path: Path) -> None:
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(DataError, match="not empty"):
        export_dataset(data, used)
    assert (used / "notes.txt").read_text(encoding="utf-8") == "mine"
    with pytest.raises(DataError, match="inside the data folder"):
        export_dataset(data, data / "export")


class _Api:
    def __init__(self) -> None:
        self.endpoint = "http://127.0.0.1:1"
        self.calls: list[tuple[str, dict[str, object]]] = []

    def create_repo(self, repo_id: str, **kw: object) -> str:
        self.calls.append(("create_repo", {"repo_id": repo_id, **kw}))
        return f"https://hub.test/datasets/{repo_id}"

    def upload_folder(self, **kw: object) -> None:
        self.calls.append(("upload_folder", kw))


def test_push_is_a_private_dataset_repo(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sortsight.hub as hub

    done = export_dataset(data, tmp_path / "export")
    api = _Api()
    monkeypatch.setattr(hub, "check_hub_reachable", lambda endpoint, timeout=5.0: None)
    real = hub.push_to_hub
    monkeypatch.setattr(hub, "push_to_hub", lambda *a, **kw: real(*a, **kw, api=api))
    url = push_dataset_to_hub(done.folder, "me/birds", token=FAKE_TOKEN)
    assert url.endswith("me/birds")
    create = api.calls[0][1]
    assert create["repo_type"] == "dataset" and create["private"] is True
    with pytest.raises(ExportError, match="not a dataset export"):
        push_dataset_to_hub(data, "me/birds", token=FAKE_TOKEN)


def test_cli_dataset_to_hub_offline_fails_fast_with_the_export_intact(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    monkeypatch.chdir(tmp_path)
    start = time.monotonic()
    result = CliRunner().invoke(cli, ["export", str(data), "--dataset-to-hub", "me/birds"])
    assert time.monotonic() - start < 20
    assert result.exit_code == 1, result.output
    assert "Dataset: birds-dataset (12 images in 2 classes: train 8, test 4)" in result.output
    assert "cannot reach the Hugging Face Hub" in result.output and "unchanged" in result.output
    assert FAKE_TOKEN not in result.output and "Traceback" not in result.output
    assert len(list((tmp_path / "birds-dataset" / "data").glob("*.parquet"))) == 2
    again = CliRunner().invoke(cli, ["export", str(data), "--dataset-out", str(tmp_path / "second")])
    assert again.exit_code == 0 and "load_dataset" in again.output
    mixed = CliRunner().invoke(cli, ["export", str(data), "--dataset-out", "x", "--onnx"])
    assert mixed.exit_code == 1 and "leave out the model options" in mixed.output


def test_sortsight_reads_its_own_export_back_with_the_class_names(data: Path, tmp_path: Path) -> None:
    from sortsight.data import scan

    export_dataset(data, tmp_path / "export")
    back = scan(tmp_path / "export")
    assert tuple(back.classes) == ("cygnet", "duckling")
    assert sorted((i.split, i.label) for i in back.items) == sorted(
        [("train", c) for c in ("cygnet", "duckling") for _ in range(4)]
        + [("test", c) for c in ("cygnet", "duckling") for _ in range(2)]
    )


def test_multi_label_data_exports_a_sequence_of_class_labels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several tags per image: a ``labels`` column of ``Sequence(ClassLabel)`` (not one class per
    combination of tags), read back as the same tags by ``datasets`` and by sortsight."""
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    from conftest import make_image

    from sortsight.tagdata import scan_tags

    root = tmp_path / "adverts"
    (root / "img").mkdir(parents=True)
    tags = {"a.png": "people|text", "b.png": "text", "c.png": "", "d.png": "product|people"}
    for i, name in enumerate(tags):
        make_image(i % 3, seed=i).save(root / "img" / name)
    lines = ["image,labels"] + [f"img/{n},{t}" for n, t in tags.items()]
    (root / "labels.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    done = export_dataset(root / "labels.csv", tmp_path / "export")
    assert done.task == "multi_label" and done.classes == ("people", "product", "text")
    assert done.total == 4 and done.counts["train"] == {"people": 2, "product": 1, "text": 2}
    card = (tmp_path / "export" / "README.md").read_text(encoding="utf-8")
    assert "sequence:" in card and "| **images** | 4 |" in card
    ds = datasets.load_dataset(str(tmp_path / "export"), cache_dir=str(tmp_path / "hf-cache"))["train"]
    names = ds.features["labels"].feature.names
    by_path = {
        image["path"]: sorted(names[v] for v in labels)
        for image, labels in zip(ds.with_format("arrow")["image"].to_pylist(), ds["labels"], strict=True)
    }
    assert by_path == {
        "a.png": ["people", "text"],
        "b.png": ["text"],
        "c.png": [],
        "d.png": ["people", "product"],
    }
    back = scan_tags(tmp_path / "export")
    assert back.tags == ("people", "product", "text")
    assert sorted(sorted(i.tags) for i in back.items) == [
        [],
        ["people", "product"],
        ["people", "text"],
        ["text"],
    ]


def test_a_bad_repo_id_is_refused_before_anything_is_written(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    done = CliRunner().invoke(
        cli, ["export", str(data), "--dataset-out", str(out), "--dataset-to-hub", "no!!"]
    )
    assert done.exit_code == 1 and "is not a Hub repo id" in done.output
    assert not out.exists()
