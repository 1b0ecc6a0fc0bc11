"""The studio's FastAPI application factory, access token and error pages."""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from sortsight.errors import SortsightError
from sortsight.studio.core import Studio
from sortsight.studio.jobs import DEFAULT_CLI
from sortsight.studio.security import LOOPBACK_HOSTS, HostGuard
from sortsight.studio.uploads import BodyLimit, UploadLimits

__all__ = ["create_app"]

_COOKIE = "sortsight_token"


def create_app(
    home: str | Path = "~/.sortsight",
    *,
    token: str | None = None,
    limits: UploadLimits | None = None,
    cli: tuple[str, ...] | None = None,
    hosts: Sequence[str] = LOOPBACK_HOSTS,
    folders: Sequence[str | Path] = (),
) -> FastAPI:
    """Build the studio web app over the projects in ``home``.

    Args:
        home: folder holding ``studio.sqlite`` and ``projects/`` (created when missing).
        token: when given, every request must carry it (``?token=…`` once, then a cookie, or an
            ``Authorization: Bearer …`` header).
        limits: upload size caps (defaults: :class:`UploadLimits`).
        cli: the command that runs sortsight's CLI for jobs (default ``python -m sortsight``).
        hosts: the host names requests may be addressed to (the ``Host`` header); any other is
            refused, which stops DNS-rebinding pages. Default: this computer's loopback names.
        folders: folders on this computer whose images the Use and Label pages may read ("A folder
            on this computer", an unlabelled pile); any other folder is refused. Default: none.

    Example:
        >>> app = create_app("/tmp/studio-home")  # doctest: +SKIP
        >>> import uvicorn; uvicorn.run(app, host="127.0.0.1", port=7860)  # doctest: +SKIP
    """
    from sortsight.studio import (
        routes_data,
        routes_label,
        routes_results,
        routes_review,
        routes_train,
        routes_use,
    )

    studio = Studio(
        Path(home),
        token=token,
        limits=limits or UploadLimits(),
        cli=cli or DEFAULT_CLI,
        folders=tuple(Path(f).expanduser().resolve() for f in folders),
    )
    studio.jobs.refresh_all()  # a restart shows every job's true state
    app = FastAPI(title="sortsight studio", docs_url=None, redoc_url=None, openapi_url="/api/openapi.json")
    app.state.studio = studio
    app.mount("/static", StaticFiles(directory=str(Path(__file__).parent / "static")), name="static")
    app.include_router(routes_data.router)
    app.include_router(routes_train.router)
    app.include_router(routes_results.router)
    app.include_router(routes_use.router)
    app.include_router(routes_label.router)
    app.include_router(routes_review.router)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> RedirectResponse:  # asked for by browsers before they read the page's <link>
        return RedirectResponse("/static/favicon.svg", status_code=301)

    @app.middleware("http")
    async def require_token(request: Request, call_next: Any) -> Response:
        if not studio.token or request.url.path.startswith("/static/"):
            return await call_next(request)  # type: ignore[no-any-return]
        given = request.query_params.get("token")
        if given is not None and hmac.compare_digest(given, studio.token):
            response = RedirectResponse(str(request.url.remove_query_params("token")), status_code=303)
            response.set_cookie(_COOKIE, studio.token, httponly=True, samesite="strict")
            return response
        header = request.headers.get("authorization", "")
        sent = request.cookies.get(_COOKIE) or (header[7:] if header.lower().startswith("bearer ") else "")
        if sent and hmac.compare_digest(sent, studio.token):
            return await call_next(request)  # type: ignore[no-any-return]
        return PlainTextResponse(
            "This studio needs its access token: open the address printed by `sortsight studio` "
            "(it ends with ?token=…).",
            status_code=401,
        )

    @app.exception_handler(SortsightError)
    async def user_error(request: Request, exc: SortsightError) -> Response:
        return _error_response(request, studio, 400, str(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        return _error_response(request, studio, exc.status_code, str(exc.detail))

    app.add_middleware(BodyLimit, max_bytes=studio.limits.max_request_bytes)
    app.add_middleware(HostGuard, hosts=hosts)  # outermost: nothing runs for a foreign Host
    return app


def _error_response(request: Request, studio: Studio, status: int, message: str) -> Response:
    if request.url.path.startswith("/api/") or "application/json" in request.headers.get("accept", ""):
        return JSONResponse({"error": message}, status_code=status)
    back = request.headers.get("referer", "")
    if request.method == "POST" and back.startswith(str(request.base_url)) and status == 400:
        sep = "&" if "?" in back else "?"
        back = back.split("err=")[0].rstrip("&?")
        sep = "&" if "?" in back else "?"
        return RedirectResponse(f"{back}{sep}err={quote(message)}", status_code=303)
    page: HTMLResponse = studio.render(request, "error.html", status_code=status, message="", error=message)
    return page
