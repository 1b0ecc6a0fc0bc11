"""Run a studio job's steps (sortsight CLI commands) one after another, recording the outcome.

Started by :mod:`sortsight.studio.jobs` as ``python -m sortsight.studio.runner JOB_FOLDER`` in a
session of its own. It reads ``steps.json`` (a list of argument lists), runs each with its
output appended to ``log.txt``, and writes ``state.json`` atomically::

    {"status": "running" | "finished" | "failed" | "stopped", "step": 1, "steps": 2,
     "returncode": 0, "error": "one line"}

Each step runs with ``SORTSIGHT_ERROR_FILE`` pointing at ``error.json`` in the job folder, where
the CLI records a user error as JSON; ``error`` comes from there, and only for a crash (no such
file) from the log's last ``Error:`` line or last line.

The studio reads ``state.json`` (and whether this process is alive) to show a job's true state
after a page reload or a studio restart. This module imports nothing heavy.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sortsight.runs import read_json

__all__ = ["error_line", "last_error_line", "main", "read_state"]


def _write_state(folder: Path, state: dict[str, Any]) -> None:
    from sortsight.fileops import atomic_write_text

    atomic_write_text(folder / "state.json", json.dumps({**state, "time": time.time()}))


def _recorded_error(path: Path) -> str:
    """The message the CLI wrote to its error file (see :mod:`sortsight.cli`), else ""."""
    data = read_json(path)
    return str(data.get("error") or "") if isinstance(data, dict) else ""


def read_state(folder: str | Path) -> dict[str, Any]:
    """The runner's last recorded state, or ``{}`` when it wrote none (yet)."""
    data = read_json(Path(folder) / "state.json")
    return data if isinstance(data, dict) else {}


def last_error_line(log_path: str | Path) -> str:
    """The most useful line of a failed command's log: see :func:`error_line`."""
    try:
        return error_line(Path(log_path).read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return ""


def error_line(text: str) -> str:
    """The most useful line of a failed command's output: its last ``Error: …`` line, else its last line."""
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("$ ")]
    for line in reversed(lines):
        if line.startswith("Error:"):
            return line[len("Error:") :].strip()
    return lines[-1][:300] if lines else ""


def main(argv: list[str] | None = None) -> int:
    """Run the steps of the job folder given as the only argument; return the exit code."""
    args = sys.argv[1:] if argv is None else argv
    folder = Path(args[0])
    steps: list[list[str]] = json.loads((folder / "steps.json").read_text(encoding="utf-8"))
    log_path = folder / "log.txt"
    error_file = folder / "error.json"
    from sortsight.cli import ERROR_FILE_ENV

    env = {**os.environ, ERROR_FILE_ENV: str(error_file)}
    child: list[subprocess.Popen[bytes]] = []
    stopped = {"flag": False}

    def on_term(signum: int, frame: Any) -> None:
        stopped["flag"] = True
        for proc in child:
            if proc.poll() is None:
                proc.terminate()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    for index, step in enumerate(steps, start=1):
        _write_state(folder, {"status": "running", "step": index, "steps": len(steps), "pid": os.getpid()})
        error_file.unlink(missing_ok=True)  # an earlier step's, or an earlier attempt's
        with open(log_path, "ab") as log:
            log.write(f"$ {shlex.join(step)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                step, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
            child[:] = [proc]
            returncode = proc.wait()
        if stopped["flag"]:
            _write_state(
                folder, {"status": "stopped", "step": index, "steps": len(steps), "returncode": returncode}
            )
            return 1
        if returncode != 0:
            error = (
                _recorded_error(error_file)
                or last_error_line(log_path)
                or f"the command ended with exit code {returncode}"
            )
            _write_state(
                folder,
                {
                    "status": "failed",
                    "step": index,
                    "steps": len(steps),
                    "returncode": returncode,
                    "error": error,
                },
            )
            return 1
    _write_state(folder, {"status": "finished", "step": len(steps), "steps": len(steps), "returncode": 0})
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
