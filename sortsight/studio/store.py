"""The studio's SQLite store: projects and jobs.

One small file (``<home>/studio.sqlite``). Every call opens its own connection, so the store is
safe to use from FastAPI's worker threads. Project folders live beside it under
``<home>/projects/<slug>/``; the store only remembers names, slugs and job records.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["JOB_STATES", "Job", "Project", "Store"]

#: every state a job can be in; only "queued" and "running" are not final.
JOB_STATES = ("queued", "running", "finished", "failed", "stopped")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS projects (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    slug TEXT NOT NULL UNIQUE,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    params TEXT NOT NULL DEFAULT '{}',
    folder TEXT NOT NULL DEFAULT '',
    pid INTEGER,
    pid_started REAL,
    stop_requested INTEGER NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    finished REAL
);
"""


@dataclass(frozen=True)
class Project:
    """A project: a display name and a folder under ``<home>/projects/<slug>``."""

    id: int
    name: str
    slug: str
    created: float


@dataclass(frozen=True)
class Job:
    """A background job (train, predict, evaluate) run as a subprocess."""

    id: int
    project_id: int
    kind: str
    status: str
    params: dict[str, Any] = field(default_factory=dict)
    folder: str = ""
    pid: int | None = None
    pid_started: float | None = None
    stop_requested: bool = False
    error: str = ""
    created: float = 0.0
    finished: float | None = None

    @property
    def active(self) -> bool:
        """True while the job is queued or running."""
        return self.status in ("queued", "running")


def slugify(name: str) -> str:
    """A folder-safe slug of a display name (ASCII letters, digits and dashes)."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug[:40] or "project"


class Store:
    """Projects and jobs in one SQLite file.

    Example:
        >>> store = Store(":memory:")  # doctest: +SKIP
        >>> store.create_project("Postcards").slug  # doctest: +SKIP
        'postcards'
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        with self._connect() as db:
            db.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA foreign_keys = ON")
        try:
            with db:
                yield db
        finally:
            db.close()

    # projects ---------------------------------------------------------------------------
    def create_project(self, name: str) -> Project:
        """Add a project; its slug is made unique by a numeric suffix."""
        base = slugify(name)
        with self._connect() as db:
            taken = {row["slug"] for row in db.execute("SELECT slug FROM projects")}
            slug, i = base, 2
            while slug in taken:
                slug, i = f"{base}-{i}", i + 1
            cur = db.execute(
                "INSERT INTO projects (name, slug, created) VALUES (?, ?, ?)", (name, slug, time.time())
            )
            project_id = int(cur.lastrowid or 0)
        project = self.get_project(project_id)
        assert project is not None
        return project

    def get_project(self, project_id: int) -> Project | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM projects WHERE id = ?", (project_id,)).fetchone()
        return Project(row["id"], row["name"], row["slug"], row["created"]) if row else None

    def list_projects(self) -> list[Project]:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM projects ORDER BY created DESC, id DESC").fetchall()
        return [Project(r["id"], r["name"], r["slug"], r["created"]) for r in rows]

    def rename_project(self, project_id: int, name: str) -> None:
        with self._connect() as db:
            db.execute("UPDATE projects SET name = ? WHERE id = ?", (name, project_id))

    def delete_project(self, project_id: int) -> None:
        with self._connect() as db:
            db.execute("DELETE FROM jobs WHERE project_id = ?", (project_id,))
            db.execute("DELETE FROM projects WHERE id = ?", (project_id,))

    # jobs -------------------------------------------------------------------------------
    def create_job(self, project_id: int, kind: str, params: dict[str, Any]) -> Job:
        with self._connect() as db:
            cur = db.execute(
                "INSERT INTO jobs (project_id, kind, status, params, created) VALUES (?, ?, 'queued', ?, ?)",
                (project_id, kind, json.dumps(params), time.time()),
            )
            job_id = int(cur.lastrowid or 0)
        job = self.get_job(job_id)
        assert job is not None
        return job

    def update_job(self, job_id: int, **values: Any) -> None:
        """Set columns of a job (``status``, ``pid``, ``folder``, ``error``, ...)."""
        allowed = {"status", "folder", "pid", "pid_started", "stop_requested", "error", "finished", "params"}
        unknown = set(values) - allowed
        if unknown:
            raise ValueError(f"unknown job columns {sorted(unknown)}")
        if "params" in values:
            values["params"] = json.dumps(values["params"])
        sets = ", ".join(f"{key} = ?" for key in values)
        with self._connect() as db:
            db.execute(f"UPDATE jobs SET {sets} WHERE id = ?", (*values.values(), job_id))

    def get_job(self, job_id: int) -> Job | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _job(row) if row else None

    def list_jobs(self, project_id: int | None = None, *, kind: str | None = None) -> list[Job]:
        query, args = "SELECT * FROM jobs WHERE 1 = 1", list[object]()
        if project_id is not None:
            query += " AND project_id = ?"
            args.append(project_id)
        if kind is not None:
            query += " AND kind = ?"
            args.append(kind)
        with self._connect() as db:
            rows = db.execute(query + " ORDER BY id DESC", args).fetchall()
        return [_job(r) for r in rows]


def _job(row: sqlite3.Row) -> Job:
    return Job(
        id=row["id"],
        project_id=row["project_id"],
        kind=row["kind"],
        status=row["status"],
        params=json.loads(row["params"] or "{}"),
        folder=row["folder"],
        pid=row["pid"],
        pid_started=row["pid_started"],
        stop_requested=bool(row["stop_requested"]),
        error=row["error"],
        created=row["created"],
        finished=row["finished"],
    )
