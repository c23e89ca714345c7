"""``/ui``: the dashboard, a static page (ES modules and CSS shipped in ``bridge/ui/``).

The page talks only to the bridge's REST API and ``GET /api/events``, with the credential the
user types in (the files themselves need none: they hold no data). Only the files found in the
package at start-up are served, so no path from a request reaches the file system.
"""

from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Annotated

from fastapi import FastAPI, Path
from fastapi.responses import RedirectResponse, Response

from agent_orchestrator.bridge.problems import ProblemError
from agent_orchestrator.contracts.errors import ErrorCode

UI_PATH = "/ui"
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# The page may load only what the bridge serves: no CDN, no inline script.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def ui_files() -> dict[str, bytes]:
    """Every file of the dashboard by its path under ``/ui/`` (``views/agents.js``)."""
    found: dict[str, bytes] = {}

    def walk(folder: Traversable, prefix: str) -> None:
        for entry in folder.iterdir():
            name = f"{prefix}{entry.name}"
            if entry.is_dir():
                walk(entry, f"{name}/")
            elif any(name.endswith(suffix) for suffix in MEDIA_TYPES):
                found[name] = entry.read_bytes()

    walk(files("agent_orchestrator.bridge") / "ui", "")
    if "index.html" not in found:
        raise RuntimeError("the dashboard's index.html is missing from the package; reinstall it")
    return found


def _file(content: bytes, name: str) -> Response:
    suffix = name[name.rfind(".") :]
    return Response(
        content,
        media_type=MEDIA_TYPES[suffix],
        headers={
            "Cache-Control": "no-cache",
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "X-Content-Type-Options": "nosniff",
        },
    )


def add_dashboard_routes(app: FastAPI) -> None:
    """Serve the dashboard at ``/ui/`` (``/ui`` redirects there, so relative imports work)."""
    content = ui_files()

    @app.get(UI_PATH, include_in_schema=False)
    async def ui_root() -> RedirectResponse:
        return RedirectResponse(f"{UI_PATH}/", status_code=308)

    @app.get(f"{UI_PATH}/", include_in_schema=False)
    async def ui_index() -> Response:
        return _file(content["index.html"], "index.html")

    @app.get(UI_PATH + "/{name:path}", include_in_schema=False)
    async def ui_file(name: Annotated[str, Path()]) -> Response:
        if name not in content:
            raise ProblemError(404, ErrorCode.NOT_FOUND, f"the dashboard has no file {name!r}")
        return _file(content[name], name)


__all__ = ["UI_PATH", "add_dashboard_routes", "ui_files"]
