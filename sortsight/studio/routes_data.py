"""Projects (list, create, rename, delete) and the Data page (uploads, counts, samples, warnings)."""

from __future__ import annotations

import io
import json
import random
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from sortsight.errors import DataError, SortsightError
from sortsight.fileops import atomic_write_text
from sortsight.studio import projects as pj
from sortsight.studio.core import ProjectDep, Studio, StudioDep
from sortsight.studio.runs import read_json
from sortsight.studio.store import Job, Project
from sortsight.studio.uploads import copy_limited, safe_name

router = APIRouter()

_SAMPLES_PER_CLASS = 8
_SUMMARY_FILE = ".data-summary.json"
_NO_IMAGES = (
    "This project has no images yet. Upload a zip with one folder per label, "
    "or add images to a class, on the Data page."
)


def _redirect(url: str, msg: str = "") -> RedirectResponse:
    return RedirectResponse(f"{url}?msg={quote(msg)}" if msg else url, status_code=303)


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 100:
        raise DataError("A project needs a name of 1 to 100 characters.")
    return name


# projects ---------------------------------------------------------------------------------
@router.get("/", response_class=HTMLResponse)
def projects_page(request: Request, studio: StudioDep) -> HTMLResponse:
    rows = []
    for project in studio.store.list_projects():
        jobs = studio.project_jobs(project)
        rows.append({"project": project, "jobs": len(jobs), "last": jobs[0] if jobs else None})
    return studio.render(request, "projects.html", rows=rows)


@router.post("/projects")
def create_project(request: Request, studio: StudioDep, name: str = Form(...)) -> RedirectResponse:
    project = studio.store.create_project(_check_name(name))
    pj.data_dir(studio.project_dir(project)).mkdir(parents=True, exist_ok=True)
    return _redirect(f"/projects/{project.id}/data", f"Project '{project.name}' created. Now add images.")


@router.get("/api/projects")
def list_projects_api(request: Request, studio: StudioDep) -> JSONResponse:
    return JSONResponse([{"id": p.id, "name": p.name, "slug": p.slug} for p in studio.store.list_projects()])


@router.post("/projects/{project_id}/rename")
def rename_project(
    request: Request, studio: StudioDep, project: ProjectDep, name: str = Form(...)
) -> RedirectResponse:
    studio.store.rename_project(project.id, _check_name(name))
    return _redirect("/", "Project renamed.")


@router.post("/projects/{project_id}/delete")
def delete_project(
    request: Request, studio: StudioDep, project: ProjectDep, confirm: str = Form("")
) -> RedirectResponse:
    """Delete a project after confirmation (its name typed again); its folder goes to the home's trash."""
    if confirm.strip() != project.name:
        raise DataError(f"To delete '{project.name}', type its name exactly in the confirmation box.")
    if studio.active_job(project, "train") or studio.active_job(project, "predict"):
        raise DataError("A job of this project is still running. Stop it first, then delete the project.")
    target = pj.move_project_to_trash(studio.home, studio.home / "projects" / project.slug)
    studio.store.delete_project(project.id)
    studio.summaries.pop(project.id, None)
    return _redirect("/", f"Project '{project.name}' deleted (its files were moved to {target}).")


# data -------------------------------------------------------------------------------------
def _signature(data: Path) -> tuple[int, float]:
    count, latest = 0, 0.0
    for path in data.rglob("*"):
        count += 1
        latest = max(latest, path.stat().st_mtime)
    return count, latest


def data_summary(studio: Studio, project: Project) -> dict[str, Any]:
    """The project's data summary (``sortsight.data.summarize``), cached until the files change.

    Returns a dict with ``ok`` False and an ``error`` message when the data cannot be used yet.
    """
    data = pj.data_dir(studio.project_dir(project))
    data.mkdir(parents=True, exist_ok=True)
    signature = _signature(data)
    cached = studio.summaries.get(project.id)
    if cached and cached[0] == signature:
        return cached[1]
    # checking every image takes a while on a big collection: keep the result across restarts
    saved = read_json(studio.project_dir(project) / _SUMMARY_FILE)
    if isinstance(saved, dict) and saved.get("signature") == list(signature):
        studio.summaries[project.id] = (signature, saved["summary"])
        return dict(saved["summary"])
    result = (
        _tag_summary(studio.project_dir(project))
        if pj.is_tagged(studio.project_dir(project))
        else _class_summary(data)
    )
    studio.summaries[project.id] = (signature, result)
    saved = {"signature": list(signature), "summary": result}
    atomic_write_text(studio.project_dir(project) / _SUMMARY_FILE, json.dumps(saved))
    return result


def _samples(ds: Any, groups: dict[str, list[Path]]) -> dict[str, list[str]]:
    """Up to ``_SAMPLES_PER_CLASS`` images of each group, the same ones every time (seed 42), as
    ``data/...`` paths."""
    rng = random.Random(42)
    return {
        name: [
            str(Path("data") / ds.relative(p))
            for p in sorted(rng.sample(members, min(_SAMPLES_PER_CLASS, len(members))))
        ]
        for name, members in groups.items()
    }


def _class_summary(data: Path) -> dict[str, Any]:
    """A class-folder project's summary (``sortsight.data.summarize``) with sample images per class."""
    from sortsight.data import scan, summarize

    try:
        if not any(p.is_file() for p in data.rglob("*")):
            raise DataError(_NO_IMAGES)
        ds = scan(data)
    except SortsightError as exc:
        return {"ok": False, "error": str(exc), "samples": {}, "classes": []}
    result: dict[str, Any] = {"ok": True, **summarize(ds)}
    result["samples"] = _samples(ds, {c: [it.path for it in ds.items if it.label == c] for c in ds.classes})
    result["skipped"] = [{**s, "path": str(Path("data") / s["path"])} for s in result["skipped"]]
    return result


def _tag_summary(folder: Path) -> dict[str, Any]:
    """A tagging project's summary (``sortsight.tagdata.summarize_tags``) with ``classes`` (the
    tags), ``tag_of`` (image → its tags, for the tag editors) and sample images per tag."""
    from sortsight.tagdata import scan_tags, summarize_tags

    try:
        ds = scan_tags(pj.labels_file(folder))
    except SortsightError as exc:
        return {"ok": False, "task": "multi_label", "error": str(exc), "samples": {}, "classes": []}
    result: dict[str, Any] = {"ok": True, **summarize_tags(ds)}
    result["classes"] = list(ds.tags)
    samples = _samples(ds, {t: [it.path for it in ds.items if t in it.tags] for t in ds.tags})
    untagged = [it.path for it in ds.items if not it.tags][:_SAMPLES_PER_CLASS]
    if untagged:
        samples["(no tag)"] = [str(Path("data") / ds.relative(p)) for p in untagged]
    result["samples"] = samples
    result["tag_of"] = {str(Path("data") / ds.relative(it.path)): list(it.tags) for it in ds.items}
    result["skipped"] = [{**s, "path": str(Path("data") / s["path"])} for s in result["skipped"]]
    return result


def doctor_findings(studio: Studio, project: Project) -> dict[str, Any] | None:
    """The data doctor's newest report for this project (``doctor.json`` of the last doctor job).

    Image paths get a ``rel`` (project-relative, for thumbnails and fixes; None once moved).
    """
    folder = studio.project_dir(project).resolve()
    for job in studio.project_jobs(project, "doctor"):
        if job.status != "finished":
            continue
        report = read_json(Path(job.folder) / "doctor" / "doctor.json")
        if not isinstance(report, dict):
            continue
        root = Path(str(report.get("root") or pj.data_dir(folder)))

        def rel(path: str, root: Path = root) -> str | None:
            full = (root / path).resolve()
            try:
                out = str(full.relative_to(folder))
            except ValueError:
                return None
            return out if full.is_file() else None

        for issue in report.get("label_issues", []):
            issue["rel"] = rel(issue.get("path", ""))
        for issue in report.get("tag_issues", []):
            issue["rel"] = rel(issue.get("path", ""))
        for flag in report.get("quality", []):
            flag["rel"] = rel(flag.get("path", ""))
        for group in report.get("duplicates", []):
            group["rels"] = [rel(p) for p in group.get("paths", [])]
        report["job"] = job.id
        return report
    return None


@router.post("/projects/{project_id}/doctor")
async def run_doctor(request: Request, studio: StudioDep, project: ProjectDep) -> RedirectResponse:
    """Start the data doctor (duplicates, leakage, likely mislabels, quality) as a job."""
    folder = studio.project_dir(project)

    def steps(job_folder: Path) -> list[list[str]]:
        out = job_folder / "doctor"
        task = ["--task", "multi_label"] if pj.is_tagged(folder) else []
        source = str(pj.training_source(folder))
        return [studio.step("check", source, *task, "--doctor", "--doctor-out", str(out))]

    def start() -> Job:
        with studio.start_lock:
            if studio.active_job(project, "doctor"):
                raise DataError("The data doctor is already running for this project.")
            return studio.jobs.start(project.id, "doctor", folder / "jobs", steps, {})

    job = await run_in_threadpool(start)
    return RedirectResponse(f"/projects/{project.id}/jobs/{job.id}", status_code=303)


@router.get("/projects/{project_id}", response_class=HTMLResponse)
def project_home(project: ProjectDep) -> RedirectResponse:
    return RedirectResponse(f"/projects/{project.id}/data", status_code=303)


@router.get("/projects/{project_id}/data", response_class=HTMLResponse)
async def data_page(request: Request, studio: StudioDep, project: ProjectDep) -> HTMLResponse:
    summary = await run_in_threadpool(data_summary, studio, project)
    findings = await run_in_threadpool(doctor_findings, studio, project)
    doctor_job = studio.active_job(project, "doctor")
    return studio.render(
        request,
        "data.html",
        project=project,
        tab="data",
        tagged=pj.is_tagged(studio.project_dir(project)),
        summary=summary,
        classes=summary.get("classes", []),
        doctor=findings,
        doctor_job=doctor_job,
    )


@router.get("/api/projects/{project_id}/data")
async def data_api(request: Request, studio: StudioDep, project: ProjectDep) -> JSONResponse:
    return JSONResponse(await run_in_threadpool(data_summary, studio, project))


@contextmanager
def _staged_zip(folder: Path) -> Iterator[Path]:
    """A fresh path in the project's ``.staging/`` for an uploaded zip; the file is gone afterwards."""
    staging = folder / ".staging"
    staging.mkdir(parents=True, exist_ok=True)
    upload = staging / f"{uuid.uuid4().hex}.zip"
    try:
        yield upload
    finally:
        upload.unlink(missing_ok=True)


def _left_out(skipped: list[tuple[str, str]], sep: str = "; ") -> str:
    """`` Left out N: path (reason); ...`` (the first five) for an upload's message, or nothing."""
    if not skipped:
        return ""
    return f" Left out {len(skipped)}: " + sep.join(f"{p} ({r})" for p, r in skipped[:5])


@router.post("/projects/{project_id}/data/zip")
async def upload_zip(
    request: Request, studio: StudioDep, project: ProjectDep, archive: UploadFile = File(...)
) -> RedirectResponse:
    """Add a zip of class folders (or split folders) to the project's data."""
    folder = studio.project_dir(project)
    with _staged_zip(folder) as upload:
        await run_in_threadpool(copy_limited, archive.file, upload, studio.limits.max_request_bytes)
        report = await run_in_threadpool(pj.import_zip, folder, upload, studio.limits)
    msg = f"Added {len(report.added)} image(s) from {archive.filename or 'the zip'}."
    if report.renamed:
        msg += (
            f" {len(report.renamed)} had the name of another file in the zip and were kept under a new name: "
            + "; ".join(f"{old} → {Path(new).name}" for old, new in report.renamed[:5])
            + "."
        )
    msg += _left_out(report.skipped)
    return _redirect(f"/projects/{project.id}/data", msg)


@router.post("/projects/{project_id}/data/tagged")
async def upload_tagged(
    request: Request,
    studio: StudioDep,
    project: ProjectDep,
    archive: UploadFile = File(...),
    labels: UploadFile | None = File(None),
) -> RedirectResponse:
    """Add a zip of images with their tags (a labels file in the zip, or uploaded beside it):
    the project becomes (or stays) a tagging project."""
    folder = studio.project_dir(project)
    labels_path: Path | None = None
    with _staged_zip(folder) as upload:
        try:
            await run_in_threadpool(copy_limited, archive.file, upload, studio.limits.max_request_bytes)
            if labels is not None and labels.filename:
                suffix = Path(labels.filename).suffix.lower()
                if suffix not in (".csv", ".tsv", ".jsonl", ".ndjson", ".txt"):
                    raise DataError(
                        f"'{labels.filename}' is not a labels file; upload a CSV, TSV or JSONL with columns "
                        "'image' and 'labels'."
                    )
                labels_path = upload.parent / f"{uuid.uuid4().hex}{suffix}"
                await run_in_threadpool(
                    copy_limited, labels.file, labels_path, studio.limits.max_request_bytes
                )
            report = await run_in_threadpool(pj.import_tagged_zip, folder, upload, labels_path, studio.limits)
        finally:
            if labels_path is not None:
                labels_path.unlink(missing_ok=True)
    msg = f"Added {len(report.added)} tagged image(s) from {archive.filename or 'the zip'}."
    if report.renamed:
        msg += (
            f" {len(report.renamed)} had the name of another file in the zip and were kept under a new name."
        )
    msg += _left_out(report.skipped)
    return _redirect(f"/projects/{project.id}/data", msg)


@router.post("/projects/{project_id}/data/files")
async def upload_files(
    request: Request,
    studio: StudioDep,
    project: ProjectDep,
    label: str = Form(""),
    files: list[UploadFile] = File(...),
) -> RedirectResponse:
    """Add images (many files, or a folder picked in the browser) to one class."""
    folder = studio.project_dir(project)
    tagged = pj.is_tagged(folder)
    pj.parse_tags(label) if tagged else pj.class_label(label)  # refused before anything is saved
    staging = folder / ".staging" / uuid.uuid4().hex
    saved: list[Path] = []
    try:
        for upload in files:
            name = Path((upload.filename or "").replace("\\", "/")).name
            if not name:
                continue
            target = staging / str(len(saved)) / safe_name(name, what="file name")
            await run_in_threadpool(copy_limited, upload.file, target, studio.limits.max_request_bytes)
            saved.append(target)
        report = await run_in_threadpool(pj.add_files, folder, label, saved)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    where = f"with tags '{label.strip()}'" if tagged else f"to '{label.strip()}'"
    msg = f"Added {len(report.added)} image(s) {where}."
    msg += _left_out(report.skipped, sep=", ")
    return _redirect(f"/projects/{project.id}/data", msg)


@router.get("/projects/{project_id}/thumb")
def thumbnail(studio: StudioDep, project: ProjectDep, path: str, size: int = 160) -> Response:
    """A JPEG thumbnail of an image of the project (any format sortsight reads, EXIF applied)."""
    from sortsight.images import open_image

    file = pj.resolve_inside(studio.project_dir(project), path)
    if not file.is_file():
        raise DataError(f"'{path}' not found in this project; it may have been moved.")
    size = max(32, min(size, 512))
    image = open_image(file, draft=(size, size))
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return Response(buffer.getvalue(), media_type="image/jpeg", headers={"Cache-Control": "no-store"})
