"""``/docs`` (Swagger UI), ``/redoc`` and ``/openapi.json``, served without the internet.

FastAPI's pages load Swagger UI and ReDoc from a CDN, so they stay blank offline. Here the
same pages (FastAPI's own ``get_swagger_ui_html`` / ``get_redoc_html``) point at copies of the
assets that the ``fastapi-offline`` package ships, served by the bridge under
:data:`ASSETS_PATH`. Every one of these routes is an ordinary route, so the bridge's metrics
label each by its path (the assets under one label).
"""

from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Annotated

from fastapi import FastAPI, Path, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse, JSONResponse, Response

from agent_orchestrator.bridge.problems import ProblemError
from agent_orchestrator.contracts.errors import ErrorCode

OPENAPI_PATH = "/openapi.json"
DOCS_PATH = "/docs"
OAUTH2_REDIRECT_PATH = "/docs/oauth2-redirect"
REDOC_PATH = "/redoc"
ASSETS_PATH = "/docs/assets"
SWAGGER_JS = "swagger-ui-bundle.js"
SWAGGER_CSS = "swagger-ui.css"
REDOC_JS = "redoc.standalone.js"
FAVICON = "favicon.png"
ASSET_TYPES = {
    SWAGGER_JS: "text/javascript; charset=utf-8",
    SWAGGER_CSS: "text/css; charset=utf-8",
    REDOC_JS: "text/javascript; charset=utf-8",
    FAVICON: "image/png",
}
# No "validate at swagger.io" badge: it would call out to the internet.
SWAGGER_UI_PARAMETERS = {"validatorUrl": None}


def assets_folder() -> Traversable:
    """Where the Swagger UI and ReDoc files are (fails at start-up if one is missing)."""
    folder = files("fastapi_offline") / "static"
    missing = [name for name in ASSET_TYPES if not (folder / name).is_file()]
    if missing:
        raise RuntimeError(f"fastapi-offline ships no {', '.join(missing)}; reinstall it")
    return folder


def _root(request: Request) -> str:
    """The prefix a proxy serves the bridge under (ASGI ``root_path``), without its slash."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def add_docs_routes(app: FastAPI) -> None:
    """Add the OpenAPI document, Swagger UI, its OAuth2 redirect page, ReDoc and their assets.
    The app must be made with ``docs_url``, ``redoc_url`` and ``openapi_url`` None."""
    folder = assets_folder()
    title = app.title

    @app.get(OPENAPI_PATH, include_in_schema=False)
    async def openapi(request: Request) -> JSONResponse:
        schema = app.openapi()
        root = _root(request)
        if root and app.root_path_in_servers:
            # Behind a proxy's prefix, as FastAPI's own /openapi.json says it.
            servers = schema.get("servers", [])
            if root not in {server.get("url") for server in servers}:
                schema = {**schema, "servers": [{"url": root}, *servers]}
        return JSONResponse(schema)

    @app.get(DOCS_PATH, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = _root(request)
        return get_swagger_ui_html(
            openapi_url=root + OPENAPI_PATH,
            title=f"{title} - Swagger UI",
            oauth2_redirect_url=root + OAUTH2_REDIRECT_PATH,
            swagger_js_url=f"{root}{ASSETS_PATH}/{SWAGGER_JS}",
            swagger_css_url=f"{root}{ASSETS_PATH}/{SWAGGER_CSS}",
            swagger_favicon_url=f"{root}{ASSETS_PATH}/{FAVICON}",
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        )

    @app.get(OAUTH2_REDIRECT_PATH, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC_PATH, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = _root(request)
        return get_redoc_html(
            openapi_url=root + OPENAPI_PATH,
            title=f"{title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_PATH}/{REDOC_JS}",
            redoc_favicon_url=f"{root}{ASSETS_PATH}/{FAVICON}",
            with_google_fonts=False,
        )

    @app.get(ASSETS_PATH + "/{name}", include_in_schema=False)
    async def asset(name: Annotated[str, Path()]) -> Response:
        # Only the files named here: no path from the request reaches the file system.
        if name not in ASSET_TYPES:
            raise ProblemError(404, ErrorCode.NOT_FOUND, f"no documentation asset {name!r}")
        return Response(
            (folder / name).read_bytes(),
            media_type=ASSET_TYPES[name],
            headers={"Cache-Control": "public, max-age=86400"},
        )


__all__ = ["ASSETS_PATH", "DOCS_PATH", "OPENAPI_PATH", "REDOC_PATH", "add_docs_routes"]
