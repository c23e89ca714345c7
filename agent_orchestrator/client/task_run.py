"""One attempt of a task as its handler sees it, and how it ends when taken away.

An attempt is taken from its worker when the task is cancelled (``task.cancel``, or its agent
terminated), or when the service ended or re-queued it meanwhile (it timed out, or another
attempt was started). The worker notices at its next report (a heartbeat, or the handler's own
``progress``); the handler is then cancelled: it sees ``asyncio.CancelledError``, which it may
catch to clean up, and should let propagate. A cancellation is the expected path and is logged
as one INFO line; an attempt taken for another reason is a WARNING.

A handler may ask a person and wait for the answer: ``answer = await run.ask(prompt, ...)``.
The task is INPUT_REQUIRED meanwhile; the worker's heartbeats for it pause (the service does
not expect them while a question waits) and resume once the answer makes the task RUNNING
again. Each question has its number in the task (the handler's first ask is 1, then 2, ...):
when the task runs again after its worker died, the program's asks find the answers already
given and return them at once, and the first question not answered yet is asked (once) and
waited for. A cancel, or a question that times out with on_timeout ``fail`` or ``cancel``,
ends the task: the waiting handler is cancelled like any taken attempt.
"""

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import Any
from uuid import UUID

from pydantic import JsonValue

from agent_orchestrator.client.errors import RequestFailed, ServiceUnavailable
from agent_orchestrator.client.input_waiter import InputWaiter
from agent_orchestrator.client.requests import OrchestratorClient
from agent_orchestrator.contracts.checkpoints import Checkpoint
from agent_orchestrator.contracts.errors import ErrorCode
from agent_orchestrator.contracts.state import AgentState
from agent_orchestrator.contracts.tasks import (
    InputAnswer,
    OnInputTimeout,
    RequestInput,
    Task,
    TaskStatus,
)

log = logging.getLogger(__name__)

MIN_RECHECK_S = 0.5
MAX_RECHECK_S = 20.0
"""A waiting ask asks again (a no-op) at least this often, in case it missed the event."""
_NO_ANSWER: Any = object()


class RetryTask(Exception):
    """Raise from a task handler to fail this attempt and ask for another one."""


def takes_the_attempt(exc: RequestFailed) -> bool:
    """Whether the service refused a report because the attempt is no longer the worker's
    (cancelled, ended, superseded, or the task is gone)."""
    if isinstance(exc, ServiceUnavailable):
        return False
    details = exc.details if isinstance(exc.details, dict) else {}
    if exc.code is ErrorCode.CONFLICT and details.keys() & {"input_seq", "max_input_requests"}:
        return False  # a question out of turn: the program's mistake, the attempt is still ours
    return exc.code is ErrorCode.CONFLICT or exc.code is ErrorCode.NOT_FOUND


class TaskRun:
    """One attempt of one task, as its handler sees it."""

    def __init__(
        self,
        client: OrchestratorClient,
        agent_id: UUID,
        task: Task,
        *,
        waiter: InputWaiter | None = None,
    ) -> None:
        """``waiter``: the worker's listener for answers (without one, an ask polls)."""
        self._client = client
        self._waiter = waiter
        self._asked = 0
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
        cancelled). An unreachable service or another refusal is left to the next beat.
        Paused (True, nothing sent) while a question waits: the service expects no beats then,
        and the waiting ask learns of a cancel by itself."""
        if self.task.status is TaskStatus.INPUT_REQUIRED:
            return True
        try:
            self.task = await self._client.report_progress(self.task_id, self.attempt)
        except RequestFailed as exc:
            return not self.take_away(exc)
        return True

    async def ask(
        self,
        prompt: JsonValue,
        *,
        schema: dict[str, Any] | None = None,
        timeout_s: int | None = None,
        on_timeout: OnInputTimeout | str | None = None,
        default: JsonValue = _NO_ANSWER,
    ) -> JsonValue:
        """Ask a person and wait for the answer (task.request_input; the task is
        INPUT_REQUIRED until then).

        ``prompt``: any JSON (a question, an action to approve, choices); ``schema``: the JSON
        Schema (2020-12) the answer must match; ``timeout_s``: how long to wait (default the
        service's AO_TASK_INPUT_TIMEOUT_S); ``on_timeout``: ``fail`` (the default) or
        ``cancel`` the task, or ``default``: go on with ``default`` as the answer (giving
        ``default`` implies it). One question at a time. Raises ``asyncio.CancelledError``
        when the task is cancelled or ends meanwhile (let it propagate)."""
        self._asked += 1
        fields: dict[str, Any] = {"input_schema": schema, "timeout_s": timeout_s}
        if default is not _NO_ANSWER:
            fields["default_input"] = default
            on_timeout = on_timeout or OnInputTimeout.DEFAULT
        if on_timeout is not None:
            fields["on_timeout"] = OnInputTimeout(on_timeout)
        request = RequestInput(
            task_id=self.task_id,
            attempt=self.attempt,
            input_seq=self._asked,
            prompt=prompt,
            **{k: v for k, v in fields.items() if v is not None or k == "default_input"},
        )
        recheck_s = self._recheck_s()
        wake = asyncio.Event()
        if self._waiter is not None:
            await self._waiter.open()  # before asking: no answer may slip by
            wake = self._waiter.expect(self.task_id)
        try:
            waited = False
            while True:
                wake.clear()
                answer = await self._ask_once(request)
                if answer is not None:
                    if waited:  # the answer opened a heartbeat window: report in it at once
                        await self.keep_alive()
                    return answer.input
                waited = True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), recheck_s)
        finally:
            if self._waiter is not None:
                self._waiter.forget(self.task_id, wake)

    async def _ask_once(self, request: RequestInput) -> InputAnswer | None:
        """Send the question (again: a no-op once it is asked); its answer, if there is one."""
        try:
            self.task = await self._client.request_input(request)
        except ServiceUnavailable as exc:
            log.debug("task %s: question %s not sent (%s)", self.task_id, request.input_seq, exc)
            return None
        except RequestFailed as exc:
            if not self.take_away(exc):
                raise
            raise asyncio.CancelledError(f"task {self.task_id}: {exc.message}") from None
        for answer in self.task.input_answers:
            if answer.input_seq == request.input_seq:
                return answer
        return None

    def _recheck_s(self) -> float:
        """How often a waiting ask asks again: well within the heartbeat window that the
        answer opens (known from the RUNNING task's last report)."""
        task = self.task
        window = timedelta(seconds=3 * MAX_RECHECK_S)
        if task.status is TaskStatus.RUNNING and task.deadline_at is not None:
            window = task.deadline_at - task.updated_at
        return min(MAX_RECHECK_S, max(MIN_RECHECK_S, window.total_seconds() / 3))

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
