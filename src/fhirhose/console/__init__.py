"""The web console for organizations and operators (issue 15), mounted at `/console/`.

Server-rendered pages (Jinja2 via aiohttp-jinja2) over the same access library as the
API: every action calls the library function the admin API calls, as the person's
`Actor`, after the console's own role check (`access.roles`). Templates and static
files ship in the package; nothing is loaded from another origin.

    from fhirhose.console import mount
    mount(app, ConsoleBackend.from_api(app, api))   # the server's app factory does this
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiohttp import web

    from .backend import ConsoleBackend

__all__ = ["mount", "PREFIX"]

PREFIX = "/console/"


def mount(app: web.Application, backend: ConsoleBackend, prefix: str = PREFIX) -> None:
    """Add the console under `prefix` to `app` (a sub-application: its own middlewares)."""
    from .web import create_console

    app.add_subapp(prefix.rstrip("/") + "/", create_console(backend, prefix))

