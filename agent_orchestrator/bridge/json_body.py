"""How the bridge reads a JSON request body: sent as JSON, and nested no deeper than the
service reads.

A body must come with ``content-type: application/json`` (or another ``+json`` type): anything
else is a 415 problem (code ``validation_error``) that says so, where FastAPI would only report
the body as "not a valid dictionary". The body is parsed with pydantic-core's JSON parser, the
one the service decodes requests with, so that nesting deeper than it reads
(:data:`MAX_JSON_DEPTH` arrays and objects) is a 400 ``validation_error`` that names the limit,
and invalid JSON one that says where.
"""

import email.message
from collections.abc import Callable, Coroutine
from typing import Any

import pydantic_core
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from agent_orchestrator.bridge.problems import ProblemError
from agent_orchestrator.contracts.errors import ErrorCode
from agent_orchestrator.contracts.json_values import refused_in

# pydantic-core's parser refuses deeper nesting ("recursion limit exceeded").
MAX_JSON_DEPTH = 200
JSON_MEDIA_TYPE = "application/json"
_TOO_DEEP = "recursion limit exceeded"
_UTF8_BOM = b"\xef\xbb\xbf"


def is_json(content_type: str | None) -> bool:
    """Whether a ``Content-Type`` names JSON: ``application/json`` or ``application/*+json``
    (parameters such as ``charset`` aside), as FastAPI reads them."""
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def parse_json(body: bytes) -> Any:
    """The JSON value of a request body, or a 400 ``validation_error`` problem (also for NaN,
    Infinity, 1e400 and NUL characters, which the service refuses: see
    ``contracts.json_values``)."""
    try:
        value = pydantic_core.from_json(body.removeprefix(_UTF8_BOM), allow_inf_nan=False)
    except ValueError as exc:
        reason = str(exc)
        if _TOO_DEEP in reason:
            message = f"arrays and objects nest deeper than {MAX_JSON_DEPTH} levels"
            raise ProblemError(
                400,
                ErrorCode.VALIDATION_ERROR,
                f"the request body's {message}, the most the service reads",
                [{"path": "body", "message": f"{message} (the limit)"}],
                details={"max_depth": MAX_JSON_DEPTH},
            ) from exc
        raise ProblemError(
            400,
            ErrorCode.VALIDATION_ERROR,
            f"the request body is not valid JSON: {reason}",
            [{"path": "body", "message": reason}],
        ) from exc
    why = refused_in(value)
    if why is not None:
        raise ProblemError(
            400,
            ErrorCode.VALIDATION_ERROR,
            f"the request body is refused: {why}",
            [{"path": "body", "message": why}],
        )
    return value


def _unsupported(content_type: str | None) -> ProblemError:
    sent = f"not {content_type}" if content_type else "it is missing"
    return ProblemError(
        415,
        ErrorCode.VALIDATION_ERROR,
        f"the request body must be JSON, sent with content-type: {JSON_MEDIA_TYPE} ({sent})",
        [{"path": "header.Content-Type", "message": f"must be {JSON_MEDIA_TYPE}; {sent}"}],
    )


class _ParsedRequest(Request):
    """A request whose JSON body was parsed already (FastAPI reads it through ``json()``)."""

    parsed: Any = None

    async def json(self) -> Any:
        return self.parsed


class JsonBodyRoute(APIRoute):
    """An :class:`APIRoute` whose JSON body must be sent as JSON and is parsed as above."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def read_json_body(request: Request) -> Response:
            parsed = _ParsedRequest(request.scope, request.receive)
            body = await parsed.body()
            if body:
                content_type = request.headers.get("content-type")
                if not is_json(content_type):
                    raise _unsupported(content_type)
                parsed.parsed = parse_json(body)
            return await handler(parsed)

        return read_json_body


__all__ = ["JSON_MEDIA_TYPE", "MAX_JSON_DEPTH", "JsonBodyRoute", "is_json", "parse_json"]
