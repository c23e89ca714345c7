"""RFC 9457 problem details: the body of every error the bridge answers."""

from http import HTTPStatus
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from agent_orchestrator.contracts.errors import ErrorCode
from agent_orchestrator.observability.tracing import current_trace_id

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:agent-orchestrator:problem:"


class FieldError(BaseModel):
    """One failing part of a request."""

    path: str = Field(
        description="Where: a body field (`name`, `configuration.retries`), a query or path "
        "parameter, `header.If-Match`, or `body` for the body as a whole."
    )
    message: str = Field(description="What is wrong there.")


class Problem(BaseModel):
    """An error, as ``application/problem+json`` (RFC 9457)."""

    type: str = Field(description="URN naming the error code, e.g. `…:problem:not_found`.")
    title: str = Field(description="Short summary of the error type.")
    status: int = Field(description="The HTTP status.")
    detail: str = Field(description="What went wrong this time.")
    code: str = Field(description="The contract's error code (`not_found`, `conflict`, …).")
    errors: list[FieldError] = Field(
        default_factory=list,
        description="Every failing part of an invalid request, as `[{path, message}]`; empty "
        "for other errors.",
    )
    details: dict[str, Any] | None = Field(
        default=None,
        description="The error's structured details, e.g. `{expected_version, version}` of a "
        "stale version, `{from, to, allowed}` of a refused transition, `{limit, setting}` of a "
        "body too large.",
    )
    trace_id: str | None = Field(
        default=None,
        description="The request's trace id when it was traced (always set on internal "
        "errors); the same id is in the log lines and the trace.",
    )


class ProblemError(Exception):
    """Raised inside the bridge to answer with a problem."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        errors: Any = None,
        trace_id: str | None = None,
        headers: dict[str, str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.errors = errors
        self.trace_id = trace_id
        self.headers = headers
        self.details = details


class ProblemResponse(JSONResponse):
    """A JSON response with the problem media type."""

    media_type = PROBLEM_MEDIA_TYPE


def _title(code: str, status: int) -> str:
    try:
        return ErrorCode(code).value.replace("_", " ").capitalize()
    except ValueError:
        try:
            return HTTPStatus(status).phrase
        except ValueError:
            return "Error"


def field_errors_and_details(
    given: Any, message: str
) -> tuple[list[dict[str, str]], dict[str, Any] | None]:
    """Split what an error carries into ``errors`` (``[{path, message}]``) and ``details``.

    The service lists failing paths as ``[{path, message}]`` (some without a message: the
    error's own message then stands for it) and gives other details as an object."""
    if given is None:
        return [], None
    if isinstance(given, list) and all(isinstance(e, dict) and "path" in e for e in given):
        return [
            {"path": str(e["path"] or "body"), "message": str(e.get("message") or message)}
            for e in given
        ], None
    if isinstance(given, dict):
        return [], given
    return [], {"value": given}


def problem_response(
    status: int,
    code: str,
    detail: str,
    errors: Any = None,
    trace_id: str | None = None,
    headers: dict[str, str] | None = None,
    details: dict[str, Any] | None = None,
) -> ProblemResponse:
    """Build the problem+json response of one error (with the trace id when traced).

    ``errors`` may be the service's ``details`` as they came: failing paths become ``errors``,
    anything else ``details``."""
    listed, carried = field_errors_and_details(errors, detail)
    body = Problem(
        type=TYPE_PREFIX + code,
        title=_title(code, status),
        status=status,
        detail=detail,
        code=code,
        errors=[FieldError(**e) for e in listed],
        details=details if details is not None else carried,
        trace_id=trace_id or current_trace_id(),
    )
    return ProblemResponse(body.model_dump(mode="json"), status_code=status, headers=headers)


def from_error(error: ProblemError) -> ProblemResponse:
    """The response of a :class:`ProblemError`."""
    return problem_response(
        error.status,
        error.code,
        error.detail,
        error.errors,
        error.trace_id,
        error.headers,
        error.details,
    )
