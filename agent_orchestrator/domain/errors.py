"""The one error hierarchy. Each error knows its contract code; handlers turn it into a reply.

    OrchestratorError
    ├── ValidationFailed      validation_error  (400)
    ├── Forbidden             forbidden         (403)
    ├── NotFound              not_found         (404)
    ├── Conflict              conflict          (409)
    ├── InvalidTransition     invalid_transition (409)
    ├── PayloadTooLarge       payload_too_large (413)
    ├── QuotaExceeded         quota_exceeded    (429)
    └── Unavailable           unavailable       (503, safe to retry)

Anything else raised in a handler is a bug and is answered as ``internal`` (500).
"""

from typing import Any, ClassVar

from agent_orchestrator.contracts.errors import ErrorCode


class OrchestratorError(Exception):
    """Base of every error the service answers with its own code."""

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class ValidationFailed(OrchestratorError):
    """The request does not match the contract."""

    code = ErrorCode.VALIDATION_ERROR


class QuotaExceeded(OrchestratorError):
    """A project used up one of its quotas (see ``handlers.quotas``)."""

    code = ErrorCode.QUOTA_EXCEEDED


class Forbidden(OrchestratorError):
    """The caller's project scope does not allow this."""

    code = ErrorCode.FORBIDDEN


class NotFound(OrchestratorError):
    """The named resource does not exist."""

    code = ErrorCode.NOT_FOUND


class Conflict(OrchestratorError):
    """A version or idempotency-key mismatch, or a duplicate where unique."""

    code = ErrorCode.CONFLICT


class InvalidTransition(OrchestratorError):
    """The lifecycle table does not allow this, or the agent is TERMINATED."""

    code = ErrorCode.INVALID_TRANSITION


class PayloadTooLarge(OrchestratorError):
    """The request or a value in it is over the configured limit."""

    code = ErrorCode.PAYLOAD_TOO_LARGE


class Unavailable(OrchestratorError):
    """A dependency (PostgreSQL, JetStream) is down; the caller may retry."""

    code = ErrorCode.UNAVAILABLE


class CapacityReached(Unavailable):
    """A configured limit on what may exist at once is reached; retry once some is freed."""


class InitializationFailed(OrchestratorError):
    """An agent cannot be prepared as configured; it moves to ERROR with this reason."""

    code = ErrorCode.VALIDATION_ERROR
