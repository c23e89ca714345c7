"""One prompt of the NATS agent protocol served as a task of our agent.

The prompt becomes ``agent.execute`` (input ``{"text": prompt}``; an envelope's ``parameters``
and ``timeout_s`` fields are passed on); the reply stream is the leading ``ack``, a ``status``
chunk per progress report, a ``query`` chunk per question the program asks (its answer goes
to ``task.provide_input``), and at the end the result as a ``response`` chunk and ``done``, or
an error (``Nats-Service-Error-Code``), then the empty message. The task's events (a core
subscription of the endpoint) drive it; the task is read with ``task.get`` when they go quiet,
so a lost event delays the stream but never hangs it.
"""

import asyncio
import contextlib
import logging
import uuid
from typing import Any

import nats.aio.client
from nats.micro.request import Request

from agent_orchestrator.client.errors import RequestFailed
from agent_orchestrator.client.requests import OrchestratorClient
from agent_orchestrator.contracts import agent_protocol as wire
from agent_orchestrator.contracts import subjects
from agent_orchestrator.contracts.errors import ErrorCode
from agent_orchestrator.contracts.events import EventKind
from agent_orchestrator.contracts.tasks import ProvideInput, Task, TaskStatus

log = logging.getLogger(__name__)

#: Read the task when no event came for this long (and send a keep-alive ``ack``).
QUIET_S = 5.0
#: How long a query waits for its answer before it is asked again.
QUERY_WAIT_S = 3600.0
FINAL = {TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.TIMED_OUT}
READ_AGAIN = {
    EventKind.TASK_INPUT_REQUIRED,
    EventKind.TASK_SUCCEEDED,
    EventKind.TASK_FAILED,
    EventKind.TASK_CANCELLED,
}
STATUS_OF_END = {TaskStatus.FAILED: "500", TaskStatus.CANCELLED: "409", TaskStatus.TIMED_OUT: "504"}


class PromptStream:
    """Serves one prompt request (see the module docstring)."""

    def __init__(
        self,
        nc: nats.aio.client.Client,
        client: OrchestratorClient,
        agent_id: uuid.UUID,
        request: Request,
    ) -> None:
        self._nc = nc
        self._client = client
        self._agent_id = agent_id
        self._request = request
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._asking: asyncio.Task[None] | None = None
        self._asked = 0

    async def start(self) -> Task | None:
        """Decode the prompt and hand the task over; None after an error reply."""
        try:
            envelope = wire.decode_envelope(self._request.data)
        except ValueError as exc:
            await self._fail("400", f"not a prompt: {exc}")
            return None
        extras = envelope.extras
        parameters = extras.get(wire.PARAMETERS_FIELD)
        timeout_s = extras.get(wire.TIMEOUT_FIELD)
        try:
            return await self._client.execute(
                self._agent_id,
                wire.task_input(envelope),
                parameters=parameters if isinstance(parameters, dict) else None,
                timeout_s=timeout_s if isinstance(timeout_s, int) else None,
                idempotency_key=self._request.headers.get(subjects.IDEMPOTENCY_KEY_HEADER)
                if self._request.headers
                else None,
            )
        except RequestFailed as exc:
            await self._fail(str(exc.status), exc.message)
            return None

    async def serve(self, task: Task) -> None:
        """Stream the task until it ends, then the end of the stream."""
        await self._request.respond(wire.ACK)
        try:
            while task.status not in FINAL:
                try:
                    event = await asyncio.wait_for(self.events.get(), QUIET_S)
                except TimeoutError:
                    task = await self._client.get_task(task.task_id)
                    if task.status is TaskStatus.INPUT_REQUIRED:
                        await self._ask(task)
                    if task.status not in FINAL:
                        await self._request.respond(wire.ACK)  # keep-alive
                    continue
                task = await self._on_event(task, event)
            await self._finish(task)
        finally:
            if self._asking is not None:
                self._asking.cancel()
            with contextlib.suppress(Exception):
                await self._request.respond(wire.END)

    async def _on_event(self, task: Task, event: dict[str, Any]) -> Task:
        kind, data = event.get("type"), event.get("data") or {}
        if kind == EventKind.TASK_PROGRESS:
            progress, message = data.get("progress"), data.get("message")
            text = "progress" if progress is None else f"progress {progress}%"
            if message:
                text += f": {message}"
            await self._request.respond(wire.status_chunk(text))
        elif kind in READ_AGAIN:
            task = await self._client.get_task(task.task_id)
            if task.status is TaskStatus.INPUT_REQUIRED:
                await self._ask(task)
        return task

    async def _ask(self, task: Task) -> None:
        """Send the task's question as a ``query`` chunk (once per question)."""
        question = task.input_request
        if question is None or question.input_seq == self._asked:
            return
        if self._asking is not None:
            self._asking.cancel()
        self._asked = question.input_seq
        self._asking = asyncio.create_task(
            self._query(task.task_id, question.input_seq, question.prompt)
        )

    async def _query(self, task_id: uuid.UUID, input_seq: int, prompt: Any) -> None:
        """Ask until an answer is taken by ``task.provide_input``."""
        note = ""
        while True:
            inbox = self._nc.new_inbox()
            sub = await self._nc.subscribe(inbox, max_msgs=1)
            try:
                text = wire.as_text(prompt) if not note else f"{note}\n{wire.as_text(prompt)}"
                await self._request.respond(wire.query_chunk(uuid.uuid4().hex, inbox, text))
                msg = await sub.next_msg(timeout=QUERY_WAIT_S)
            except TimeoutError:
                continue
            finally:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
            try:
                answer = wire.answer_input(wire.decode_envelope(msg.data))
                body = ProvideInput(task_id=task_id, input=answer, input_seq=input_seq)
                await self._client.request(subjects.TASK_PROVIDE_INPUT, body, Task)
                return
            except ValueError as exc:
                note = f"(that answer was not read: {exc})"
            except RequestFailed as exc:
                if exc.code in (ErrorCode.CONFLICT, ErrorCode.NOT_FOUND):
                    return  # answered otherwise, or the question is gone
                note = f"(that answer was refused: {exc.message})"

    async def _finish(self, task: Task) -> None:
        if task.status is TaskStatus.SUCCEEDED:
            await self._request.respond(wire.response_chunk(wire.as_text(task.result)))
            await self._request.respond(wire.DONE)
            return
        detail = task.error.get("message") if isinstance(task.error, dict) else task.error
        description = str(detail or task.status_reason or task.status.value.lower())
        await self._fail(
            STATUS_OF_END.get(task.status, "500"), f"task {task.status}: {description}"
        )

    async def _fail(self, code: str, description: str) -> None:
        """The error message of the stream (the caller sends the end)."""
        one_line = " ".join(description.split())[:512]
        with contextlib.suppress(Exception):
            await self._request.respond_error(code, one_line)
