"""Error replies: ``{"error": {"code", "message", "details"}}`` plus NATS service headers."""

from enum import StrEnum
from typing import Any

from pydantic import Field

from agent_orchestrator.contracts.common import Reply


class ErrorCode(StrEnum):
    """Every error code a reply can carry."""

    VALIDATION_ERROR = "validation_error"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    INVALID_TRANSITION = "invalid_transition"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    QUOTA_EXCEEDED = "quota_exceeded"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"


STATUS_BY_CODE: dict[ErrorCode, int] = {
    ErrorCode.VALIDATION_ERROR: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.CONFLICT: 409,
    ErrorCode.INVALID_TRANSITION: 409,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.QUOTA_EXCEEDED: 429,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.INTERNAL: 500,
}


class ErrorBody(Reply):
    """What went wrong."""

    code: ErrorCode = Field(description="Machine-readable error code.")
    message: str = Field(description="Human-readable explanation.")
    details: Any = Field(default=None, description="Structured details, e.g. failing paths.")
    trace_id: str | None = Field(
        default=None,
        description="The request's OpenTelemetry trace id when it was traced (always set on "
        "`internal`); the same id is in the log lines and the trace.",
    )


class ErrorReply(Reply):
    """The reply to a request that failed."""

    error: ErrorBody
