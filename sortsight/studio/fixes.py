"""The fixes a studio user makes to a project's data: relabel, delete (to ``trash/``), retag,
each logged in ``fixes/NNNNNN-<action>.jsonl`` (:class:`sortsight.fileops.ActionLog`) through
:mod:`sortsight.fix`, listed newest first and undone one at a time."""

from __future__ import annotations

from pathlib import Path

from sortsight import fix
from sortsight.errors import DataError
from sortsight.fileops import ActionLog
from sortsight.studio.projects import class_label, data_dir, is_tagged, labels_file, resolve_inside

__all__ = ["fix_history", "relabel", "retag", "trash", "undo_last"]


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
    if is_tagged(project_dir):
        raise DataError("This is a tagging project: edit the image's tags instead of moving it to a class.")
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
    log = _new_log(project_dir, "delete")
    result = fix.trash(path, root=data_dir(project_dir), trash_dir=_trash(project_dir), log=log)
    if is_tagged(project_dir):  # its row goes too (the same log: undo puts both back)
        fix.retag(path, None, labels_file=labels_file(project_dir), log=log)
    return Path(result.destination or path)


def retag(project_dir: Path, rel: str, tags: list[str]) -> list[str] | None:
    """Give an image of a tagging project exactly ``tags`` (logged in ``fixes/``, undoable);
    return its tags before, or None when they were already these."""
    if not is_tagged(project_dir):
        raise DataError("This project has class folders, not tags: relabel the image instead.")
    path = _image_in_data(project_dir, rel)
    result = fix.retag(path, tags, labels_file=labels_file(project_dir), log=_new_log(project_dir, "retag"))
    return None if result.status == "unchanged" else list(result.before or [])


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
            failed = [e for e in fix.undo(project_dir / "fixes" / item["log"]) if e.get("failed")]
            if failed:
                raise DataError(f"Could not undo the {item['action']}: {failed[0]['failed']}")
            return item
    return None
