"""The studio's shared state: home folder, store, jobs, limits, templates, and small helpers."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from sortsight.config import DEFAULT_SEED, DEFAULT_VALID_SPLIT
from sortsight.errors import ConfigError
from sortsight.studio.jobs import DEFAULT_CLI, JobManager, cli_step
from sortsight.studio.store import Job, Project, Store
from sortsight.studio.uploads import UploadLimits

__all__ = [
    "JobDep",
    "ProjectDep",
    "Studio",
    "StudioDep",
    "fmt_bytes",
    "fmt_time",
    "studio_of",
]

_HERE = Path(__file__).parent


def fmt_time(ts: float | None) -> str:
    return fmt_stamp(ts) if ts else ""


def fmt_stamp(stamp: str | float | None) -> str:
    """An ISO time stamp (as action logs write it) or a Unix time, as "2 Dec 2026, 17:40" in local time."""
    if isinstance(stamp, (int, float)):
        moment = datetime.fromtimestamp(stamp)
    else:
        try:
            moment = datetime.fromisoformat(str(stamp))
        except ValueError:
            return str(stamp or "")
        if moment.tzinfo is not None:
            moment = moment.astimezone()
    return f"{moment.day} {moment:%b %Y, %H:%M}"


def describe_job(job: Job) -> str:
    """A job's settings in words ("default model, 5 epochs, learning rate 0.001")."""
    params = job.params
    if job.kind == "predict":
        count = params.get("count", 0)
        source = params.get("source", "")
        words = [
            f"{count} image{'s' if count != 1 else ''} "
            + ("uploaded" if "uploaded" in source else f"from {source}")
        ]
        words.append(f"model of training #{params.get('model_job')}")
        if params.get("threshold") is not None:
            words.append(f"unsure below {params['threshold']}")
        if params.get("sort"):
            words.append("sorted into folders")
        return ", ".join(words)
    if job.kind != "train":
        return ""
    model = params.get("model", "auto")
    words = ["default model" if model == "auto" else str(model)]
    for key, value in params.items():
        if key == "model" or (key == "candidates" and value == 1):
            continue
        if key == "candidates":
            words.append(f"{value} models compared")
        elif key == "epochs":
            words.append(f"{value} epoch{'s' if value != 1 else ''}")
        elif key == "time_budget":
            words.append(f"at most {value}")
        else:
            words.append(f"{key.replace('_', ' ')} {value}")
    return ", ".join(words)


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


@dataclass
class Studio:
    """Everything a request handler needs; one per app."""

    home: Path
    token: str | None = None
    limits: UploadLimits = field(default_factory=UploadLimits)
    cli: tuple[str, ...] = DEFAULT_CLI
    #: folders the Use page may read (see :func:`sortsight.studio.security.check_folder`)
    folders: tuple[Path, ...] = ()
    store: Store = field(init=False)
    jobs: JobManager = field(init=False)
    templates: Jinja2Templates = field(init=False)
    summaries: dict[int, tuple[Any, dict]] = field(default_factory=dict)
    #: held while checking "no job of this kind is running" and starting one
    start_lock: threading.Lock = field(default_factory=threading.Lock)
    _file_locks: dict[Path, threading.Lock] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.home = Path(self.home).expanduser().resolve()
        if self.home.exists() and not self.home.is_dir():
            raise ConfigError(f"The studio's home '{self.home}' is a file. Give a folder (made if missing).")
        (self.home / "projects").mkdir(parents=True, exist_ok=True)
        self.store = Store(self.home / "studio.sqlite")
        self.jobs = JobManager(self.store)
        self.templates = Jinja2Templates(directory=str(_HERE / "templates"))
        self.templates.env.filters["when"] = fmt_time
        self.templates.env.filters["bytes"] = fmt_bytes
        self.templates.env.filters["stamp"] = fmt_stamp
        self.templates.env.filters["settings"] = describe_job
        # the defaults the pages describe, from their one declaration
        self.templates.env.globals.update(default_valid_split=DEFAULT_VALID_SPLIT, default_seed=DEFAULT_SEED)

    # projects ---------------------------------------------------------------------------
    def project(self, project_id: int) -> Project:
        project = self.store.get_project(project_id)
        if project is None:
            raise HTTPException(404, f"Project {project_id} not found. It may have been deleted.")
        return project

    def project_dir(self, project: Project) -> Path:
        folder = self.home / "projects" / project.slug
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    # jobs -------------------------------------------------------------------------------
    def job(self, project: Project, job_id: int) -> Job:
        job = self.store.get_job(job_id)
        if job is None or job.project_id != project.id:
            raise HTTPException(404, f"Job {job_id} not found in this project.")
        return self.jobs.refresh(job)

    def project_jobs(self, project: Project, kind: str | None = None) -> list[Job]:
        return [self.jobs.refresh(j) for j in self.store.list_jobs(project.id, kind=kind)]

    def active_job(self, project: Project, kind: str) -> Job | None:
        for job in self.project_jobs(project, kind):
            if job.active:
                return job
        return None

    def step(self, *args: str) -> list[str]:
        """A job step running ``sortsight ARGS...`` (through :attr:`cli`)."""
        return cli_step(*args, cli=self.cli)

    def lock_for(self, path: Path) -> threading.Lock:
        """One lock per file the studio builds on request (a zip), so it is built once at a time."""
        with self.start_lock:
            return self._file_locks.setdefault(Path(path), threading.Lock())

    # rendering --------------------------------------------------------------------------
    def render(self, request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        context.setdefault("message", request.query_params.get("msg", ""))
        context.setdefault("error", request.query_params.get("err", ""))
        return self.templates.TemplateResponse(request, name, context, status_code=status_code)


def studio_of(request: Request) -> Studio:
    """The :class:`Studio` of the app serving ``request``."""
    studio = request.app.state.studio
    assert isinstance(studio, Studio)
    return studio


def _project(project_id: int, studio: Annotated[Studio, Depends(studio_of)]) -> Project:
    return studio.project(project_id)


def _job(
    job_id: int, studio: Annotated[Studio, Depends(studio_of)], project: Annotated[Project, Depends(_project)]
) -> Job:
    return studio.job(project, job_id)


#: Route parameters that FastAPI fills in: the app's :class:`Studio`; the project of the path's
#: ``{project_id}`` (404 when missing); the job of ``{job_id}`` in that project (404 when missing,
#: refreshed to its true state). A new page takes what it needs::
#:
#:     @router.get("/projects/{project_id}/review")
#:     def review(request: Request, studio: StudioDep, project: ProjectDep) -> HTMLResponse: ...
StudioDep = Annotated[Studio, Depends(studio_of)]
ProjectDep = Annotated[Project, Depends(_project)]
JobDep = Annotated[Job, Depends(_job)]
