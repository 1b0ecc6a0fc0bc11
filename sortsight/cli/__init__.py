"""The ``sortsight`` command line: a thin shell over the Python API.

Each command lives in its own module (``sortsight/cli/<name>.py``) and is loaded only when
used, so ``sortsight --help`` stays fast. Library errors (:class:`SortsightError`) become one
``Error: …`` line on stderr and exit code 1; anything else is a bug and keeps its traceback.
When ``SORTSIGHT_ERROR_FILE`` names a file, that message is also written there as JSON
(``{"error": "...", "kind": "DataError"}``): how the studio's job runner learns why a step failed
without reading log text.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from typing import Any

import click

from sortsight import __version__
from sortsight.errors import SortsightError, closest

__all__ = ["ERROR_FILE_ENV", "EXIT_INTERRUPTED", "EXIT_USAGE", "EXIT_USER_ERROR", "cli", "main"]

ERROR_FILE_ENV = "SORTSIGHT_ERROR_FILE"  # where a user error is also recorded, as JSON (see above)

EXIT_USER_ERROR = 1  # a SortsightError: bad data, options or files; the message says what to do
EXIT_USAGE = 2  # click's own: an unknown command or option, a missing argument
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as shells report it)

_EPILOG = f"""\b
Exit codes:
  0    done
  {EXIT_USER_ERROR}    a problem with the data, a file or an option value (the message says what to do)
  {EXIT_USAGE}    the command was mistyped (unknown command or option, missing argument)
  {EXIT_INTERRUPTED}  interrupted with Ctrl-C

Warnings from other libraries go to the log file (see --verbose), not to the screen.
"""

# command name -> "module:function". Add one line per command.
_COMMANDS: dict[str, str] = {
    "check": "sortsight.cli.check:check",
    "train": "sortsight.cli.train:train",
    "compare-pretrained": "sortsight.cli.compare:compare_pretrained",
    "predict": "sortsight.cli.predict:predict",
    "evaluate": "sortsight.cli.evaluate:evaluate",
    "export": "sortsight.cli.export:export",
    "app": "sortsight.cli.demo:app",
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
        from sortsight.cli._logs import capture_library_output

        try:
            with capture_library_output(" ".join(sys.argv[1:]), verbose=bool(ctx.params.get("verbose"))):
                return super().invoke(ctx)
        except SortsightError as exc:
            click.echo(f"Error: {exc}", err=True)
            _record_error(exc)
            ctx.exit(EXIT_USER_ERROR)
        except KeyboardInterrupt:
            click.echo("Interrupted (Ctrl-C): stopped before finishing.", err=True)
            ctx.exit(EXIT_INTERRUPTED)


def _record_error(exc: SortsightError) -> None:
    """Write the error to ``$SORTSIGHT_ERROR_FILE`` when it is set (an unwritable file is ignored:
    the message is on stderr anyway)."""
    target = os.environ.get(ERROR_FILE_ENV)
    if not target:
        return
    from sortsight.fileops import atomic_write_text

    try:
        atomic_write_text(target, json.dumps({"error": str(exc), "kind": type(exc).__name__}))
    except OSError:
        pass


@click.group(
    cls=_LazyGroup,
    epilog=_EPILOG,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, "--version", "-V", prog_name="sortsight")
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Also show log messages and other libraries' warnings on stderr "
    "(they always go to $SORTSIGHT_LOG, default ~/.cache/sortsight/sortsight.log).",
)
def cli(verbose: bool) -> None:
    """sortsight: train an image classifier on a laptop CPU, check and fix the data, sort new images.

    Start with `sortsight quickstart`, or `sortsight check DATA` on your own folder.
    """


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``sortsight`` console script.

    After Ctrl-C the process ends at once with :data:`EXIT_INTERRUPTED`: worker threads still
    blocked in I/O (a download waiting up to ``--timeout`` for a server) would otherwise hold the
    exit until they time out. Every file sortsight writes is already complete on disk by then
    (atomic writes, journals flushed per entry), so nothing is lost by not waiting for them.
    """
    try:
        cli.main(args=argv, prog_name="sortsight", standalone_mode=True)
    except SystemExit as exc:
        if exc.code == EXIT_INTERRUPTED:
            import logging
            import os

            sys.stdout.flush()
            sys.stderr.flush()
            logging.shutdown()
            os._exit(EXIT_INTERRUPTED)
        # The command is over. Freezing what is alive spares the interpreter's last garbage
        # collection at exit, a walk over torch's and timm's objects that took 0.8-1.0 s of every
        # command on a 2-core CPU (0.2 s frozen). Reference counting, atexit handlers and
        # logging's flush still run; every file sortsight writes is closed before this point.
        import gc

        gc.freeze()
        raise


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
