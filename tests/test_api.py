"""The public surface: lazy exports, no import-time side effects, the CLI's front door."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

import sortsight
from sortsight.cli import cli


def test_every_public_name_resolves() -> None:
    missing = [name for name in sortsight.__all__ if not hasattr(sortsight, name)]
    assert missing == []
    assert sorted(dir(sortsight)) == sorted(sortsight.__all__)


def test_import_has_no_side_effects() -> None:
    code = (
        "import os, sys, warnings; before = dict(os.environ); filters = list(warnings.filters);"
        "import sortsight;"
        "heavy = [m for m in ('torch', 'timm', 'transformers', 'gradio', 'fastapi', 'ray')"
        " if m in sys.modules];"
        "assert not heavy, heavy; assert dict(os.environ) == before; assert warnings.filters == filters;"
        "print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok" and out.stderr == ""


def test_version_and_help() -> None:
    runner = CliRunner()
    version = runner.invoke(cli, ["--version"])
    assert version.exit_code == 0 and sortsight.__version__ in version.output
    helptext = runner.invoke(cli, ["--help"])
    assert helptext.exit_code == 0
    for command in ("check", "train", "predict", "evaluate", "export", "quickstart"):
        assert command in helptext.output


def test_unknown_command_suggests() -> None:
    result = CliRunner().invoke(cli, ["trian"])
    assert result.exit_code == 2
    assert "Did you mean 'train'?" in result.output
    assert "Traceback" not in result.output


def test_functions_named_like_their_modules_stay_callable() -> None:
    # importing sortsight.train (the module) must not hide sortsight.train (the function)
    import importlib

    for name in ("train", "evaluate", "doctor", "fetch"):
        importlib.import_module(f"sortsight.{name}")
        assert callable(getattr(sortsight, name)), name
