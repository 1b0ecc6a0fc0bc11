"""sortsight studio: a no-code web app over sortsight's Python API (FastAPI + Jinja2).

Start it with ``sortsight studio`` or build the app yourself::

    from sortsight.studio import create_app
    app = create_app("~/.sortsight")        # then serve it with uvicorn

FastAPI is imported only when :func:`create_app` is called.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["create_app"]


def create_app(home: str | Path = "~/.sortsight", *, token: str | None = None, **kwargs: Any) -> FastAPI:
    """Build the studio app over the projects in ``home``; see :func:`sortsight.studio.server.create_app`."""
    try:
        from sortsight.studio.server import create_app as _create_app
    except ImportError as exc:
        from sortsight.errors import SortsightError

        raise SortsightError(
            f"The studio needs FastAPI, uvicorn and Jinja2 ({exc.name} is missing). "
            "Install them with: pip install 'sortsight[studio]'"
        ) from exc
    return _create_app(home, token=token, **kwargs)
