"""data.py, labelfile.py, hfdata.py: every dataset source, the split, the summary, the errors."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import make_image, write_class_folder
from PIL import Image

from sortsight import data
from sortsight.data import ImageDataset, Item, load_dataset, scan, split_dataset, summarize
from sortsight.errors import ConfigError, DataError
from sortsight.progress import ProgressEvent
from sortsight.sheets import sample_grid


def _rel(ds: ImageDataset, split: str | None = None) -> list[str]:
    items = ds.items if split is None else ds.by_split(split)
    return sorted(ds.relative(it.path) for it in items)


# ------------------------------------------------------------------ class folders


def test_class_folders_with_junk_and_bad_files(make_folder: Callable[..., Path]) -> None:
    root = make_folder(classes=("dogs", "cats"), per_class=6)
    (root / "cats" / ".DS_Store").write_bytes(b"junk")
    (root / "cats" / "._cats_000.png").write_bytes(b"appledouble")
    (root / "cats" / "Thumbs.db").write_bytes(b"junk")
    (root / ".hidden").mkdir()
    make_image(0).save(root / ".hidden" / "x.png")
    (root / "cats" / "broken.jpg").write_text("not a picture")
    (root / "cats" / "empty.png").write_bytes(b"")
    (root / "cats" / "notes.txt").write_text("hello")
    make_image(0).save(root / "loose.png")
    (root / "dogs" / "nested").mkdir()
    make_image(1).save(root / "dogs" / "nested" / "deep.JPG")
    events: list[ProgressEvent] = []
    ds = scan(root, progress=events.append)
    assert ds.source == "folder" and ds.classes == ("cats", "dogs")
    assert ds.counts() == {"cats": {"": 6}, "dogs": {"": 7}}
    assert "dogs/nested/deep.JPG" in _rel(ds)
    reasons = {ds.relative(s.path): s.reason for s in ds.skipped}
    assert reasons == {
        "cats/broken.jpg": "not an image",
        "cats/empty.png": "empty file",
        "cats/notes.txt": "unsupported file type '.txt'",
        "loose.png": "not in a class folder",
    }
    assert events[-1].phase == "verify" and events[-1].step == events[-1].total == 15
    assert ds.image_sizes[ds.items[0].path] == (48, 48)
    assert ds.labels == [it.label for it in ds.items] and ds.class_to_index == {"cats": 0, "dogs": 1}


def test_no_verify_only_drops_empty_files(make_folder: Callable[..., Path]) -> None:
    root = make_folder(per_class=3)
    (root / "cats" / "broken.jpg").write_text("x")
    (root / "cats" / "empty.jpg").write_bytes(b"")
    ds = scan(root, verify=False)
    assert len(ds) == 7 and [s.reason for s in ds.skipped] == ["empty file"]
    assert ds.image_sizes == {}


# ------------------------------------------------------------------ split folders


def test_split_folders_are_kept(tmp_path: Path) -> None:
    write_class_folder(tmp_path / "d" / "train", per_class=8)
    write_class_folder(tmp_path / "d" / "valid", per_class=2, seed=100)
    write_class_folder(tmp_path / "d" / "Test", per_class=3, seed=200)
    ds = load_dataset(tmp_path / "d", valid_split=0.5, test_split=0.5)
    assert ds.source == "split-folders"
    assert ds.counts() == {c: {"train": 8, "validation": 2, "test": 3} for c in ("cats", "dogs")}
    assert all(
        it.path.parts[-3] == {"train": "train", "validation": "valid", "test": "Test"}[it.split]
        for it in ds.items
    )


def test_missing_validation_is_carved_from_train(tmp_path: Path) -> None:
    write_class_folder(tmp_path / "d" / "train", per_class=10)
    write_class_folder(tmp_path / "d" / "test", per_class=3, seed=50)
    ds = load_dataset(tmp_path / "d", valid_split=0.2)
    assert ds.counts() == {c: {"train": 8, "validation": 2, "test": 3} for c in ("cats", "dogs")}
    assert all("/train/" in it.path.as_posix() for it in ds.by_split("validation"))


def test_class_only_in_validation_is_an_error(tmp_path: Path) -> None:
    write_class_folder(tmp_path / "d" / "train", per_class=4)
    write_class_folder(tmp_path / "d" / "val", classes=("cats", "dogs", "owls"), per_class=2)
    with pytest.raises(DataError, match="'owls' has images in validation/test but none in train"):
        load_dataset(tmp_path / "d")


# ------------------------------------------------------------------ labels files


def _flat_images(folder: Path, n: int = 6) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        make_image(i % 2, seed=i).save(folder / f"img{i}.png")
        names.append(f"imgs/img{i}.png")
    return names


def test_csv_autotrain_columns_relative_paths(tmp_path: Path) -> None:
    names = _flat_images(tmp_path / "imgs")
    rows = "\n".join(f"{n},{'even' if i % 2 == 0 else 'odd'}" for i, n in enumerate(names))
    (tmp_path / "labels.csv").write_text("image,target\n" + rows + "\n")
    ds = load_dataset(tmp_path / "labels.csv", valid_split=0.34)
    assert ds.source == "labels-file" and ds.root == tmp_path and ds.classes == ("even", "odd")
    assert ds.counts() == {"even": {"train": 2, "validation": 1}, "odd": {"train": 2, "validation": 1}}


@pytest.mark.parametrize(
    ("filename", "content"),
    [
        ("labels.csv", "file,label\n{a},x\n{b},y\n"),
        ("labels.tsv", "file\tlabel\n{a}\tx\n{b}\ty\n"),
        ("labels.csv", "file;label\n{a};x\n{b};y\n"),
        ("labels.jsonl", '{{"file_name": "{a}", "label": "x"}}\n{{"file_name": "{b}", "label": "y"}}\n'),
    ],
    ids=["fastai-csv", "tsv", "semicolon", "jsonl"],
)
def test_labels_file_formats(tmp_path: Path, filename: str, content: str) -> None:
    names = _flat_images(tmp_path / "imgs", 2)
    (tmp_path / filename).write_text(content.format(a=names[0], b=names[1]))
    ds = scan(tmp_path / filename)
    assert [(ds.relative(it.path), it.label) for it in ds.items] == [(names[0], "x"), (names[1], "y")]


def test_labels_file_saved_by_excel_in_cp1252(tmp_path: Path) -> None:
    (tmp_path / "imgs").mkdir()
    for i, name in enumerate(("église.png", "forêt.png")):
        make_image(i, seed=i).save(tmp_path / "imgs" / name)
    text = "image;target\nimgs/église.png;bâtiment\nimgs/forêt.png;paysage\n"
    (tmp_path / "labels.csv").write_bytes(text.encode("cp1252"))
    ds = scan(tmp_path / "labels.csv")
    assert {it.path.name: it.label for it in ds.items} == {"église.png": "bâtiment", "forêt.png": "paysage"}


def test_labels_file_split_columns_and_folder_discovery(tmp_path: Path) -> None:
    names = _flat_images(tmp_path / "imgs", 6)
    lines = [f"{n},{'a' if i < 3 else 'b'},{'true' if i in (0, 3) else 'false'}" for i, n in enumerate(names)]
    (tmp_path / "labels.csv").write_text("fname,lbl,is_valid\n" + "\n".join(lines) + "\n")
    ds = load_dataset(tmp_path, image_column="fname", target_column="lbl")  # the folder: finds labels.csv
    assert ds.source == "labels-file"
    assert ds.counts() == {"a": {"train": 2, "validation": 1}, "b": {"train": 2, "validation": 1}}
    assert {ds.relative(it.path) for it in ds.by_split("validation")} == {names[0], names[3]}


def test_labels_file_missing_files_are_listed(tmp_path: Path) -> None:
    _flat_images(tmp_path / "imgs", 2)
    body = "image,target\nimgs/img0.png,a\n" + "".join(f"imgs/gone{i}.png,b\n" for i in range(5))
    (tmp_path / "labels.csv").write_text(body)
    with pytest.raises(DataError) as info:
        scan(tmp_path / "labels.csv")
    msg = str(info.value)
    assert (
        "names 5 file(s) that do not exist" in msg
        and "imgs/gone0.png, imgs/gone1.png, imgs/gone2.png, …" in msg
    )
    assert "\n" not in msg


def test_labels_file_of_urls_points_to_fetch(tmp_path: Path) -> None:
    (tmp_path / "urls.csv").write_text(
        "image,label\nhttps://example.org/a.jpg,a\nhttps://example.org/b.jpg,b\n"
    )
    with pytest.raises(DataError, match=r"lists image URLs .*'sortsight fetch"):
        scan(tmp_path / "urls.csv")


def test_unknown_column_suggests_closest(tmp_path: Path) -> None:
    names = _flat_images(tmp_path / "imgs", 2)
    (tmp_path / "l.csv").write_text(f"image,category\n{names[0]},a\n{names[1]},b\n")
    with pytest.raises(DataError, match=r"Column 'categroy' not found .* Did you mean 'category'"):
        scan(tmp_path / "l.csv", target_column="categroy")
    (tmp_path / "m.csv").write_text(f"picture,kind\n{names[0]},a\n")
    with pytest.raises(DataError, match=r"No image column .*--image-column"):
        scan(tmp_path / "m.csv")


def test_unlabelled_rows_are_skipped(tmp_path: Path) -> None:
    names = _flat_images(tmp_path / "imgs", 3)
    (tmp_path / "l.csv").write_text(f"image,target\n{names[0]},a\n{names[1]},\n{names[2]},b\n")
    ds = scan(tmp_path / "l.csv")
    assert len(ds) == 2 and [s.reason for s in ds.skipped] == ["no label"]


# ------------------------------------------------------------------ Hugging Face datasets


def _png_bytes(index: int) -> bytes:
    buf = io.BytesIO()
    make_image(index % 2, seed=index).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def hf_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., object]:
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("SORTSIGHT_CACHE", str(tmp_path / "cache"))

    def build(n: int = 8, image_col: str = "image", label_col: str = "label") -> object:
        features = datasets.Features(
            {image_col: datasets.Image(), label_col: datasets.ClassLabel(names=["apple", "pear"])}
        )
        rows = {
            image_col: [{"bytes": _png_bytes(i), "path": None} for i in range(n)],
            label_col: [i % 2 for i in range(n)],
        }
        return datasets.Dataset.from_dict(rows, features=features)

    return build


def test_hf_save_to_disk_datasetdict(tmp_path: Path, hf_dataset: Callable[..., object]) -> None:
    import datasets

    dd = datasets.DatasetDict({"train": hf_dataset(8), "validation": hf_dataset(4), "test": hf_dataset(2)})
    dd.save_to_disk(str(tmp_path / "hf"))
    ds = load_dataset(tmp_path / "hf")
    assert ds.source == "hf-disk" and ds.classes == ("apple", "pear")
    assert ds.counts() == {c: {"train": 4, "validation": 2, "test": 1} for c in ("apple", "pear")}
    assert all(it.path.is_file() and str(it.path).startswith(str(tmp_path / "cache")) for it in ds.items)
    first = ds.items[0].path
    assert Image.open(first).size == (48, 48)
    mtime = first.stat().st_mtime_ns
    again = load_dataset(tmp_path / "hf")  # served from the cache: nothing rewritten
    assert again.items == ds.items and first.stat().st_mtime_ns == mtime


def test_hf_single_dataset_and_parquet_with_column_mapping(
    tmp_path: Path, hf_dataset: Callable[..., object]
) -> None:
    one = hf_dataset(6, image_col="img", label_col="fine_label")
    one.save_to_disk(str(tmp_path / "one"))  # type: ignore[attr-defined]
    ds = scan(tmp_path / "one")  # typed columns are found without naming them
    assert ds.source == "hf-disk" and ds.counts() == {"apple": {"": 3}, "pear": {"": 3}}
    (tmp_path / "pq" / "data").mkdir(parents=True)
    one.to_parquet(str(tmp_path / "pq" / "data" / "train-00000-of-00001.parquet"))  # type: ignore[attr-defined]
    one.to_parquet(str(tmp_path / "pq" / "data" / "validation-00000-of-00001.parquet"))  # type: ignore[attr-defined]
    ds = scan(tmp_path / "pq", image_column="img", target_column="fine_label")
    assert ds.source == "parquet"
    assert ds.counts() == {c: {"train": 3, "validation": 3} for c in ("apple", "pear")}
    with pytest.raises(DataError, match="Did you mean 'fine_label'"):
        scan(tmp_path / "pq", target_column="fine_labels")


def test_parquet_without_hf_metadata(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    monkeypatch.setenv("SORTSIGHT_CACHE", str(tmp_path / "cache"))
    table = pa.table(
        {"image": [_png_bytes(i) for i in range(4)] + [b"garbage"], "target": ["a", "b", "a", "b", "a"]}
    )
    pq.write_table(table, tmp_path / "plain.parquet")
    ds = scan(tmp_path / "plain.parquet")
    assert ds.counts() == {"a": {"": 2}, "b": {"": 2}}
    assert [s.reason for s in ds.skipped] == ["not an image"]


# ------------------------------------------------------------------ splitting


def test_split_is_stratified_and_deterministic(make_folder: Callable[..., Path]) -> None:
    root = make_folder(classes=("a", "b", "c"), per_class=20)
    ds = load_dataset(root, valid_split=0.2, test_split=0.1, seed=7)
    assert ds.counts() == {c: {"train": 14, "validation": 4, "test": 2} for c in ("a", "b", "c")}
    again = load_dataset(root, valid_split=0.2, test_split=0.1, seed=7)
    assert again.items == ds.items
    other = load_dataset(root, valid_split=0.2, test_split=0.1, seed=8)
    assert _rel(other, "validation") != _rel(ds, "validation")


def test_split_independent_of_input_order_and_location(
    make_folder: Callable[..., Path], tmp_path: Path
) -> None:
    root = make_folder(classes=("a", "b"), per_class=15)
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(root, copy)
    ds = scan(root)
    shuffled = ImageDataset(ds.root, tuple(reversed(ds.items)), ds.classes)
    first, second = split_dataset(ds, seed=3), split_dataset(shuffled, seed=3)
    assert first.items == second.items
    moved = split_dataset(scan(copy), seed=3)
    assert _rel(moved, "validation") == _rel(first, "validation")
    assert moved.fingerprint() == first.fingerprint()


def test_max_samples_balanced(make_folder: Callable[..., Path]) -> None:
    root = make_folder(classes=("a", "b", "c"), per_class=10)
    shutil.rmtree(root / "c")
    write_class_folder(root, classes=("c",), per_class=3)
    ds = load_dataset(root, max_samples=15, valid_split=0.2)
    totals = {c: sum(v.values()) for c, v in ds.counts().items()}
    assert totals == {"a": 6, "b": 6, "c": 3}
    with pytest.raises(ConfigError, match="less than the number of classes"):
        load_dataset(root, max_samples=2)


def test_fingerprint_tracks_labels_and_content(make_folder: Callable[..., Path]) -> None:
    root = make_folder(per_class=3)
    ds = scan(root)
    relabelled = ImageDataset(
        ds.root,
        tuple(Item(it.path, "x" if i == 0 else it.label) for i, it in enumerate(ds.items)),
        ds.classes,
    )
    assert ds.fingerprint() == scan(root).fingerprint() and ds.fingerprint() != relabelled.fingerprint()
    assert split_dataset(ds).fingerprint() == ds.fingerprint()  # the split is recorded separately


# ------------------------------------------------------------------ errors


def test_no_images_message_lists_extensions(tmp_path: Path) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "a.txt").write_text("x")
    with pytest.raises(DataError) as info:
        scan(tmp_path / "empty")
    assert ".jpg" in str(info.value) and ".heic" in str(info.value) and "class subfolders" in str(info.value)


def test_loose_images_need_class_folders(tmp_path: Path) -> None:
    (tmp_path / "flat").mkdir()
    make_image(0).save(tmp_path / "flat" / "a.png")
    with pytest.raises(DataError, match=r"directly in .* no class subfolders"):
        scan(tmp_path / "flat")


def test_all_unreadable(tmp_path: Path) -> None:
    (tmp_path / "d" / "a").mkdir(parents=True)
    (tmp_path / "d" / "a" / "x.jpg").write_text("x")
    with pytest.raises(DataError, match=r"None of the 1 images .* could be read \(1 not an image\)"):
        scan(tmp_path / "d")


def test_one_class_and_too_small(make_folder: Callable[..., Path], tmp_path: Path) -> None:
    with pytest.raises(DataError, match="Only one class found \\('cats', 4 images\\)"):
        load_dataset(make_folder(classes=("cats",), per_class=4))
    root = make_folder(classes=("a", "b"), per_class=5)
    for p in list((root / "b").iterdir())[1:]:
        p.unlink()
    with pytest.raises(DataError, match="Class 'b' has only 1 image, too few to split into train/validation"):
        load_dataset(root)
    assert len(load_dataset(root, valid_split=0.0).by_split("train")) == 6
    with pytest.raises(ConfigError, match=r"valid_split=1\.5"):
        load_dataset(root, valid_split=1.5)
    with pytest.raises(ConfigError, match="leaves nothing to train on"):
        load_dataset(root, valid_split=0.5, test_split=0.5)
    with pytest.raises(DataError, match="does not exist"):
        scan(tmp_path / "nowhere")


# ------------------------------------------------------------------ summary and grid


def test_summary_warnings(make_folder: Callable[..., Path]) -> None:
    root = make_folder(classes=("big", "small"), per_class=4)
    write_class_folder(root, classes=("big",), per_class=16, seed=50)
    make_image(1, size=16).save(root / "small" / "tiny.png")
    (root / "small" / "bad.jpg").write_bytes(b"")
    summary = summarize(load_dataset(root))
    json.dumps(summary)  # JSON-ready
    assert summary["splits"] == ["train", "validation"]
    assert summary["counts"]["big"]["total"] == 16 and summary["counts"]["small"]["total"] == 5
    assert summary["totals"] == {"train": 17, "validation": 4, "total": 21}
    kinds = {w["kind"] for w in summary["warnings"]}
    assert kinds == {"imbalance", "few-images", "tiny-images", "skipped"}
    assert summary["tiny_images"] == [{"path": "small/tiny.png", "width": 16, "height": 16}]
    assert summary["skipped"] == [{"path": "small/bad.jpg", "reason": "empty file"}]
    assert summary["image_sizes"] == {"median_width": 48, "median_height": 48, "min_side": 16, "max_side": 48}
    unsplit = summarize(scan(root))
    assert unsplit["splits"] == ["unsplit"] and unsplit["counts"]["big"] == {"unsplit": 16, "total": 16}


def test_sample_grid(make_folder: Callable[..., Path]) -> None:
    ds = load_dataset(make_folder(classes=("a", "b", "c"), per_class=3))
    grid = sample_grid(ds, per_class=4, thumb=40)
    assert grid.mode == "RGB" and grid.width == 4 * 46 + 6 and grid.height > 3 * 40
    assert sample_grid(ds, per_class=4, thumb=40).tobytes() == grid.tobytes()  # deterministic


def test_verification_is_cached_until_a_file_changes(
    make_folder: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_folder(per_class=3)
    (root / "cats" / "bad.jpg").write_text("x")
    first = scan(root)
    calls: list[Path] = []
    real = data.images.inspect_image

    def counting(path: Path, **kwargs: object) -> object:
        calls.append(Path(path))
        return real(path, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(data.images, "inspect_image", counting)
    again = scan(root)
    assert calls == [] and again.items == first.items and again.skipped == first.skipped
    assert dict(again.image_sizes) == dict(first.image_sizes)
    (root / "cats" / "bad.jpg").unlink()
    make_image(0).save(root / "cats" / "bad.jpg", "JPEG")  # fixed by the user: same name, new content
    fixed = scan(root)
    assert calls == [root / "cats" / "bad.jpg"] and len(fixed) == 7 and not fixed.skipped


def test_labels_file_duplicates_conflicts_and_windows_paths(tmp_path: Path) -> None:
    names = _flat_images(tmp_path / "imgs", 4)
    body = (
        "image,target\n"
        f"{names[0]},a\n{names[0]},a\n"  # listed twice: kept once, never in two splits
        f"{names[1]},a\n{names[1]},b\n"  # conflicting labels: skipped, both reported
        f"{names[2].replace('/', chr(92))},b\n"  # imgs\img2.png, as Excel on Windows writes it
        f"{names[3]},b\n"
    )
    (tmp_path / "l.csv").write_text(body)
    ds = scan(tmp_path / "l.csv")
    assert [(ds.relative(it.path), it.label) for it in ds.items] == [
        (names[0], "a"),
        (names[2], "b"),
        (names[3], "b"),
    ]
    assert [(ds.relative(s.path), s.reason) for s in ds.skipped] == [
        (names[1], "listed with different labels (a, b)")
    ]
    (tmp_path / "multi.jsonl").write_text(json.dumps({"image": names[0], "label": ["a", "b"]}) + "\n")
    with pytest.raises(DataError, match="several labels per image"):
        scan(tmp_path / "multi.jsonl")


def test_lonely_split_folder_hint(tmp_path: Path) -> None:
    write_class_folder(tmp_path / "d" / "train", per_class=3)  # d/train/{cats,dogs}: no validation/ beside it
    with pytest.raises(DataError, match=r"Only one folder, 'train'.*add validation/"):
        load_dataset(tmp_path / "d")


def test_heic_needs_plugin_then_loads_once_installed(
    make_folder: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    pillow_heif = pytest.importorskip("pillow_heif")
    root = make_folder(per_class=2)
    buf = io.BytesIO()
    pillow_heif.from_pillow(make_image(0)).save(buf, quality=80)
    (root / "cats" / "IMG_0001.HEIC").write_bytes(buf.getvalue())
    with monkeypatch.context() as m:
        m.setattr(data.images, "_import_heif", lambda: None)  # plugin "not installed"
        ds = scan(root)
        assert [(s.path.name, s.reason) for s in ds.skipped] == [("IMG_0001.HEIC", "needs pillow-heif")]
    ds = scan(root)  # "installed" now: the earlier answer was not cached
    assert not ds.skipped and len(ds) == 5


def test_split_same_for_nfc_and_nfd_names(tmp_path: Path) -> None:
    """macOS writes decomposed (NFD) names; the split must not depend on the normal form."""
    import unicodedata

    def build(root: Path, form: str) -> ImageDataset:
        for ci, cls in enumerate(("café", "crème")):
            folder = root / unicodedata.normalize(form, cls)
            folder.mkdir(parents=True)
            for i in range(10):
                make_image(ci, seed=i).save(folder / unicodedata.normalize(form, f"été_{i}.png"))
        return load_dataset(root, seed=5)

    nfc, nfd = build(tmp_path / "nfc", "NFC"), build(tmp_path / "nfd", "NFD")
    assert nfc.classes == nfd.classes == ("café", "crème")

    def val(ds: ImageDataset) -> list[str]:
        return sorted(unicodedata.normalize("NFC", r) for r in _rel(ds, "validation"))

    assert val(nfc) == val(nfd) and len(val(nfc)) == 4
    assert nfc.fingerprint() == nfd.fingerprint()
