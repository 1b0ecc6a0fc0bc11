"""``sortsight app MODEL``: the Gradio demo (image in, top-k labels out) on 127.0.0.1.

Thin: parse → :func:`sortsight.demo.build_demo` → ``launch``. Reachable from other machines
only with ``--host 0.0.0.0`` (a warning is printed); a public gradio.live link only with
``--share``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from sortsight.cli._options import config_options, given
from sortsight.config import DemoConfig

__all__ = ["app"]

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@click.command("app")
@config_options(DemoConfig)
@click.argument("model", type=click.Path(path_type=Path))
def app(model: Path, **options: Any) -> None:
    """Start the demo app for MODEL (a run folder or a model folder) and print its address.

    Example: sortsight app runs/covers --examples samples/
    """
    from sortsight.demo import build_demo, launch_demo

    settings = DemoConfig(**given(options))  # checked before the model loads
    host = settings.host
    shown = {k: getattr(settings, k) for k in ("examples", "title", "description", "article", "top_k")}
    demo = build_demo(model, engine=settings.engine, **shown)
    if host not in _LOOPBACK:
        click.secho(f"Warning: listening on {host}: anyone who can reach this machine can use the demo.",
                    fg="yellow", err=True)
    if settings.share:
        click.secho("Warning: --share makes the demo public on a gradio.live address while it runs.",
                    fg="yellow", err=True)
    def ready(url: str, public: str | None) -> None:
        click.echo(f"Demo running at {url}" + (f" (public address: {public})" if public else ""))
        click.echo("Press Ctrl+C to stop.", err=True)

    launch_demo(demo, host=host, port=settings.port, share=settings.share, on_ready=ready)
