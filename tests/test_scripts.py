"""scripts/test.sh and scripts/install.sh, run against a stand-in Python (nothing is installed)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _fake_python(folder: Path, body: str) -> Path:
    path = folder / "fake-python"
    path.write_text("#!/usr/bin/env bash\n" + body, encoding="utf-8")
    path.chmod(0o755)
    return path


@pytest.mark.parametrize(("pytest_status", "expected"), [(0, 0), (1, 1), (5, 5)])
def test_test_sh_fails_when_pytest_collected_nothing(
    tmp_path: Path, pytest_status: int, expected: int
) -> None:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "test.sh", tmp_path / "scripts" / "test.sh")
    (tmp_path / "scripts" / "install.sh").write_text("exit 0\n", encoding="utf-8")
    python = _fake_python(tmp_path, f'echo "pytest $*"; exit {pytest_status}\n')
    proc = subprocess.run(
        ["bash", str(tmp_path / "scripts" / "test.sh"), "-k", "nothing"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHON": str(python)},
        timeout=60,
    )
    assert proc.returncode == expected, proc.stderr
    assert "pytest -m pytest -q -n auto -k nothing" in proc.stdout
    if pytest_status == 5:
        assert "collected no tests" in proc.stderr


def test_install_sh_keeps_an_install_whose_pip_show_is_cut_short(tmp_path: Path) -> None:
    """`pip show | grep -q` under pipefail: grep stops at the match, pip dies of a broken pipe."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "install.sh", tmp_path / "scripts" / "install.sh")
    calls = tmp_path / "calls.txt"
    python = _fake_python(
        tmp_path,
        f"""echo "$*" >> {calls}
case "$*" in
  "-m pip show sortsight")
    echo "Name: sortsight"
    echo "Editable project location: {tmp_path}"
    for i in $(seq 1 20000); do echo "Requires: padding line $i"; done ;;
  "-m sortsight --version") echo "sortsight, version 9.9" ;;
esac
exit 0
""",
    )
    env = {**os.environ, "PYTHON": str(python), "SORTSIGHT_SKIP_BROWSER": "1"}
    proc = subprocess.run(
        ["bash", str(tmp_path / "scripts" / "install.sh")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "pip install" not in calls.read_text(encoding="utf-8"), "reinstalled although it was installed"
    assert "sortsight 9.9 is installed" in proc.stdout


def test_xdist_workers_share_the_cores_out() -> None:
    from conftest import worker_cores

    assert worker_cores("gw0", 2, [0, 1]) == [0] and worker_cores("gw1", 2, [0, 1]) == [1]
    assert worker_cores("gw1", 2, [0, 1, 2, 3]) == [1, 3]
    assert worker_cores("gw2", 3, [0, 1]) == [0, 1]  # more workers than cores: share them all
    assert worker_cores("", 1, [0, 1]) == [0, 1] and worker_cores("master", 2, [0, 1]) == [0, 1]
