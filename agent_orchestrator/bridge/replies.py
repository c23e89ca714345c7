"""A NATS reply as the HTTP response: the resource with its headers, or a problem."""

import json
from contextlib import suppress
from typing import Any

from fastapi.responses import Response
from nats.aio.msg import Msg
from starlette.requests import Request as HttpRequest

from agent_orchestrator.bridge.problems import ProblemError, problem_response
from agent_orchestrator.bridge.routes import Route
from agent_orchestrator.contracts.errors import STATUS_BY_CODE, ErrorCode
from agent_orchestrator.contracts.subjects import SERVICE_ERROR_CODE_HEADER


def precondition_failed(route: Route, details: Any) -> bool:
    """Whether a ``conflict`` is the stale version or revision that the request's ``If-Match``
    named: the service's details then name the field that ``If-Match`` filled."""
    return route.if_match is not None and isinstance(details, dict) and route.if_match in details


def reply_response(
    route: Route, request: HttpRequest, msg: Msg, *, if_match: bool = False
) -> Response:
    """The service's reply as sent (success) or as problem+json (an error reply), with
    ``ETag``, ``Location`` and ``Link: rel="next"`` where the route has them.

    With ``if_match`` (the request carried ``If-Match: "<n>"``), a stale version or revision is
    412 Precondition Failed (RFC 9110); other conflicts stay 409. The code stays
    ``conflict``."""
    try:
        data = json.loads(msg.data)
    except ValueError as exc:
        raise ProblemError(
            502, ErrorCode.INTERNAL, "the service sent a reply that is not JSON"
        ) from exc
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        error = data["error"]
        code = str(error.get("code", ErrorCode.INTERNAL))
        try:
            status = STATUS_BY_CODE[ErrorCode(code)]
        except ValueError:
            status = int((msg.headers or {}).get(SERVICE_ERROR_CODE_HEADER, "500"))
        details = error.get("details")
        if code == ErrorCode.CONFLICT and if_match and precondition_failed(route, details):
            status = 412
        return problem_response(
            status,
            code,
            str(error.get("message", "")),
            details,
            error.get("trace_id"),
        )
    headers: dict[str, str] = {}
    if isinstance(data, dict):
        if route.etag and isinstance(data.get(route.etag), int):
            headers["ETag"] = f'"{data[route.etag]}"'
        if route.location:
            with suppress(KeyError, IndexError):
                headers["Location"] = route.location.format(**data)
        cursor = data.get("next_cursor")
        if isinstance(cursor, str) and cursor:
            headers["Link"] = f'<{request.url.include_query_params(cursor=cursor)}>; rel="next"'
    return Response(
        content=msg.data, status_code=route.status, media_type="application/json", headers=headers
    )


__all__ = ["precondition_failed", "reply_response"]
