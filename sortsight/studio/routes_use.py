"""The Use page: predict uploaded images or a server-side folder, sort them, download CSV and model."""

from __future__ import annotations

import logging
import uuid
import zipfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, BinaryIO

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from sortsight.errors import DataError, PredictError
from sortsight.fileops import staged_folder
from sortsight.images import iter_image_files
from sortsight.predictions import read_page
from sortsight.studio import runs
from sortsight.studio.core import JobDep, ProjectDep, Studio, StudioDep
from sortsight.studio.security import FOLDERS_ENV, check_folder
from sortsight.studio.store import Job, Project
from sortsight.studio.uploads import copy_limited, safe_name

router = APIRouter()
log = logging.getLogger(__name__)


def _models(studio: Studio, project: Project) -> list[Job]:
    return [j for j in studio.project_jobs(project, "train") if runs.job_run(j.folder).has_model()]


def _model_job(studio: Studio, project: Project, job_id: int | None) -> Job:
    models = _models(studio, project)
    if not models:
        raise PredictError("This project has no trained model yet. Train one on the Train page first.")
    if job_id is None:
        return models[0]
    for job in models:
        if job.id == job_id:
            return job
    raise PredictError(f"Training job {job_id} has no model. Choose a finished training job.")


def threshold_spec() -> dict[str, Any]:
    """PredictConfig's declaration of ``threshold`` (help, min, max): the Use form's box."""
    from sortsight.config import PredictConfig, describe_fields

    return next(d for d in describe_fields(PredictConfig) if d["name"] == "threshold")


def _threshold(raw: str) -> float | None:
    raw = raw.strip()
    if not raw:
        return None
    spec = threshold_spec()
    low, high = spec["min"], spec["max"]
    try:
        value = float(raw)
    except ValueError as exc:
        raise DataError(
            f"The unsure threshold must be a number between {low:g} and {high:g}, got '{raw}'."
        ) from exc
    if not low <= value <= high:
        raise DataError(f"The unsure threshold must be between {low:g} and {high:g}, got {value}.")
    return value


def _start_predict(
    studio: Studio,
    project: Project,
    model_job: Job,
    source: Path,
    *,
    threshold: float | None,
    sort: bool,
    count: int,
    source_label: str,
) -> Job:
    model = runs.job_run(model_job.folder).model_dir

    def steps(folder: Path) -> list[list[str]]:
        args = ["predict", str(model), str(source), "--csv", str(folder / "predictions.csv")]
        if threshold is not None:
            args += ["--threshold", str(threshold)]
        if sort:
            args += ["--sort-into", str(folder / "sorted")]
        return [studio.step(*args)]

    params = {
        "model_job": model_job.id,
        "source": source_label,
        "threshold": threshold,
        "sort": sort,
        "count": count,
    }
    return studio.jobs.start(project.id, "predict", studio.project_dir(project) / "jobs", steps, params)


@router.get("/projects/{project_id}/use", response_class=HTMLResponse)
def use_page(
    request: Request, studio: StudioDep, project: ProjectDep, job: int | None = None
) -> HTMLResponse:
    predict_jobs = studio.project_jobs(project, "predict")
    shown = None
    if job is not None:
        shown = studio.job(project, job)
    elif predict_jobs:
        shown = predict_jobs[0]
    rows: list[dict[str, Any]] = []
    total = 0
    if shown is not None:
        rows, total = read_page(Path(shown.folder) / "predictions.csv")
        folder = studio.project_dir(project).resolve()
        for row in rows:
            try:
                row["rel"] = str(Path(row.get("path", "")).resolve().relative_to(folder))
            except ValueError:
                row["rel"] = None
    return studio.render(
        request,
        "use.html",
        project=project,
        tab="use",
        models=_models(studio, project),
        jobs=predict_jobs,
        shown=shown,
        rows=rows,
        total=total,
        space_available=_space_available(),
        folders=studio.folders,
        folders_env=FOLDERS_ENV,
        threshold=threshold_spec(),
    )


async def _predict_job(
    studio: Studio,
    project: Project,
    model_job: int | None,
    threshold: str,
    sort: str,
    images: Callable[[], Awaitable[tuple[Path, int, str]]],
) -> RedirectResponse:
    """A Use form's prediction: the model and the threshold are checked first, before ``images``
    saves or looks at any file and gives ``(folder, image count, source label)``; then the job
    starts and the browser goes to its page."""
    chosen = _model_job(studio, project, model_job)
    limit = _threshold(threshold)
    source, count, label = await images()
    job = await run_in_threadpool(
        lambda: _start_predict(
            studio,
            project,
            chosen,
            source,
            threshold=limit,
            sort=bool(sort),
            count=count,
            source_label=label,
        )
    )
    return RedirectResponse(f"/projects/{project.id}/jobs/{job.id}", status_code=303)


@router.post("/projects/{project_id}/use/upload")
async def predict_upload(
    request: Request,
    studio: StudioDep,
    project: ProjectDep,
    files: list[UploadFile] = File(...),
    model_job: int | None = Form(None),
    threshold: str = Form(""),
    sort: str = Form(""),
) -> RedirectResponse:
    """Predict images uploaded from the browser (kept in the project's ``uploads/``)."""

    async def saved() -> tuple[Path, int, str]:
        target = studio.project_dir(project) / "uploads" / uuid.uuid4().hex[:12]
        count = 0
        for upload in files:
            name = Path((upload.filename or "").replace("\\", "/")).name
            if not name:
                continue
            await run_in_threadpool(
                copy_limited,
                upload.file,
                target / str(count) / safe_name(name, what="file name"),
                studio.limits.max_request_bytes,
            )
            count += 1
        if not count:
            raise DataError("No files were uploaded. Choose one or more images.")
        return target, count, f"{count} uploaded file(s)"

    return await _predict_job(studio, project, model_job, threshold, sort, saved)


@router.post("/projects/{project_id}/use/folder")
async def predict_folder(
    request: Request,
    studio: StudioDep,
    project: ProjectDep,
    folder: str = Form(...),
    model_job: int | None = Form(None),
    threshold: str = Form(""),
    sort: str = Form(""),
) -> RedirectResponse:
    """Predict the images of a folder on the studio's machine (read only; sorted copies go in the job)."""

    async def counted() -> tuple[Path, int, str]:
        source = check_folder(folder, studio.folders)  # before any look at the disk
        if not source.is_dir():
            raise DataError(f"Folder '{folder}' not found on the studio's computer. Check the path.")
        count = await run_in_threadpool(lambda: sum(1 for _ in iter_image_files(source)))
        if not count:
            raise DataError(f"Folder '{folder}' holds no images sortsight can read.")
        return source.resolve(), count, str(source.resolve())

    return await _predict_job(studio, project, model_job, threshold, sort, counted)


@router.get("/projects/{project_id}/jobs/{job_id}/predictions.csv")
def download_predictions(job: JobDep) -> FileResponse:
    path = Path(job.folder) / "predictions.csv"
    if job.kind != "predict" or not path.is_file():
        raise DataError("This job has no predictions (yet).")
    return FileResponse(path, media_type="text/csv", filename=f"predictions-{job.id}.csv")


def _zip_folder(folder: Path, target: Path, prefix: str) -> None:
    from sortsight.fileops import atomic_write

    def write(fh: BinaryIO) -> None:  # a unique temporary file each time: requests run in parallel
        with zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    archive.write(path, f"{prefix}/{path.relative_to(folder).as_posix()}")

    atomic_write(target, write)
    log.info("zipped %s", target)


def _zip_once(studio: Studio, folder: Path, target: Path, prefix: str, *, fresh: bool = False) -> None:
    """Make ``target`` (a zip of ``folder``) unless it exists (and, with ``fresh``, is newer than
    every file of ``folder``, which a running training may still replace); concurrent requests
    for one zip wait for a single build."""
    with studio.lock_for(target):
        if target.is_file():
            newest = max((p.stat().st_mtime for p in folder.rglob("*") if p.is_file()), default=0.0)
            if not fresh or target.stat().st_mtime >= newest:
                return
        _zip_folder(folder, target, prefix)


@router.get("/projects/{project_id}/jobs/{job_id}/model.zip")
async def download_model(
    request: Request, studio: StudioDep, project: ProjectDep, job: JobDep
) -> FileResponse:
    """The trained model (the Hugging Face folder) as a zip."""
    run = runs.job_run(job.folder)
    model = run.model_dir
    if job.kind != "train" or not run.has_model():
        raise DataError("This job has no trained model.")
    target = Path(job.folder) / "model.zip"
    await run_in_threadpool(lambda: _zip_once(studio, model, target, f"{project.slug}-model", fresh=True))
    return FileResponse(target, media_type="application/zip", filename=f"{project.slug}-model-{job.id}.zip")


@router.get("/projects/{project_id}/jobs/{job_id}/sorted.zip")
async def download_sorted(
    request: Request, studio: StudioDep, project: ProjectDep, job: JobDep
) -> FileResponse:
    """The images a predict job sorted into class folders (and ``unsure/``), as a zip."""
    sorted_dir = Path(job.folder) / "sorted"
    if job.kind != "predict" or not sorted_dir.is_dir() or job.active:
        raise DataError("This job has no finished sorted folders.")
    target = Path(job.folder) / "sorted.zip"
    await run_in_threadpool(_zip_once, studio, sorted_dir, target, f"sorted-{job.id}")
    return FileResponse(target, media_type="application/zip", filename=f"{project.slug}-sorted-{job.id}.zip")


def _space_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("sortsight.space") is not None


def _export_space(run: Path, target: Path) -> None:
    from sortsight.space import export_space

    with staged_folder(target, existing="keep") as staging:  # two requests at once: the first one stays
        export_space(run, staging)


@router.post("/projects/{project_id}/jobs/{job_id}/space")
async def export_space_folder(
    request: Request, studio: StudioDep, project: ProjectDep, job: JobDep
) -> RedirectResponse:
    """Write a Hugging Face Space folder for a trained model (``sortsight.space``), offered as a zip."""
    run = runs.run_folder(job.folder)
    if job.kind != "train" or not runs.job_run(job.folder).has_model():
        raise DataError("This job has no trained model.")
    space = Path(job.folder) / "space"
    if not space.is_dir():
        await run_in_threadpool(_export_space, run, space)
    return RedirectResponse(f"/projects/{project.id}/jobs/{job.id}/space.zip", status_code=303)


@router.get("/projects/{project_id}/jobs/{job_id}/space.zip")
async def download_space(
    request: Request, studio: StudioDep, project: ProjectDep, job: JobDep
) -> FileResponse:
    space = Path(job.folder) / "space"
    if not space.is_dir():
        raise DataError("No Space folder was exported for this model yet. Use 'Export a Space folder' first.")
    target = Path(job.folder) / "space.zip"
    await run_in_threadpool(_zip_once, studio, space, target, f"{project.slug}-space")
    return FileResponse(target, media_type="application/zip", filename=f"{project.slug}-space-{job.id}.zip")
