"""Review the data doctor's flags by keyboard: one flag at a time, take / keep / delete, undo.

The flags of the project's newest doctor report, in the report's order: likely mislabels (most
likely wrong first), then out-of-place images. Each decision is one key:

- ``take`` — move the image into the suggested class (:func:`sortsight.studio.fixes.relabel`);
- ``keep`` — leave it as it is;
- ``delete`` — move it into the project's trash (:func:`sortsight.studio.fixes.trash`).

Relabel and delete go through the same logged, undoable fixes as the Results page's buttons
(``fixes/NNNNNN-<action>.jsonl``). Every review decision, keep included, is also appended to
``review/job-<N>.jsonl`` with the fix log it made; ``undo`` reverts the newest decision not yet
undone (the fix log is replayed backwards, a keep is simply withdrawn).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse

from sortsight import fix
from sortsight.errors import DataError
from sortsight.studio import fixes
from sortsight.studio import projects as pj
from sortsight.studio.core import ProjectDep, Studio, StudioDep
from sortsight.studio.routes_data import doctor_findings
from sortsight.studio.store import Project

router = APIRouter()

ACTIONS = ("take", "keep", "delete")
_LOCK = threading.Lock()  # one decision at a time: a fix and its review entry belong together


def _rel(folder: Path, root: Path, path: str) -> str | None:
    """``path`` relative to the project folder while the file is still there, else None."""
    full = (root / path).resolve()
    try:
        rel = str(full.relative_to(folder.resolve()))
    except ValueError:
        return None
    return rel if full.is_file() else None


def _flags(report: dict[str, Any], folder: Path) -> list[dict[str, Any]]:
    """Likely mislabels then out-of-place images, each with ``n``, ``kind``, ``suggested``, ``score``."""
    root = Path(str(report.get("root") or pj.data_dir(folder)))
    flags: list[dict[str, Any]] = []
    for issue in report.get("label_issues", []):
        flags.append(
            {
                "kind": "label",
                "path": issue.get("path", ""),
                "rel": issue.get("rel"),
                "label": issue.get("label", ""),
                "suggested": issue.get("suggested_label"),
                "score": issue.get("score", issue.get("label_score", 0.0)),
                "why": f"labelled {issue.get('label')}, looks like {issue.get('suggested_label')}",
            }
        )
    for odd in report.get("out_of_place", []):
        other = Path(str(odd.get("other_path") or "")).name
        why = (
            "unlike every other image"
            if odd.get("kind") == "outlier"
            else f"nearly the same picture as {other}, labelled {odd.get('other_label')}"
        )
        flags.append(
            {
                "kind": str(odd.get("kind", "outlier")),
                "path": odd.get("path", ""),
                "rel": _rel(folder, root, str(odd.get("path", ""))),
                "label": odd.get("label", ""),
                "suggested": None,
                "score": odd.get("score", 0.0),
                "why": why,
            }
        )
    for n, flag in enumerate(flags):
        flag["n"] = n
    return flags


def _log_path(studio: Studio, project: Project, job: int) -> Path:
    return studio.project_dir(project) / "review" / f"job-{job}.jsonl"


def _entries(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _append(path: Path, entry: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"time": time.time(), **entry}) + "\n")


def _decisions(entries: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """The standing decision of each flag number (undone ones withdrawn)."""
    standing: dict[int, dict[str, Any]] = {}
    undone = {e["of"] for e in entries if e.get("action") == "undo"}
    for i, entry in enumerate(entries):
        if entry.get("action") in ACTIONS and i not in undone:
            standing[int(entry["n"])] = entry
    return standing


def _state(studio: Studio, project: Project) -> dict[str, Any]:
    report = doctor_findings(studio, project)
    if report is None:
        raise DataError("The data doctor has not checked this project yet: run it on the Data page first.")
    flags = _flags(report, studio.project_dir(project))
    entries = _entries(_log_path(studio, project, int(report["job"])))
    standing = _decisions(entries)
    for flag in flags:
        decided = standing.get(flag["n"])
        flag["decision"] = decided["action"] if decided else None
    pending = [f["n"] for f in flags if f["decision"] is None]
    return {
        "job": report["job"],
        "flags": flags,
        "next": pending[0] if pending else None,
        "decided": len(flags) - len(pending),
        "can_undo": bool(standing),
    }


@router.get("/projects/{project_id}/review", response_class=HTMLResponse)
def review_page(request: Request, studio: StudioDep, project: ProjectDep) -> HTMLResponse:
    return studio.render(request, "review.html", project=project, tab="data", state=_state(studio, project))


@router.get("/api/projects/{project_id}/review")
def review_api(studio: StudioDep, project: ProjectDep) -> JSONResponse:
    """The flags in order, each with its decision (``take``/``keep``/``delete`` or null), and the next one."""
    return JSONResponse(_state(studio, project))


@router.post("/api/projects/{project_id}/review/{n}/{action}")
def review_decide(studio: StudioDep, project: ProjectDep, n: int, action: str) -> JSONResponse:
    """Decide flag ``n``: ``take`` the suggested label, ``keep``, or ``delete`` (to the trash)."""
    if action not in ACTIONS:
        raise DataError(f"Unknown review action '{action}'; use take, keep or delete.")
    folder = studio.project_dir(project)
    with _LOCK:
        state = _state(studio, project)
        if not 0 <= n < len(state["flags"]):
            raise DataError(f"There is no flag {n}; this report has {len(state['flags'])}.")
        flag = state["flags"][n]
        if flag["decision"] is not None:
            raise DataError(f"Flag {n} is already decided ({flag['decision']}); undo it first.")
        if action != "keep" and not flag["rel"]:
            raise DataError(
                f"'{Path(flag['path']).name}' is no longer where the doctor saw it; keep it or undo."
            )
        if action == "take" and not flag["suggested"]:
            raise DataError(
                "This image is out of place, not mislabelled: there is no label to take. Keep or delete it."
            )
        before = {h["log"] for h in fixes.fix_history(folder)}
        if action == "take":
            moved = fixes.relabel(folder, flag["rel"], flag["suggested"])
        elif action == "delete":
            moved = fixes.trash(folder, flag["rel"])
        made = [h["log"] for h in fixes.fix_history(folder) if h["log"] not in before]
        entry: dict[str, Any] = {"action": action, "n": n, "path": flag["path"]}
        if action != "keep":
            entry.update(fix_log=made[0] if made else None, destination=str(moved))
        _append(_log_path(studio, project, int(state["job"])), entry)
        return JSONResponse(_state(studio, project))


@router.post("/api/projects/{project_id}/review/undo")
def review_undo(studio: StudioDep, project: ProjectDep) -> JSONResponse:
    """Undo the newest review decision that still stands (a move is put back, a keep withdrawn)."""
    folder = studio.project_dir(project)
    with _LOCK:
        state = _state(studio, project)
        log = _log_path(studio, project, int(state["job"]))
        entries = _entries(log)
        undone = {e["of"] for e in entries if e.get("action") == "undo"}
        last = next(
            (
                i
                for i in range(len(entries) - 1, -1, -1)
                if entries[i].get("action") in ACTIONS and i not in undone
            ),
            None,
        )
        if last is None:
            raise DataError("There is no review decision to undo.")
        fix_log = entries[last].get("fix_log")
        if fix_log:
            fix.undo(folder / "fixes" / fix_log)
        _append(log, {"action": "undo", "of": last, "n": entries[last]["n"]})
        return JSONResponse(_state(studio, project))
