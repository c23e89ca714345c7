"""Every failure becomes a contract error reply with NATS service-API headers.

While the request is traced, every error reply carries the OpenTelemetry trace id
(``trace_id`` in the body, ``Trace-Id`` header), so a caller can find the trace and the log
lines of a failure; an ``internal`` error always carries one (a fresh id when untraced).
"""

import logging
from typing import Any

from faststream.middlewares import ExceptionMiddleware
from faststream.nats import NatsResponse
from pydantic import ValidationError

from agent_orchestrator.contracts.errors import STATUS_BY_CODE, ErrorBody, ErrorCode, ErrorReply
from agent_orchestrator.contracts.subjects import (
    SERVICE_ERROR_CODE_HEADER,
    SERVICE_ERROR_HEADER,
    TRACE_ID_HEADER,
)
from agent_orchestrator.domain.errors import OrchestratorError
from agent_orchestrator.domain.ids import new_id
from agent_orchestrator.observability.tracing import current_trace_id

log = logging.getLogger(__name__)


class ErrorResponse(NatsResponse):
    """An error reply, which tells the middlewares that count and trace it its code."""

    def __init__(self, code: ErrorCode, body: bytes, headers: dict[str, str]) -> None:
        super().__init__(body, headers=headers)
        self.code = code


def error_response(
    code: ErrorCode, message: str, details: Any = None, trace_id: str | None = None
) -> ErrorResponse:
    """The reply for one error: JSON body plus ``Nats-Service-Error(-Code)`` headers; the
    current trace id unless one is given."""
    trace_id = trace_id or current_trace_id()
    body = ErrorReply(
        error=ErrorBody(code=code, message=message, details=details, trace_id=trace_id)
    )
    headers = {
        SERVICE_ERROR_CODE_HEADER: str(STATUS_BY_CODE[code]),
        # Header values cannot hold line breaks.
        SERVICE_ERROR_HEADER: " ".join(message.split())[:500],
        "content-type": "application/json",
    }
    if trace_id:
        headers[TRACE_ID_HEADER] = trace_id
    return ErrorResponse(code, body.model_dump_json(exclude_none=True).encode(), headers)


def validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    """Every failing path of a pydantic error, without the handler's argument name."""
    details = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = list(err["loc"])
        if loc and loc[0] == "body":
            loc = loc[1:]
        details.append({"path": ".".join(str(p) for p in loc), "message": err["msg"]})
    return details


def build_error_middleware() -> ExceptionMiddleware:
    """The middleware that answers every failed command (bad input, our errors, bugs)."""
    middleware = ExceptionMiddleware()

    @middleware.add_handler(OrchestratorError, publish=True)
    async def on_orchestrator_error(exc: OrchestratorError) -> ErrorResponse:
        return error_response(exc.code, exc.message, exc.details)

    @middleware.add_handler(ValidationError, publish=True)
    async def on_validation_error(exc: ValidationError) -> ErrorResponse:
        details = validation_details(exc)
        summary = "; ".join(f"{d['path'] or '(body)'}: {d['message']}" for d in details[:5])
        return error_response(ErrorCode.VALIDATION_ERROR, f"invalid request: {summary}", details)

    @middleware.add_handler(Exception, publish=True)
    async def on_bug(exc: Exception) -> ErrorResponse:
        trace_id = current_trace_id() or str(new_id())
        log.exception("internal error, trace_id=%s", trace_id, exc_info=exc)
        return error_response(
            ErrorCode.INTERNAL,
            "internal error; quote the trace_id when reporting it",
            None,
            trace_id,
        )

    return middleware
