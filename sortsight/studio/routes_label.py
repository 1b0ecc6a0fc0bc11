"""The Label page: start from an unlabelled pile, label it with the model's help, map it, train.

A project's labelling lives in ``<project>/labelling/`` (a :class:`sortsight.labelling.LabelSession`
folder: ``session.json`` and ``labels.csv``), so it survives a studio restart. The pile's index is
``<project>/pile.index`` when the studio builds it (an ``index`` job running ``sortsight index``),
or any index folder the user names. "Train" copies the labelled images into the project's
``data/<label>/`` (logged in ``fixes/``, so the Results page's undo reverts it) and starts a
normal training job.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from sortsight.errors import DataError
from sortsight.labelling import LabelSession
from sortsight.studio import projects as pj
from sortsight.studio.core import ProjectDep, Studio, StudioDep, studio_of
from sortsight.studio.security import check_folder
from sortsight.studio.store import Project

router = APIRouter()

_LOCK = threading.Lock()
_SHOWN = 8  # suggestions sent to the page at a time


def _folder(studio: Studio, project: Project) -> Path:
    return studio.project_dir(project) / "labelling"


def _sessions(request: Request) -> dict[int, LabelSession]:
    state = request.app.state
    if not hasattr(state, "label_sessions"):
        state.label_sessions = {}
    sessions: dict[int, LabelSession] = state.label_sessions
    return sessions


def _session(request: Request, project: Project, *, required: bool = True) -> LabelSession | None:
    """The project's session: in memory, else reopened from its folder (after a restart)."""
    studio = studio_of(request)
    sessions = _sessions(request)
    with _LOCK:
        if project.id in sessions:
            return sessions[project.id]
        folder = _folder(studio, project)
        built = studio.project_dir(project) / "pile.index"
        if (folder / "session.json").is_file():
            sessions[project.id] = LabelSession(folder)
        elif (built / "files.csv").is_file() and not studio.active_job(project, "index"):
            sessions[project.id] = LabelSession(folder, index=built)
        elif required:
            raise DataError("No pile to label yet. Give a folder of images (or an index) on the Label page.")
        else:
            return None
        return sessions[project.id]


def _state(session: LabelSession, mode: str, target: str) -> dict[str, Any]:
    if mode == "likely" and target not in session.fitted_classes:
        mode = "uncertain"
    found = session.next(_SHOWN, mode=mode, target=target or None)
    return {
        **session.stats(),
        "mode": mode,
        "target": target if mode == "likely" else "",
        "fitted": session.fitted_classes,
        "suggestions": [s.to_dict(session.index.root) for s in found],
    }


@router.get("/projects/{project_id}/label", response_class=HTMLResponse)
def label_page(request: Request, studio: StudioDep, project: ProjectDep) -> HTMLResponse:
    session = _session(request, project, required=False)
    return studio.render(
        request,
        "label.html",
        project=project,
        tab="label",
        session=session,
        index_job=studio.active_job(project, "index"),
        folders=studio.folders,
        state=_state(session, "uncertain", "") if session else None,
    )


@router.post("/projects/{project_id}/label/start")
async def start_labelling(
    request: Request, studio: StudioDep, project: ProjectDep, source: str = Form(...)
) -> RedirectResponse:
    """Label an existing index, or start an ``index`` job over a folder of the studio's machine."""
    path = check_folder(source, studio.folders)  # only folders the user allowed, before any look
    if not path.is_dir():
        raise DataError(
            f"'{source}' is not a folder on the studio's machine. Give the full path of a folder."
        )
    if (path / "index.json").is_file():
        folder = _folder(studio, project)
        session = await run_in_threadpool(lambda: LabelSession(folder, index=path))
        with _LOCK:
            _sessions(request)[project.id] = session
        return RedirectResponse(f"/projects/{project.id}/label", status_code=303)
    out = studio.project_dir(project) / "pile.index"

    def steps(job_folder: Path) -> list[list[str]]:
        return [studio.step("index", str(path.resolve()), "--out", str(out))]

    def start() -> Any:
        with studio.start_lock:
            if studio.active_job(project, "index"):
                raise DataError("This project's pile is being indexed already; wait for that job.")
            return studio.jobs.start(
                project.id, "index", studio.project_dir(project) / "jobs", steps, {"source": str(path)}
            )

    job = await run_in_threadpool(start)
    return RedirectResponse(f"/projects/{project.id}/jobs/{job.id}", status_code=303)


@router.get("/api/projects/{project_id}/label")
def label_state(
    request: Request, project: ProjectDep, mode: str = "uncertain", target: str = ""
) -> JSONResponse:
    session = _session(request, project)
    assert session is not None
    with _LOCK:
        return JSONResponse(_state(session, mode, target))


@router.post("/api/projects/{project_id}/label")
async def label_images(request: Request, project: ProjectDep) -> JSONResponse:
    """``{"positions" | "paths": [...], "label": str, "mode", "target"}`` → the new state.

    ``"action": "reject"`` says the images are *not* ``label``; ``"unlabel"`` forgets their labels;
    ``"class"`` only adds the class name.
    """
    body = await request.json()
    if not isinstance(body, dict):
        raise DataError("Send a JSON object with 'label' and 'positions' or 'paths'.")
    session = _session(request, project)
    assert session is not None
    items: list[Any] = [int(p) for p in body.get("positions", [])]
    items += [str(p) for p in body.get("paths", [])]
    label = str(body.get("label", ""))
    action = str(body.get("action", "label"))

    def apply() -> dict[str, Any]:
        with _LOCK:
            changed = 0
            if action == "class":
                session.add_class(label)
            elif action == "reject":
                for item in items:
                    session.reject(item, label)
            elif action == "unlabel":
                for item in items:
                    session.unlabel(item)
            else:
                if not items:
                    raise DataError("No image was given to label.")
                changed = session.label(items, label)
            state = _state(session, str(body.get("mode", "uncertain")), str(body.get("target", "")))
            state["message"] = f"Labelled {changed} image(s) '{label}'." if action == "label" else "Done."
            return state

    return JSONResponse(await run_in_threadpool(apply))


@router.get("/projects/{project_id}/label/labels.csv")
def download_labels(request: Request, project: ProjectDep) -> FileResponse:
    session = _session(request, project)
    assert session is not None
    if not session.labels:
        raise DataError("No image is labelled yet. Label a few images first.")
    return FileResponse(session.labels_file, media_type="text/csv", filename=f"{project.slug}-labels.csv")


@router.get("/projects/{project_id}/label/thumb/{position}")
def label_thumb(request: Request, project: ProjectDep, position: int, size: int = 160) -> Response:
    """A JPEG thumbnail of image ``position`` of the project's index (only indexed images are served)."""
    from sortsight.images import open_image

    session = _session(request, project)
    assert session is not None
    if not 0 <= position < len(session.index):
        raise DataError(f"There is no image {position} in this pile.")
    size = max(32, min(size, 640))
    image = open_image(session.index.paths[position], draft=(size, size))
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return Response(buffer.getvalue(), media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})


@router.get("/projects/{project_id}/label/map", response_class=HTMLResponse)
async def label_map(request: Request, project: ProjectDep) -> HTMLResponse:
    """The collection map of the pile, coloured by label / the head's guess; lasso → label these."""
    from sortsight.collection_map import compute_map, map_payload, render_map_html

    session = _session(request, project)
    assert session is not None

    def build() -> str:
        cmap = compute_map(session.index)
        with _LOCK:
            labels = [session.labels.get(i, "") for i in range(len(session.index))]
            guesses = session.predictions()
        payload = map_payload(session.index, cmap, labels=labels, predictions=guesses, thumbs=False)
        for i, point in enumerate(payload["points"]):
            point["t"] = f"/projects/{project.id}/label/thumb/{i}?size=128"
        return render_map_html(
            payload, title=f"Map of {project.name}", label_url=f"/api/projects/{project.id}/label"
        )

    return HTMLResponse(await run_in_threadpool(build))


def _copy_into_data(studio: Studio, project: Project, session: LabelSession) -> int:
    folder = studio.project_dir(project)
    fixes = folder / "fixes"
    fixes.mkdir(parents=True, exist_ok=True)
    log = fixes / f"{len(list(fixes.glob('*.jsonl'))) + 1:06d}-label.jsonl"
    session.sort_into(pj.data_dir(folder), log=log)
    return len(session.labels)


@router.post("/projects/{project_id}/label/train")
async def train_from_labels(request: Request, studio: StudioDep, project: ProjectDep) -> RedirectResponse:
    """Copy the labelled images into the project's data (class folders) and start a training job."""
    from sortsight.studio.routes_train import start_training_job

    session = _session(request, project)
    assert session is not None
    if len({session.labels[p] for p in session.labels}) < 2:
        raise DataError("Training needs labelled images of at least two classes.")
    await run_in_threadpool(_copy_into_data, studio, project, session)
    studio.summaries.pop(project.id, None)
    job = await run_in_threadpool(start_training_job, studio, project, {"model": "auto"})
    return RedirectResponse(f"/projects/{project.id}/jobs/{job.id}", status_code=303)


@router.post("/projects/{project_id}/label/sort")
async def sort_labelled(
    request: Request, project: ProjectDep, dest: str = Form(...), move: str = Form("")
) -> RedirectResponse:
    """Copy (or move) the labelled images into ``dest/<label>/``; undo with ``sortsight undo LOG``."""
    session = _session(request, project)
    assert session is not None
    target = Path(dest.strip()).expanduser()
    if not dest.strip() or not target.is_absolute():
        raise DataError("Give the full path of the folder to sort into (e.g. /home/me/sorted).")
    log = await run_in_threadpool(lambda: session.sort_into(target, move=bool(move)))
    verb = "Moved" if move else "Copied"
    msg = f"{verb} {len(session.labels)} image(s) into {target}. Undo with: sortsight undo {log}"
    return RedirectResponse(f"/projects/{project.id}/label?msg={quote(msg)}", status_code=303)
