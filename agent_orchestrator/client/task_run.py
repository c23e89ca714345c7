"""One attempt of a task as its handler sees it, and how it ends when taken away.

An attempt is taken from its worker when the task is cancelled (``task.cancel``, or its agent
terminated), or when the service ended or re-queued it meanwhile (it timed out, or another
attempt was started). The worker notices at its next report (a heartbeat, or the handler's own
``progress``); the handler is then cancelled: it sees ``asyncio.CancelledError``, which it may
catch to clean up, and should let propagate. A cancellation is the expected path and is logged
as one INFO line; an attempt taken for another reason is a WARNING.
"""

import asyncio
import logging
from typing import Any
from uuid import UUID

from pydantic import JsonValue

from agent_orchestrator.client.errors import RequestFailed, ServiceUnavailable
from agent_orchestrator.client.requests import OrchestratorClient
from agent_orchestrator.contracts.checkpoints import Checkpoint
from agent_orchestrator.contracts.errors import ErrorCode
from agent_orchestrator.contracts.state import AgentState
from agent_orchestrator.contracts.tasks import Task, TaskStatus

log = logging.getLogger(__name__)


class RetryTask(Exception):
    """Raise from a task handler to fail this attempt and ask for another one."""


def takes_the_attempt(exc: RequestFailed) -> bool:
    """Whether the service refused a report because the attempt is no longer the worker's
    (cancelled, ended, superseded, or the task is gone)."""
    if isinstance(exc, ServiceUnavailable):
        return False
    return exc.code is ErrorCode.CONFLICT or exc.code is ErrorCode.NOT_FOUND


class TaskRun:
    """One attempt of one task, as its handler sees it."""

    def __init__(self, client: OrchestratorClient, agent_id: UUID, task: Task) -> None:
        self._client = client
        self._agent_id = agent_id
        self.task = task
        #: Why the attempt is no longer this worker's (the service's refusal), once it is not.
        self.taken_by: RequestFailed | None = None
        self._work: asyncio.Task[JsonValue] | None = None

    @property
    def task_id(self) -> UUID:
        """The task's id."""
        return self.task.task_id

    @property
    def attempt(self) -> int:
        """Which attempt this is (1 for the first)."""
        return self.task.attempts

    @property
    def input(self) -> Any:
        """What to work on."""
        return self.task.input

    @property
    def parameters(self) -> dict[str, Any]:
        """How to work on it."""
        return self.task.parameters

    @property
    def cancelled(self) -> bool:
        """Whether the attempt was taken away (cancelled, ended or superseded)."""
        return self.taken_by is not None

    async def progress(self, percent: int | None = None, message: str | None = None) -> None:
        """Report progress (0-100) and/or a message; also a heartbeat.

        Raises ``asyncio.CancelledError`` if the attempt was taken away meanwhile (above all:
        the task was cancelled): the handler is being cancelled; let it propagate."""
        try:
            self.task = await self._client.report_progress(
                self.task_id, self.attempt, percent, message
            )
        except RequestFailed as exc:
            if not self.take_away(exc):
                raise
            raise asyncio.CancelledError(f"task {self.task_id}: {exc.message}") from None

    async def keep_alive(self) -> bool:
        """A heartbeat report; False once the attempt was taken away (its handler is then
        cancelled). An unreachable service or another refusal is left to the next beat."""
        try:
            self.task = await self._client.report_progress(self.task_id, self.attempt)
        except RequestFailed as exc:
            return not self.take_away(exc)
        return True

    async def state(self) -> AgentState:
        """The agent's runtime state."""
        return await self._client.get_state(self._agent_id)

    async def update_state(self, patch: dict[str, Any]) -> AgentState:
        """Merge ``patch`` into the agent's state (RFC 7396)."""
        return await self._client.update_state(self._agent_id, patch)

    async def checkpoint(self, label: str | None = None) -> Checkpoint:
        """Checkpoint the agent's state (a recovery point)."""
        return await self._client.checkpoint(self._agent_id, label=label)

    def run_handler(self, handler: Any) -> "asyncio.Task[JsonValue]":
        """Start ``handler(self)`` as the task that a taken attempt cancels."""
        self._work = asyncio.create_task(handler(self))
        return self._work

    def take_away(self, exc: RequestFailed) -> bool:
        """If ``exc`` says the attempt is no longer the worker's: remember it, cancel the
        handler (unless it is the caller, which raises instead) and say so."""
        if not takes_the_attempt(exc):
            return False
        if self.taken_by is None:
            self.taken_by = exc
        work = self._work
        if work is not None and not work.done() and work is not asyncio.current_task():
            work.cancel()
        return True

    def log_taken(self, outcome: str) -> None:
        """The one log line of a taken attempt: INFO for a cancellation, else WARNING.
        ``outcome`` says what became of the handler's work."""
        exc = self.taken_by
        assert exc is not None
        details = exc.details if isinstance(exc.details, dict) else {}
        if details.get("status") == TaskStatus.CANCELLED:
            reason = details.get("reason")
            because = f" ({reason})" if reason else ""
            log.info("task %s was cancelled%s; %s", self.task_id, because, outcome)
        else:
            log.warning(
                "task %s: attempt %d is no longer this worker's (%s); %s",
                self.task_id,
                self.attempt,
                exc.message,
                outcome,
            )
