"""What the client SDK raises.

RequestFailed          the service answered with an error reply (``code``, ``status``)
├── ServiceUnavailable no service answered, or not in time (code ``unavailable``)
└── InboxClosed        the agent's inbox is gone (the agent was terminated or deleted)
"""

from typing import Any

from agent_orchestrator.contracts.errors import STATUS_BY_CODE, ErrorBody, ErrorCode


class RequestFailed(Exception):
    """An error reply of the service, with the contract's code, message and details."""

    def __init__(
        self, code: ErrorCode, message: str, details: Any = None, trace_id: str | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details
        self.trace_id = trace_id

    @property
    def status(self) -> int:
        """The HTTP-like status of the code."""
        return STATUS_BY_CODE[self.code]

    @classmethod
    def from_body(cls, error: ErrorBody) -> "RequestFailed":
        """The exception for one error reply."""
        kind = ServiceUnavailable if error.code is ErrorCode.UNAVAILABLE else RequestFailed
        return kind(error.code, error.message, error.details, error.trace_id)


class ServiceUnavailable(RequestFailed):
    """Nothing answered, the request timed out, or a dependency of the service is down; the
    request may be retried (with the same Idempotency-Key, if it changes something)."""


class QueueClosed(Exception):
    """The agent's inbox or task consumer no longer exists: it was terminated or deleted."""
