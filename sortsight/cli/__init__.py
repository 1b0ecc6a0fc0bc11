"""The ``sortsight`` command line: a thin shell over the Python API.

Each command lives in its own module (``sortsight/cli/<name>.py``) and is loaded only when
used, so ``sortsight --help`` stays fast. Library errors (:class:`SortsightError`) become one
``Error: …`` line on stderr and exit code 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from sortsight import __version__
from sortsight.config import closest
from sortsight.errors import SortsightError

__all__ = ["cli", "main"]

# command name -> "module:function". Add one line per command.
_COMMANDS: dict[str, str] = {
    "check": "sortsight.cli.check:check",
    "train": "sortsight.cli.train:train",
    "predict": "sortsight.cli.predict:predict",
    "evaluate": "sortsight.cli.evaluate:evaluate",
    "export": "sortsight.cli.export:export",
    "app": "sortsight.cli.app:app",
    "studio": "sortsight.cli.studio:studio",
    "fix": "sortsight.cli.fix:fix",
    "undo": "sortsight.cli.fix:undo",
    "fetch": "sortsight.cli.fetch:fetch",
    "quickstart": "sortsight.cli.quickstart:quickstart",
    "index": "sortsight.cli.index:index",
    "similar": "sortsight.cli.index:similar",
    "map": "sortsight.cli.index:map_command",
}


class _LazyGroup(click.Group):
    """A click group whose commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        command = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command)
        return command

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if name and not name.startswith("-") and name not in _COMMANDS:
            close = closest(name, list(_COMMANDS), cutoff=0.6)  # difflib's default cutoff
            hint = f" Did you mean '{close}'?" if close else ""
            raise click.UsageError(f"No such command '{name}'.{hint}", ctx)
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        for stream in (sys.stdout, sys.stderr):  # file names that are not UTF-8 print as \xNN
            if hasattr(stream, "reconfigure"):
                stream.reconfigure(errors="backslashreplace")
        try:
            return super().invoke(ctx)
        except SortsightError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(130)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="sortsight")
def cli() -> None:
    """sortsight: train an image classifier on a laptop CPU, check and fix the data, sort new images.

    Start with `sortsight quickstart`, or `sortsight check DATA` on your own folder.
    """


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``sortsight`` console script."""
    cli.main(args=argv, prog_name="sortsight", standalone_mode=True)


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
