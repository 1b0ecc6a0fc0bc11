"""A studio project's folder and the file actions on it.

Layout of ``<home>/projects/<slug>/``::

    data/<class>/...            the images (or data/train|validation|test/<class>/...)
    trash/                      deleted images land here (never deleted outright)
    fixes/NNNNNN-<action>.jsonl one action log per relabel/delete (fileops.ActionLog), for undo
    jobs/<id>/                  a job's steps, log and state; a train job's run folder is jobs/<id>/run
    uploads/<id>/               images uploaded on the Use page
    .staging/                   zips being unpacked (removed after import)

A **tagging project** (several tags per image) holds its images under ``data/images/...`` and
their tags in ``data/labels.csv`` (``image,labels[,split]``, tags ``|``-joined, paths relative to
the file: :func:`sortsight.labelfile.write_tags_file`). The labels file makes it one: a project
is tagged exactly when ``data/labels.csv`` exists. Tag edits and deletions change that file's
rows through :func:`sortsight.fix.retag`, logged in ``fixes/`` like relabels, and undoable.

Every path that comes from a request goes through :func:`resolve_inside`, so nothing outside
the project can be read, moved or served.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sortsight import fix
from sortsight.errors import DataError
from sortsight.fileops import place_file
from sortsight.images import is_image_path, is_junk
from sortsight.sources import SPLIT_ALIASES
from sortsight.studio.uploads import Extracted, UploadLimits, safe_extract_zip, safe_name

__all__ = [
    "ImportReport",
    "add_files",
    "class_label",
    "data_dir",
    "has_split_folders",
    "import_tagged_zip",
    "import_zip",
    "is_tagged",
    "labels_file",
    "move_project_to_trash",
    "resolve_inside",
    "training_source",
]

#: the labels file of a tagging project, inside ``data/``
LABELS_NAME = "labels.csv"
#: a labels file inside an uploaded zip is found by these suffixes
_LABEL_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson")


@dataclass
class ImportReport:
    """What an upload added and what it left out (with the reason)."""

    added: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    #: (name in the zip, name given): entries whose name an earlier entry of the zip already had
    renamed: list[tuple[str, str]] = field(default_factory=list)


def resolve_inside(root: Path, rel: str) -> Path:
    """``root / rel`` resolved, or a :class:`DataError` when it would leave ``root``.

    Example:
        >>> resolve_inside(Path("/p"), "../etc/passwd")  # doctest: +SKIP
        Traceback (most recent call last):
        DataError: ...
    """
    root = root.resolve()
    if not rel or "\x00" in rel:
        raise DataError("No file was given. Pick a file of this project.")
    candidate = (root / rel).resolve()
    if candidate != root and root not in candidate.parents:
        raise DataError(f"'{rel}' is outside this project. Only files of the project can be used here.")
    return candidate


def data_dir(project_dir: Path) -> Path:
    return project_dir / "data"


def labels_file(project_dir: Path) -> Path:
    """Where a tagging project keeps its tags (``data/labels.csv``; it may not exist)."""
    return data_dir(project_dir) / LABELS_NAME


def is_tagged(project_dir: Path) -> bool:
    """True for a tagging project (several tags per image): its ``data/labels.csv`` exists."""
    return labels_file(project_dir).is_file()


def training_source(project_dir: Path) -> Path:
    """What ``sortsight train`` reads: the labels file of a tagging project, else the data folder."""
    return labels_file(project_dir) if is_tagged(project_dir) else data_dir(project_dir)


def has_split_folders(data: Path) -> bool:
    """True when ``data`` holds split folders: train/ and validation/ or test/ (the data layer's rule)."""
    if not data.is_dir():
        return False
    found = {SPLIT_ALIASES.get(p.name.lower()) for p in data.iterdir() if p.is_dir() and not is_junk(p)}
    return "train" in found and len(found - {None}) >= 2


def class_label(name: str) -> str:
    """``name`` checked as a class name (a safe folder name, not a split folder's name), or a DataError."""
    label = safe_name(name, what="class name")
    problem = fix.label_problem(label)
    if problem:
        raise DataError(f"{problem[0].upper()}{problem[1:]}.")
    return label


@contextmanager
def _unpacked_zip(
    project_dir: Path, zip_path: Path, limits: UploadLimits | None, empty: str
) -> Iterator[tuple[Path, Extracted]]:
    """Unpack an uploaded zip into ``.staging/<fresh>/zip/`` of the project: ``(that folder, what
    was unpacked)``. DataError ``empty`` when the zip holds no files. ``.staging/<fresh>/`` is
    removed afterwards, whatever happens. (Keep the depth: a labels row's ``../`` paths are
    resolved from the zip's folder; tests/test_studio_tags.py names a project image that way.)"""
    staging = project_dir / ".staging" / uuid.uuid4().hex
    unpacked = staging / "zip"
    try:
        extracted = safe_extract_zip(zip_path, unpacked, limits)
        if not unpacked.exists():
            raise DataError(empty)
        yield unpacked, extracted
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _content_root(staging: Path) -> Path:
    """Skip one wrapping folder (``photos/cats/...`` → ``cats/...``) when the zip has one."""
    root = staging
    while True:
        entries = [p for p in root.iterdir() if not is_junk(p)]
        dirs = [p for p in entries if p.is_dir()]
        if len(entries) == 1 and dirs and any(child.is_dir() for child in dirs[0].iterdir()):
            if dirs[0].name.lower() in SPLIT_ALIASES:
                return root
            root = dirs[0]
            continue
        return root


def import_zip(project_dir: Path, zip_path: Path, limits: UploadLimits | None = None) -> ImportReport:
    """Unpack an uploaded zip of class folders (or split folders) into the project's data.

    Files land in ``data/<same relative path>`` through :func:`fileops.place_file`, so a name
    clash gets a suffix and nothing is overwritten. Files outside a class folder and files that
    are not images are skipped with the reason.
    """
    if is_tagged(project_dir):
        raise DataError(
            "This is a tagging project (several tags per image): upload a zip of images together with "
            "its labels file, or create another project for class folders."
        )
    report = ImportReport()
    with _unpacked_zip(
        project_dir,
        zip_path,
        limits,
        "The zip holds no files. Zip your class folders (one folder per label) and upload it.",
    ) as (staging, extracted):
        root = _content_root(staging)
        split = has_split_folders(root)
        data = data_dir(project_dir)
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            rel = path.relative_to(root)
            problem = _zip_entry_problem(rel, split)
            if problem == "junk":
                continue
            if problem:
                report.skipped.append((str(rel), problem))
                continue
            placed = place_file(path, data.joinpath(*rel.parts[:-1]), move=True, merge_identical=True)
            report.added.append(str(placed.destination.relative_to(project_dir)))
        report.skipped += [(name, reason) for name, reason in extracted.skipped]
        report.renamed += extracted.renamed
    if not report.added and not report.skipped:
        raise DataError(
            "The zip holds no images. Zip your class folders (one folder per label) and upload it."
        )
    return report


def _zip_entry_problem(rel: Path, split: bool) -> str:
    """Why a file of an unpacked zip is not added ("junk": OS litter, left out silently), or ""."""
    name = rel.name
    if name.startswith("._") or (is_junk(name) and not name.startswith(".")):
        return "junk"
    if any(is_junk(part) for part in rel.parts[:-1]):
        return "inside a hidden or system folder, which sortsight ignores"
    if is_junk(name):
        return "a hidden file (its name starts with a dot), which sortsight ignores"
    if split and rel.parts[0].lower() not in SPLIT_ALIASES:
        return "outside the split folders (train/, validation/, test/)"
    class_parts = rel.parts[1:-1] if split else rel.parts[:-1]
    if not class_parts:
        return "not inside a class folder"
    problem = fix.label_problem(class_parts[0])
    if problem:
        return problem
    if not is_image_path(rel):
        return "not an image file type"
    return ""


def _images_in(data: Path) -> bool:
    return any(p.is_file() and is_image_path(p) and not is_junk(p) for p in data.rglob("*"))


def _find_labels(root: Path) -> Path:
    """The one labels file of an unpacked zip (the shallowest), or a DataError."""
    found = sorted(
        (
            p
            for p in root.rglob("*")
            if p.is_file() and p.suffix.lower() in _LABEL_SUFFIXES and not is_junk(p)
        ),
        key=lambda p: (len(p.relative_to(root).parts), str(p)),
    )
    if not found:
        raise DataError(
            "No labels file came with the images: add a CSV/TSV/JSONL with columns 'image' and "
            "'labels' (tags separated by '|') to the zip, or upload it beside the zip."
        )
    top = [p for p in found if len(p.parts) == len(found[0].parts)]
    if len(top) > 1:
        names = ", ".join(str(p.relative_to(root)) for p in top[:4])
        raise DataError(
            f"The zip holds several labels files ({names}); upload the one to use beside the zip."
        )
    return found[0]


def _read_uploaded_tags(
    staging: Path, labels_upload: Path | None
) -> tuple[Path, list[tuple[Path, tuple[str, ...], str]]]:
    """``(root the rows are relative to, rows)`` of the labels file that came with a zip.

    An uploaded labels file is tried against the zip's top folder and each folder that only
    wraps the rest (``photos/img/...`` for rows naming ``img/...``); the first where every row's
    image exists wins. Rows must name files inside the zip.
    """
    from sortsight.labelfile import read_tags_file

    if labels_upload is None:
        candidates = [_find_labels(staging)]
    else:
        roots = [staging]
        while True:
            entries = [p for p in roots[-1].iterdir() if not is_junk(p)]
            if len(entries) == 1 and entries[0].is_dir():
                roots.append(entries[0])
                continue
            break
        candidates = []
        for root in roots:
            target = root / f".sortsight-labels-{uuid.uuid4().hex}{labels_upload.suffix.lower()}"
            shutil.copyfile(labels_upload, target)
            candidates.append(target)
    first_error: DataError | None = None
    for labels in candidates:
        try:
            root, rows, _, _ = read_tags_file(labels, None, None, "auto")
        except DataError as exc:  # the messages name the zip, not the folder it was unpacked in
            text = str(exc).replace(f"'{labels.parent}'", "the zip's top folder")
            first_error = first_error or DataError(text.replace(labels.name, "the labels file"))
            continue
        inside = staging.resolve()
        outside = [p for p, _, _ in rows if inside not in p.resolve().parents]
        if outside:
            raise DataError(
                f"The labels file names {len(outside)} file(s) outside the zip ({outside[0]}); "
                "name the images by their paths inside the zip."
            )
        return root, rows
    assert first_error is not None
    raise first_error


def import_tagged_zip(
    project_dir: Path, zip_path: Path, labels_upload: Path | None = None, limits: UploadLimits | None = None
) -> ImportReport:
    """Unpack a zip of images and their tags into a tagging project (``data/images/`` + ``data/labels.csv``).

    The tags come from ``labels_upload`` or from the labels file inside the zip, in any layout
    :func:`sortsight.labelfile.read_tags_file` reads. Images land through
    :func:`fileops.place_file` (a name clash gets a suffix; an image already here keeps its row,
    its tags joined with the new ones). Images the labels file does not name, and rows that are not
    images, are left out with the reason.

    Raises:
        DataError: the project holds class folders, no or several labels files, rows naming
            missing files or files outside the zip, unusable tags (one-line messages).
    """
    from sortsight.labelfile import check_tags, read_tags_file, write_tags_file
    from sortsight.tagdata import MAX_TAGS

    data = data_dir(project_dir)
    if not is_tagged(project_dir) and data.is_dir() and _images_in(data):
        raise DataError(
            "This project holds class folders (one label per image); create a new project for "
            "images with several tags each."
        )
    report = ImportReport()
    with _unpacked_zip(
        project_dir,
        zip_path,
        limits,
        "The zip holds no files. Zip the images (and their labels file) and upload it.",
    ) as (unpacked, extracted):
        root, rows = _read_uploaded_tags(unpacked, labels_upload)
        for _, tags, _ in rows:
            check_tags(tags, "The labels file has an unusable tag: ")
        named = {p.resolve() for p, _, _ in rows}
        for path in sorted(p for p in unpacked.rglob("*") if p.is_file()):
            rel = path.relative_to(unpacked)
            if path.resolve() in named or path.name.startswith(".sortsight-labels-"):
                continue
            if path.suffix.lower() in _LABEL_SUFFIXES or is_junk(path) or path.name.startswith("._"):
                continue
            reason = "not named in the labels file" if is_image_path(path) else "not an image file type"
            report.skipped.append((str(rel), reason))
        labels = labels_file(project_dir)
        existing: dict[str, tuple[list[str], str]] = {}
        if labels.is_file():
            old_root, old_rows, _, _ = read_tags_file(labels, None, None, "auto")
            existing = {p.relative_to(old_root).as_posix(): (list(t), s) for p, t, s in old_rows}
        vocabulary = {t for tags, _ in existing.values() for t in tags}
        vocabulary |= {t for _, tags, _ in rows for t in tags}
        if len(vocabulary) > MAX_TAGS:
            raise DataError(
                f"That makes {len(vocabulary)} distinct tags; sortsight learns at most {MAX_TAGS}. "
                "Merge them into a smaller vocabulary first."
            )
        images = data / "images"
        for path, tags, split in rows:
            rel = path.relative_to(root)
            if not is_image_path(path) or is_junk(path):
                report.skipped.append((str(rel), "not an image file type"))
                continue
            placed = place_file(path, images.joinpath(*rel.parts[:-1]), move=True, merge_identical=True)
            key = placed.destination.relative_to(data).as_posix()
            if key in existing:  # the same image again: its tags joined
                old_tags, old_split = existing[key]
                existing[key] = (old_tags + [t for t in tags if t not in old_tags], old_split or split)
            else:
                existing[key] = (list(tags), split)
            report.added.append(str(placed.destination.relative_to(project_dir)))
        report.skipped += [(name, reason) for name, reason in extracted.skipped]
        report.renamed += extracted.renamed
        if not report.added:
            raise DataError(
                "None of the zip's images is named in the labels file; its 'image' column must give "
                "each image's path inside the zip."
            )
        write_tags_file(labels, [(name, tags, split) for name, (tags, split) in existing.items()])
    return report


def add_files(project_dir: Path, class_name: str, files: list[Path]) -> ImportReport:
    """Move uploaded files (already on disk, with their original names) into a class folder, or,
    in a tagging project, into ``data/images/`` with the tags ``class_name`` lists (``|``-separated)."""
    if is_tagged(project_dir):
        return _add_tagged_files(project_dir, class_name, files)
    label = class_label(class_name)
    data = data_dir(project_dir)
    target = data / "train" / label if has_split_folders(data) else data / label
    report = ImportReport()
    for path in files:
        if not is_image_path(path) or is_junk(path):
            report.skipped.append((path.name, "not an image file type"))
            path.unlink(missing_ok=True)
            continue
        placed = place_file(path, target, move=True, merge_identical=True)
        report.added.append(str(placed.destination.relative_to(project_dir)))
    return report


def parse_tags(text: str) -> list[str]:
    """Tags typed in a form (``people | text``; commas accepted too), each checked; DataError if unusable."""
    from sortsight.labelfile import check_tags

    parts = [p.strip() for p in text.replace(",", "|").split("|")]
    tags = list(dict.fromkeys(p for p in parts if p))
    check_tags(tags)
    return tags


def _add_tagged_files(project_dir: Path, tags_text: str, files: list[Path]) -> ImportReport:
    from sortsight.tagedit import set_tags

    tags = parse_tags(tags_text)
    report = ImportReport()
    labels = labels_file(project_dir)
    for path in files:
        if not is_image_path(path) or is_junk(path):
            report.skipped.append((path.name, "not an image file type"))
            path.unlink(missing_ok=True)
            continue
        placed = place_file(path, data_dir(project_dir) / "images", move=True, merge_identical=True)
        set_tags(labels, placed.destination, tags)
        report.added.append(str(placed.destination.relative_to(project_dir)))
    return report


def move_project_to_trash(home: Path, project_dir: Path) -> Path:
    """Delete a project by moving its folder to ``<home>/trash/`` (nothing is deleted outright)."""
    target = home / "trash" / f"{project_dir.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    target.parent.mkdir(parents=True, exist_ok=True)
    if project_dir.exists():
        shutil.move(str(project_dir), str(target))
    return target
