"""Tagging projects in the studio (several tags per image): upload a zip with its labels file,
see the tag counts, train a tagger with the real CLI, read per-tag results, edit tags and undo.

Also the library underneath: editing one image's tags in a labels file
(:func:`sortsight.tagedit.set_tags`) and the logged, undoable :func:`sortsight.fix.retag`.
"""

from __future__ import annotations

import csv
import html
import io
import zipfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from studio_helpers import home, make_zip, new_project, png_bytes, studio_client, wait_job
from test_multilabel import TAGS, _tagged_image, _write_tagged

from sortsight import fix
from sortsight.errors import DataError
from sortsight.labelfile import read_tags_file, write_tags_file
from sortsight.tagedit import set_tags, tags_of

__all__ = ["home"]  # a fixture shared from studio_helpers


def _png_of(tags: set[str], seed: int) -> bytes:
    buffer = io.BytesIO()
    _tagged_image(tags, seed).save(buffer, "PNG")
    return buffer.getvalue()


def _tagged_zip(
    n: int, *, prefix: str = "", labels_inside: bool = True, seed: int = 3
) -> tuple[bytes, bytes]:
    """A zip of ``n`` generated images under ``{prefix}img/`` and its labels CSV (inside the zip
    too when ``labels_inside``); the CSV's paths are relative to the zip's top (below ``prefix``)."""
    import random

    rng = random.Random(seed)
    entries: dict[str, bytes] = {}
    rows = []
    for i in range(n):
        tags = sorted(t for t in TAGS if rng.random() < 0.5)
        entries[f"{prefix}img/{i:03d}.png"] = _png_of(set(tags), seed * 1000 + i)
        rows.append([f"img/{i:03d}.png", "|".join(tags)])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["image", "labels"])
    writer.writerows(rows)
    labels = out.getvalue().encode()
    if labels_inside:
        entries[f"{prefix}labels.csv"] = labels
    return make_zip(entries), labels


def _upload(client: TestClient, pid: int, archive: bytes, labels: bytes | None = None) -> str:
    files = {"archive": ("tagged.zip", archive, "application/zip")}
    if labels is not None:
        files["labels"] = ("labels.csv", labels, "text/csv")
    r = client.post(f"/projects/{pid}/data/tagged", files=files)
    assert r.status_code in (200, 400), r.text
    return html.unescape(r.text)


def _rows(labels: Path) -> dict[str, str]:
    with open(labels, encoding="utf-8", newline="") as fh:
        return {row["image"]: row["labels"] for row in csv.DictReader(fh)}


# --------------------------------------------------------------------------- the library


def test_set_tags_edits_one_row_and_keeps_the_rest(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(png_bytes(0))
    (tmp_path / "b.png").write_bytes(png_bytes(1))
    labels = tmp_path / "labels.tsv"
    labels.write_text("image\tlabels\tnote\na.png\tx;y\tkeep me\nb.png\ty\t\n", encoding="utf-8")
    assert tags_of(labels, tmp_path / "a.png") == ["x", "y"]
    assert set_tags(labels, tmp_path / "a.png", ["z", "x"]) == ["x", "y"]
    text = labels.read_text(encoding="utf-8")
    assert "a.png\tz;x\tkeep me" in text  # its delimiter, separator and other cells kept
    assert "b.png\ty" in text
    assert set_tags(labels, tmp_path / "b.png", None) == ["y"]  # None removes the row
    assert tags_of(labels, tmp_path / "b.png") is None
    assert set_tags(labels, tmp_path / "b.png", ["w"]) is None  # a new row, path relative to the file
    assert tags_of(labels, tmp_path / "b.png") == ["w"]
    with pytest.raises(DataError, match="separates tags"):
        set_tags(labels, tmp_path / "a.png", ["a|b"])


def test_write_tags_file_reads_back(tmp_path: Path) -> None:
    rows = _write_tagged(tmp_path, 6)
    out = write_tags_file(
        tmp_path / "labels.csv", [(p, t, "train" if i % 2 else "") for i, (p, t) in enumerate(rows)]
    )
    root, found, _, _ = read_tags_file(out, None, None, "auto")
    assert {p.relative_to(root).as_posix(): list(t) for p, t, _ in found} == dict(rows)
    assert {s for _, _, s in found} == {"train", ""}


def test_retag_is_logged_and_undone_unless_edited_again(tmp_path: Path) -> None:
    rows = _write_tagged(tmp_path, 4)
    labels = tmp_path / "labels.csv"
    write_tags_file(labels, [(p, t, "validation" if p.endswith("001.png") else "") for p, t in rows])
    image = tmp_path / rows[0][0]
    log = tmp_path / "fixes" / "retag.jsonl"
    result = fix.retag(image, ["blue", "new tag"], labels_file=labels, log=log)
    assert result.status == "done"
    assert tags_of(labels, image) == ["blue", "new tag"]
    fix.undo(log)
    assert tags_of(labels, image) == list(rows[0][1])
    # a row removed (the image deleted) comes back with its other cells, here its split
    second = tmp_path / rows[1][0]
    log2 = tmp_path / "fixes" / "remove.jsonl"
    fix.retag(second, None, labels_file=labels, log=log2)
    assert tags_of(labels, second) is None
    fix.undo(log2)
    _, found, _, _ = read_tags_file(labels, None, None, "auto")
    assert {p.name: s for p, _, s in found}[second.name] == "validation"
    # edited again after the logged change: undo refuses rather than overwrite the newer tags
    log3 = tmp_path / "fixes" / "third.jsonl"
    assert fix.retag(image, ["red", "zzz"], labels_file=labels, log=log3).status == "done"
    set_tags(labels, image, ["green"])
    (entry,) = fix.undo(log3)
    assert "changed since (green)" in entry["failed"]
    assert tags_of(labels, image) == ["green"]


# --------------------------------------------------------------------------- the studio


@pytest.fixture
def real(home: Path):
    with studio_client(home) as c:  # the real CLI runs the jobs
        yield c


def test_tagged_zip_uploads_in_every_layout(real: TestClient, home: Path) -> None:
    pid = new_project(real, "Tags inside", with_data=False)
    archive, _ = _tagged_zip(10)
    assert "Added 10 tagged image(s)" in _upload(real, pid, archive)
    data = home / "projects"
    labels = next(data.glob("*/data/labels.csv"))
    rows = _rows(labels)
    assert len(rows) == 10 and all(k.startswith("images/img/") for k in rows)
    assert all((labels.parent / k).is_file() for k in rows)

    # a labels file beside a zip whose images sit in a wrapper folder; a second upload merges
    archive2, labels2 = _tagged_zip(6, prefix="scans/", labels_inside=False, seed=4)
    text = _upload(real, pid, archive2, labels2)
    assert "Added 6 tagged image(s)" in text
    assert len(_rows(labels)) == 16  # same names got new ones: nothing overwritten

    summary = real.get(f"/api/projects/{pid}/data").json()
    assert summary["task"] == "multi_label" and summary["totals"]["total"] == 16
    assert set(summary["classes"]) <= set(TAGS)
    page = real.get(f"/projects/{pid}/data").text
    assert "Images per tag and split" in page and 'id="zip-form"' not in page

    # a labels row outside the zip, no labels file, and a class-folder zip in a tagging project
    outside = b"image,labels\n../../../data/images/img/000.png,a\n"  # an image of the project itself
    assert "outside the zip" in _upload(
        real, pid, make_zip({"img/a.png": png_bytes(0), "labels.csv": outside})
    )
    missing = make_zip({"img/a.png": png_bytes(0), "labels.csv": b"image,labels\nimg/b.png,a\n"})
    text = _upload(real, pid, missing)
    assert "do not exist (img/b.png)" in text and "the zip's top folder" in text and ".staging" not in text
    assert "No labels file came with the images" in _upload(real, pid, make_zip({"a.png": png_bytes(0)}))
    r = real.post(
        f"/projects/{pid}/data/zip",
        files={"archive": ("d.zip", make_zip({"cats/a.png": png_bytes(0)}), "application/zip")},
    )
    assert "This is a tagging project" in r.text
    assert len(_rows(labels)) == 16

    # a class-folder project refuses a tagged zip
    other = new_project(real, "Folders")
    assert "holds class folders" in _upload(real, other, archive)


def test_add_files_with_tags_and_bad_tags(real: TestClient, home: Path) -> None:
    pid = new_project(real, "Few", with_data=False)
    archive, _ = _tagged_zip(4)
    _upload(real, pid, archive)
    r = real.post(
        f"/projects/{pid}/data/files",
        data={"label": "red | text"},
        files=[("files", ("new.png", _png_of({"red"}, 1), "image/png"))],
    )
    assert "Added 1 image(s) with tags 'red | text'" in html.unescape(r.text)
    labels = next((home / "projects").glob("*/data/labels.csv"))
    assert _rows(labels)["images/new.png"] == "red|text"
    r = real.post(
        f"/projects/{pid}/data/files",
        data={"label": "a;b"},
        files=[("files", ("x.png", png_bytes(0), "image/png"))],
    )
    assert "separates tags" in r.text and "Traceback" not in r.text
    assert "images/x.png" not in _rows(labels)


def test_tagger_trains_shows_per_tag_results_and_tags_are_fixed(real: TestClient, home: Path) -> None:
    pid = new_project(real, "Tagger", with_data=False)
    archive, _ = _tagged_zip(40)
    _upload(real, pid, archive)
    page = real.get(f"/projects/{pid}/train").text
    assert 'id="tagger-note"' in page and "Lite0 + Lite2" not in page and 'name="candidates"' not in page

    r = real.post(f"/projects/{pid}/train", data={"model": "auto", "image_size": "64"})
    assert r.status_code == 200, r.text
    jid = int(str(r.url).rstrip("/").split("/jobs/")[1].split("?")[0])
    view = wait_job(real, pid, jid, timeout=300)
    assert view["status"] == "finished", view["log_tail"]
    assert view["params"]["task"] == "multi_label"
    assert "micro-F1" in view["headline"]

    results = real.get(f"/projects/{pid}/results").text
    assert 'id="per-tag"' in results and "have every tag right" in results
    for tag in TAGS:
        assert f"<td>{tag}</td>" in results

    # the tagger sorts new images on the Use page: each image's tags, a copy in each tag's folder
    r = real.post(
        f"/projects/{pid}/use/upload",
        data={"sort": "1"},
        files=[
            ("files", ("all.png", _png_of({"red", "green", "blue"}, 7), "image/png")),
            ("files", ("none.png", _png_of(set(), 8), "image/png")),
        ],
    )
    prid = int(str(r.url).split("/jobs/")[1].split("?")[0])
    assert wait_job(real, pid, prid, timeout=300)["status"] == "finished"
    use = real.get(f"/projects/{pid}/use?job={prid}").text
    assert "<th>Tags</th>" in use and "all.png" in use
    got = real.get(f"/projects/{pid}/jobs/{prid}/predictions.csv").text
    assert got.startswith("path,tags,label") and got.count("\n") == 3
    sorted_zip = zipfile.ZipFile(io.BytesIO(real.get(f"/projects/{pid}/jobs/{prid}/sorted.zip").content))
    names = sorted_zip.namelist()
    assert any(n.endswith("/red/all.png") for n in names), names

    labels = next((home / "projects").glob("*/data/labels.csv"))
    rel = "data/images/img/000.png"
    before = _rows(labels)["images/img/000.png"]
    r = real.post(f"/projects/{pid}/fix/tags", data={"path": rel, "tag": ["green"], "new_tags": "faded"})
    assert "Tags of 000.png" in r.text
    assert _rows(labels)["images/img/000.png"] == "faded|green"
    assert "changed the tags of 000.png" in real.get(f"/projects/{pid}/results").text
    real.post(f"/projects/{pid}/fix/undo")
    assert _rows(labels)["images/img/000.png"] == before

    # delete: the image goes to the trash and its row goes too; undo brings both back
    project = labels.parent.parent
    real.post(f"/projects/{pid}/fix/delete", data={"path": "data/images/img/001.png"})
    assert not (project / "data/images/img/001.png").exists()
    assert "images/img/001.png" not in _rows(labels)
    real.post(f"/projects/{pid}/fix/undo")
    assert (project / "data/images/img/001.png").is_file()
    assert "images/img/001.png" in _rows(labels)

    r = real.post(f"/projects/{pid}/fix/relabel", data={"path": rel, "label": "cats"})
    assert "edit the image's tags" in html.unescape(r.text)

    # the data doctor runs on the labels file and finds tags taken off on purpose
    stripped = [k for k, v in _rows(labels).items() if len(v.split("|")) == 3][:2]
    for key in stripped:
        real.post(f"/projects/{pid}/fix/tags", data={"path": f"data/{key}", "new_tags": "blue"})
    r = real.post(f"/projects/{pid}/doctor")
    did = int(str(r.url).rstrip("/").split("/jobs/")[1].split("?")[0])
    assert wait_job(real, pid, did, timeout=300)["status"] == "finished"
    page = html.unescape(real.get(f"/projects/{pid}/data").text)
    assert "Last check (job #" in page and 'id="tag-issues"' in page
    flagged = [key for key in stripped if f'name="path" value="data/{key}"' in page]
    assert flagged, "the doctor missed both images whose tags were taken off"
    # "Accept the suggestion" gives the image back the tags the doctor says are missing
    form = page.split(f'name="path" value="data/{flagged[0]}"')[1].split("</form>")[0]
    ticked = [part.split('"')[0] for part in form.split('name="tag" value="')[1:]]
    assert set(ticked) > {"blue"}
    real.post(f"/projects/{pid}/fix/tags", data={"path": f"data/{flagged[0]}", "tag": ticked})
    assert set(_rows(labels)[flagged[0]].split("|")) == set(ticked)
