"""``sortsight studio``: start the no-code web app."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import click

from sortsight.cli._options import config_options, given
from sortsight.config import StudioConfig

__all__ = ["studio"]

_OPEN_HOSTS = ("0.0.0.0", "::", "")
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


@click.command("studio")
@config_options(StudioConfig)
@click.option(
    "--allow-folder",
    "folders",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    envvar="SORTSIGHT_STUDIO_FOLDERS",
    help="A folder on this computer whose images the studio may sort (repeat for more; "
    "or list them in SORTSIGHT_STUDIO_FOLDERS, separated like PATH). Default: none.",
)
@click.option(
    "--allow-host",
    "extra_hosts",
    multiple=True,
    metavar="NAME",
    help="Another host name the studio answers to (e.g. behind a proxy). Requests addressed to "
    "any other name are refused.",
)
def studio(folders: tuple[Path, ...], extra_hosts: tuple[str, ...], **options: Any) -> None:
    """Start the studio web app: projects, upload, train, fix mistakes, sort new images.

    Open the printed address in a browser. Stop with Ctrl+C (running jobs go on and are found
    again at the next start). The studio reads no folder of this computer unless you allow it
    with --allow-folder, and answers only to its own address (no other site can drive it).
    """
    from sortsight.studio import create_app
    from sortsight.studio.security import own_host_names
    from sortsight.studio.uploads import UploadLimits

    settings = StudioConfig(**given(options))
    host, port, token, home = settings.host, settings.port, settings.token, Path(settings.home)
    if host not in _LOOPBACK:
        if token is None:
            token = secrets.token_urlsafe(16)
        reach = "every machine on your network" if host in _OPEN_HOSTS else f"other machines (via {host})"
        click.secho(
            f"WARNING: --host {host or repr(host)} makes the studio reachable by {reach}. "
            "Anyone with the address and token can read, move and upload images in your projects.",
            fg="red",
            bold=True,
            err=True,
        )
    limits = UploadLimits(max_request_bytes=settings.max_upload_mb * 1024**2)
    hosts = (*own_host_names(host), *extra_hosts)
    app = create_app(home, token=token, limits=limits, hosts=hosts, folders=folders)
    import uvicorn

    shown = "127.0.0.1" if host in _OPEN_HOSTS else host
    address = f"http://{'[' + shown + ']' if ':' in shown else shown}:{port}/"
    click.echo(f"sortsight studio: open {address}{'?token=' + token if token else ''}")
    click.echo(f"Projects are stored in {home.expanduser().resolve()}. Press Ctrl+C to stop.")
    if folders:
        click.echo("Folders it may sort: " + ", ".join(str(f.resolve()) for f in folders))
    uvicorn.run(app, host=host, port=port, log_level="warning")
