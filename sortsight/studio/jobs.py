"""Background jobs: sortsight CLI commands run as subprocesses, with their true state.

A job is a folder (``<project>/jobs/<id>/``) holding ``steps.json``, ``log.txt`` and the
runner's ``state.json``, plus a row in the store with the runner's PID. The runner
(:mod:`sortsight.studio.runner`) starts in a session of its own, so a crash in training never
takes the server down, and a studio restart finds the job again.

:meth:`JobManager.refresh` decides a job's state from facts, never from hope: the runner's
``state.json`` when it reached an end, else whether the recorded PID is still the same live
process; a dead runner with no final state is "failed" (or "stopped" when a stop was asked).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from sortsight.studio.runner import last_error_line, read_state
from sortsight.studio.store import Job, Store

__all__ = ["DEFAULT_CLI", "JobManager", "cli_step"]

log = logging.getLogger(__name__)


#: the command that runs the sortsight CLI (a seam: tests give a quick stand-in)
DEFAULT_CLI: tuple[str, ...] = (sys.executable, "-m", "sortsight")


def cli_step(*args: str, cli: tuple[str, ...] = DEFAULT_CLI) -> list[str]:
    """The argument list that runs ``sortsight ARGS...``."""
    return [*cli, *args]


class JobManager:
    """Starts, stops and inspects subprocess jobs recorded in a :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()

    def start(
        self,
        project_id: int,
        kind: str,
        parent: Path,
        make_steps: Callable[[Path], list[list[str]]],
        params: dict[str, Any],
    ) -> Job:
        """Record a job, make its folder ``parent/<job id>`` and start its runner.

        ``make_steps(folder)`` gives the commands to run (argument lists, see :func:`cli_step`).
        """
        job = self.store.create_job(project_id, kind, params)
        folder = Path(parent) / str(job.id)
        folder.mkdir(parents=True, exist_ok=True)
        steps = make_steps(folder)
        (folder / "steps.json").write_text(json.dumps(steps), encoding="utf-8")
        # unbuffered, and a wide console so the CLI's tables read well in the log
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "110"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "sortsight.studio.runner", str(folder)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
        with self._lock:
            self._procs[job.id] = proc
        started = _create_time(proc.pid)
        self.store.update_job(job.id, status="running", folder=str(folder), pid=proc.pid, pid_started=started)
        refreshed = self.store.get_job(job.id)
        assert refreshed is not None
        return refreshed

    def refresh(self, job: Job) -> Job:
        """Bring ``job``'s recorded state in line with the facts and return it."""
        if not job.active:
            return job
        if job.status == "queued" and not job.pid:
            if time.time() - job.created < 60:
                return job  # being started by another request right now
            self._finish(job, "failed", "The job never started.")
            return self.store.get_job(job.id) or job
        state = read_state(job.folder) if job.folder else {}
        status = state.get("status")
        with self._lock:
            proc = self._procs.get(job.id)
        if proc is not None and proc.poll() is not None:
            with self._lock:
                self._procs.pop(job.id, None)
        if status in ("finished", "failed", "stopped"):
            if job.stop_requested and status == "failed":
                status = "stopped"
            self._finish(job, status, state.get("error", "") if status == "failed" else "")
        elif not self._alive(job):
            if job.stop_requested:
                self._finish(job, "stopped", "")
            else:
                detail = last_error_line(Path(job.folder) / "log.txt") if job.folder else ""
                message = "The job's process ended without reporting a result"
                self._finish(job, "failed", f"{message}: {detail}" if detail else f"{message}.")
        fresh = self.store.get_job(job.id)
        assert fresh is not None
        return fresh

    def refresh_all(self) -> None:
        """Refresh every job that is recorded as active (called at start-up)."""
        for job in self.store.list_jobs():
            if job.active:
                self.refresh(job)

    def stop(self, job: Job) -> Job:
        """Ask a running job to stop (SIGTERM to its process group) and return its state."""
        if not job.active:
            return job
        self.store.update_job(job.id, stop_requested=1)
        if job.pid and self._alive(job):
            try:
                os.killpg(job.pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
        with self._lock:
            proc = self._procs.get(job.id)
        if proc is not None:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(job.pid or proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        else:
            _wait_gone(job.pid, 10)
        fresh = self.store.get_job(job.id)
        assert fresh is not None
        return self.refresh(fresh)

    def _alive(self, job: Job) -> bool:
        if not job.pid:
            return False
        with self._lock:
            proc = self._procs.get(job.id)
        if proc is not None:
            return proc.poll() is None
        try:
            p = psutil.Process(job.pid)
            if p.status() == psutil.STATUS_ZOMBIE:
                return False
            # the PID may have been reused by another process after a reboot or a long time
            return job.pid_started is None or abs(p.create_time() - job.pid_started) < 2.0
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False

    def _finish(self, job: Job, status: str, error: str) -> None:
        self.store.update_job(job.id, status=status, error=error, finished=time.time())


def _create_time(pid: int) -> float | None:
    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def _wait_gone(pid: int | None, timeout: float) -> None:
    if not pid:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid):
            return
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.1)
