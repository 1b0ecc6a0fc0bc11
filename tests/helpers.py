"""Helpers several test modules share: kill a process mid-job, a quiet local HTTP handler.

Not a test module: test_sort.py, test_multilabel.py, test_cli_predict.py, test_fetch.py and
test_websearch.py import it.
"""

from __future__ import annotations

import signal
import subprocess
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path


def kill_after_lines(proc: subprocess.Popen[bytes], path: Path, lines: int, *, timeout: float = 60) -> bool:
    """``kill -9`` ``proc`` once ``path`` holds ``lines`` lines (or at ``timeout``); True when it
    was still running then, i.e. it really was interrupted mid-job."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if path.is_file() and path.read_bytes().count(b"\n") >= lines:
            break
        time.sleep(0.005)
    was_running = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return was_running


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that logs nothing and sends whole responses (a client that gave up, as in
    the timeout tests, is not an error)."""

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def _send(self, code: int, body: bytes, ctype: str = "image/png") -> None:
        try:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass
