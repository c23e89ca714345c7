"""How errors raised while answering become problem+json: the bridge's own problems, FastAPI's
request validation and Starlette's HTTP errors (404, 405, ...)."""

from collections.abc import Iterable
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request as HttpRequest

from agent_orchestrator.bridge.problems import ProblemError, from_error, problem_response
from agent_orchestrator.contracts.errors import ErrorCode

_CODES = {
    400: ErrorCode.VALIDATION_ERROR,
    404: ErrorCode.NOT_FOUND,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
}


def field_errors(errors: Iterable[Any]) -> list[dict[str, str]]:
    """FastAPI/pydantic errors as the service lists them: ``[{path, message}]``."""
    listed = []
    for err in errors:
        loc = [str(part) for part in err.get("loc", ())]
        message = str(err.get("msg", ""))
        if err.get("type") == "json_invalid":
            path = "body"
            message = str((err.get("ctx") or {}).get("error") or message)
        else:
            if loc and loc[0] in ("body", "query", "path"):
                loc = loc[1:]
            path = ".".join(loc) if loc else "body"
        listed.append({"path": path, "message": message})
    return listed


def _methods_of(app: FastAPI, path: str) -> list[str]:
    """Every method served on ``path``, by any route."""
    methods: set[str] = set()
    for route in app.router.routes:
        if isinstance(route, APIRoute) and route.path_regex.match(path):
            methods |= route.methods or set()
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error of ``app`` as problem+json."""

    async def on_problem(_: HttpRequest, exc: Exception) -> Response:
        assert isinstance(exc, ProblemError)
        return from_error(exc)

    async def on_invalid(_: HttpRequest, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return problem_response(
            400,
            ErrorCode.VALIDATION_ERROR,
            "the request does not match its schema",
            field_errors(exc.errors()),
        )

    async def on_http(request: HttpRequest, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = _CODES.get(exc.status_code, "http_error")
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names only the first route whose path matched; a path may have several.
            headers["Allow"] = ", ".join(_methods_of(app, request.url.path))
        return problem_response(exc.status_code, code, detail, headers=headers or None)

    app.add_exception_handler(ProblemError, on_problem)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(StarletteHTTPException, on_http)


__all__ = ["field_errors", "install_error_handlers"]
