"""``sortsight app MODEL``: the Gradio demo (image in, top-k labels out) on 127.0.0.1.

Thin: parse → :func:`sortsight.demo.build_demo` → ``launch``. Reachable from other machines
only with ``--host 0.0.0.0`` (a warning is printed); a public gradio.live link only with
``--share``.
"""

from __future__ import annotations

from pathlib import Path

import click

from sortsight.config import DEMO_TOP_K

__all__ = ["app"]

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@click.command("app")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--examples", type=click.Path(path_type=Path), default=None,
              help="Folder of example images (default: the run's validation images).")
@click.option("--title", default=None, help="Page title (default: from the model card).")
@click.option("--description", default=None, help="Text under the title, Markdown (default: from the card).")
@click.option("--article", default=None, help="Text under the demo, Markdown (default: rest of the card).")
@click.option("--top-k", type=click.IntRange(min=1), default=DEMO_TOP_K, show_default=True,
              help="Labels shown.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 0.0.0.0 lets other machines in.")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Port (default: 7860, or the next free one).")
@click.option("--share", is_flag=True, help="Also open a public gradio.live link (needs internet).")
@click.option("--engine", type=click.Choice(["auto", "onnx", "jit", "eager"]), default="auto",
              show_default=True, help="Inference engine.")
def app(
    model: Path,
    examples: Path | None,
    title: str | None,
    description: str | None,
    article: str | None,
    top_k: int,
    host: str,
    port: int | None,
    share: bool,
    engine: str,
) -> None:
    """Start the demo app for MODEL (a run folder or a model folder) and print its address.

    Example: sortsight app runs/covers --examples samples/
    """
    from sortsight.demo import build_demo, launch_demo

    demo = build_demo(model, examples=examples, title=title, description=description, article=article,
                      top_k=top_k, engine=engine)
    if host not in _LOOPBACK:
        click.secho(f"Warning: listening on {host}: anyone who can reach this machine can use the demo.",
                    fg="yellow", err=True)
    if share:
        click.secho("Warning: --share makes the demo public on a gradio.live address while it runs.",
                    fg="yellow", err=True)
    def ready(url: str, public: str | None) -> None:
        click.echo(f"Demo running at {url}" + (f" (public address: {public})" if public else ""))
        click.echo("Press Ctrl+C to stop.", err=True)

    launch_demo(demo, host=host, port=port, share=share, on_ready=ready)
