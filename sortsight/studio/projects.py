"""A studio project's folder and the file actions on it.

Layout of ``<home>/projects/<slug>/``::

    data/<class>/...            the images (or data/train|validation|test/<class>/...)
    trash/                      deleted images land here (never deleted outright)
    fixes/NNNNNN-<action>.jsonl one action log per relabel/delete (fileops.ActionLog), for undo
    jobs/<id>/                  a job's steps, log and state; a train job's run folder is jobs/<id>/run
    uploads/<id>/               images uploaded on the Use page
    .staging/                   zips being unpacked (removed after import)

Every path that comes from a request goes through :func:`resolve_inside`, so nothing outside
the project can be read, moved or served.
"""

from __future__ import annotations

import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from sortsight import fix
from sortsight.errors import DataError
from sortsight.fileops import ActionLog, place_file
from sortsight.images import is_image_path, is_junk
from sortsight.sources import SPLIT_ALIASES
from sortsight.studio.uploads import UploadLimits, safe_extract_zip, safe_name

__all__ = [
    "ImportReport",
    "add_files",
    "class_label",
    "data_dir",
    "fix_history",
    "has_split_folders",
    "import_zip",
    "relabel",
    "resolve_inside",
    "trash",
    "undo_last",
]


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
    staging = project_dir / ".staging" / uuid.uuid4().hex
    report = ImportReport()
    try:
        extracted = safe_extract_zip(zip_path, staging, limits)
        if not staging.exists():
            raise DataError(
                "The zip holds no files. Zip your class folders (one folder per label) and upload it."
            )
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
    finally:
        shutil.rmtree(staging, ignore_errors=True)
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


def add_files(project_dir: Path, class_name: str, files: list[Path]) -> ImportReport:
    """Move uploaded files (already on disk, with their original names) into a class folder."""
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


def _new_log(project_dir: Path, action: str) -> ActionLog:
    fixes = project_dir / "fixes"
    fixes.mkdir(parents=True, exist_ok=True)
    number = len(list(fixes.glob("*.jsonl"))) + 1
    return ActionLog(fixes / f"{number:06d}-{action}.jsonl")


def _image_in_data(project_dir: Path, rel: str) -> Path:
    path = resolve_inside(project_dir, rel)
    data = data_dir(project_dir).resolve()
    if data not in path.parents or not path.is_file():
        raise DataError(f"'{rel}' is not an image of this project's data; it may have been moved already.")
    return path


def relabel(project_dir: Path, rel: str, new_label: str) -> Path:
    """Move an image of the data into the ``new_label`` class folder beside its own; logged for undo."""
    label = class_label(new_label)
    path = _image_in_data(project_dir, rel)
    if path.parent.name == label:
        raise DataError(f"'{path.name}' is already labelled '{label}'.")
    result = fix.relabel(
        path,
        label,
        root=data_dir(project_dir),
        log=_new_log(project_dir, "relabel"),
        trash_dir=_trash(project_dir),
    )
    return Path(result.destination or path)


def trash(project_dir: Path, rel: str) -> Path:
    """Move an image of the data into the project's ``trash/`` (keeping its relative path); logged."""
    path = _image_in_data(project_dir, rel)
    result = fix.trash(
        path, root=data_dir(project_dir), trash_dir=_trash(project_dir), log=_new_log(project_dir, "delete")
    )
    return Path(result.destination or path)


def _trash(project_dir: Path) -> Path:
    return project_dir.resolve() / "trash"


def fix_history(project_dir: Path) -> list[dict]:
    """The relabel/delete actions, newest first, each with ``undone`` and ``log`` keys."""
    out = []
    for log_path in sorted((project_dir / "fixes").glob("*.jsonl"), reverse=True):
        entries = ActionLog(log_path).entries()
        done = [e for e in entries if e.get("action") != "undo"]
        if not done:
            continue
        undone = any(e.get("action") == "undo" for e in entries)
        out.append({**done[0], "undone": undone, "log": log_path.name})
    return out


def undo_last(project_dir: Path) -> dict | None:
    """Undo the newest relabel/delete that is not undone yet; return it, or None if there is none."""
    for item in fix_history(project_dir):
        if not item["undone"]:
            fix.undo(project_dir / "fixes" / item["log"])
            return item
    return None


def move_project_to_trash(home: Path, project_dir: Path) -> Path:
    """Delete a project by moving its folder to ``<home>/trash/`` (nothing is deleted outright)."""
    target = home / "trash" / f"{project_dir.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    target.parent.mkdir(parents=True, exist_ok=True)
    if project_dir.exists():
        shutil.move(str(project_dir), str(target))
    return target
