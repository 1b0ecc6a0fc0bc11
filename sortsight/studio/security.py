"""What the studio lets in: the ``Host`` names it answers, same-site writes, and the folders it reads.

* :class:`HostGuard` (ASGI middleware) answers 400 to a request whose ``Host`` header is not one
  of the studio's own names, so a web page cannot reach the studio through DNS rebinding (a
  name of the attacker's that resolves to 127.0.0.1), and 403 to a state-changing request sent
  by another site (``Origin`` of another host, ``Origin: null``, ``Sec-Fetch-Site: cross-site``).
* :func:`check_folder` refuses a server-side folder outside the folders the user allowed
  (``sortsight studio --allow-folder DIR`` or ``SORTSIGHT_STUDIO_FOLDERS``).
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sortsight.errors import DataError

__all__ = ["FOLDERS_ENV", "LOOPBACK_HOSTS", "HostGuard", "check_folder", "host_names", "own_host_names"]

#: the names of this computer as seen from itself
LOOPBACK_HOSTS: tuple[str, ...] = ("127.0.0.1", "localhost", "::1")
#: the environment variable listing allowed folders (separated like PATH)
FOLDERS_ENV = "SORTSIGHT_STUDIO_FOLDERS"
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def host_names(header: str) -> str | None:
    """The host name of a ``Host`` header or an origin's ``host:port`` (lower case, no brackets).

    Example:
        >>> host_names("[::1]:7860"), host_names("LocalHost:80"), host_names("")
        ('::1', 'localhost', None)
    """
    try:
        name = urlsplit(f"//{header}").hostname
    except ValueError:
        return None
    return name or None


def own_host_names(bound: str) -> tuple[str, ...]:
    """The names a browser may use to reach a studio listening on ``bound``.

    Loopback names always; the address itself; for an open address (``0.0.0.0``, ``::``) also
    this machine's host name and every address of its network interfaces.
    """
    names = set(LOOPBACK_HOSTS)
    bound = bound.strip().strip("[]").lower()
    if bound and bound not in ("0.0.0.0", "::"):
        names.add(bound)
        return tuple(sorted(names))
    for name in (socket.gethostname(), socket.getfqdn()):
        names.add(name.lower())
    try:
        import psutil

        for addresses in psutil.net_if_addrs().values():
            for address in addresses:
                if address.family in (socket.AF_INET, socket.AF_INET6):
                    names.add(address.address.split("%")[0].lower())
    except (ImportError, OSError):  # pragma: no cover - psutil is a dependency of the studio
        pass
    return tuple(sorted(names))


class HostGuard:
    """ASGI middleware: only requests to the studio's own host names; writes only from its own pages."""

    def __init__(self, app: Any, hosts: Iterable[str]) -> None:
        self.app = app
        self.hosts = frozenset(h.strip().strip("[]").lower() for h in hosts)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        host = headers.get("host", "")
        if host_names(host) not in self.hosts:
            await _refuse(
                send,
                400,
                f"This studio does not answer to the address '{host}'. Open it at the address printed by "
                "`sortsight studio`, or start it with --allow-host NAME to answer to another name.",
            )
            return
        if scope.get("method", "GET") not in _SAFE_METHODS and _cross_site(headers, host):
            await _refuse(send, 403, "Requests from other sites are refused. Use the studio's own pages.")
            return
        await self.app(scope, receive, send)


def _cross_site(headers: dict[str, str], host: str) -> bool:
    if headers.get("sec-fetch-site") == "cross-site":
        return True
    origin = headers.get("origin")
    if origin is None:
        return False  # not sent by a browser form or fetch (curl, scripts): the Host check applies
    return origin == "null" or urlsplit(origin).netloc.lower() != host.lower()


async def _refuse(send: Any, status: int, message: str) -> None:
    body = message.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def check_folder(folder: str, allowed: Iterable[Path]) -> Path:
    """The resolved ``folder`` when it lies inside one of the ``allowed`` folders, else a DataError.

    The check comes before any look at the disk, so a refused path tells nothing about what exists.
    """
    text = folder.strip()
    if not text or "\x00" in text:
        raise DataError("No folder was given. Type the full path of a folder on the studio's computer.")
    source = Path(text).expanduser()
    if not source.is_absolute():
        raise DataError(f"'{text}' is not a full path. Type the whole path, e.g. /home/me/scans/2024.")
    source = source.resolve()
    roots = [Path(p).expanduser().resolve() for p in allowed]
    if not any(source == root or root in source.parents for root in roots):
        where = ", ".join(str(r) for r in roots) if roots else "none yet"
        raise DataError(
            f"The studio may only read folders you allowed (allowed: {where}), and '{text}' is not inside "
            f'one. Start it with `sortsight studio --allow-folder "{source}"` (or list folders in '
            f"{FOLDERS_ENV}) to allow it."
        )
    return source
