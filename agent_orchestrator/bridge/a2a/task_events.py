"""One task's events as A2A stream events: AGENT_EVENTS read from now on, the task re-read at
each of its events, and what changed sent as TaskStatusUpdateEvent / TaskArtifactUpdateEvent.

The watch starts before the request that makes the task move (agent.execute,
task.provide_input) or before the first read (SubscribeToTask), so no change slips between the
two; a change seen twice is sent once.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from uuid import UUID

import nats.aio.client
import nats.errors
from a2a.server.events.event_queue import Event
from a2a.types import InternalError
from nats.js.api import ConsumerConfig, DeliverPolicy

from agent_orchestrator.bridge.a2a.calls import ServiceCalls
from agent_orchestrator.bridge.a2a.convert import STREAM_ENDS, artifact_update, status_update
from agent_orchestrator.contracts.subjects import EVENTS_STREAM
from agent_orchestrator.contracts.tasks import Task

KEEPALIVE_S = 15.0
"""How often a quiet watch re-reads its task (a safety net for an event it could miss)."""
CHECK_S = 5.0
"""How often a blocking SendMessage checks that its caller is still connected."""


class TaskWatch:
    """The events of one agent's tasks from the moment it opened."""

    def __init__(self, sub: nats.js.JetStreamContext.PushSubscription) -> None:
        self._sub = sub

    @classmethod
    async def open(cls, nc: nats.aio.client.Client, agent_id: UUID) -> "TaskWatch":
        """Watch ``agent_id``'s events from now on (an ordered consumer of AGENT_EVENTS)."""
        try:
            sub = await nc.jetstream().subscribe(
                f"agent.event.{agent_id}.*",
                stream=EVENTS_STREAM,
                ordered_consumer=True,
                config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW),
            )
        except (nats.errors.Error, TimeoutError) as exc:
            raise InternalError(f"cannot watch agent events: {exc}") from exc
        return cls(sub)

    async def next_change(self, task_id: UUID, wait_s: float) -> bool:
        """Wait up to ``wait_s`` for an event of ``task_id``; whether one came."""
        loop = asyncio.get_running_loop()
        until = loop.time() + wait_s
        wanted = str(task_id).encode()
        while (left := until - loop.time()) > 0:
            try:
                msg = await self._sub.next_msg(timeout=left)
            except nats.errors.TimeoutError:
                return False
            # The envelope's data carries the task's id; other tasks' events are skipped.
            if wanted in msg.data:
                return True
        return False

    async def close(self) -> None:
        """Stop watching."""
        with contextlib.suppress(nats.errors.Error):
            await self._sub.unsubscribe()


def _same(a: Task, b: Task) -> bool:
    return (a.status, a.progress, a.progress_message, a.input_request) == (
        b.status,
        b.progress,
        b.progress_message,
        b.input_request,
    )


async def follow(
    watch: TaskWatch, calls: ServiceCalls, task: Task, *, sent: Task | None = None
) -> AsyncIterator[Event]:
    """The changes of ``task`` after ``sent`` (the state the caller has already seen) until
    it ends or waits for input; the result as an artifact just before the final status."""
    last = sent
    while True:
        if last is None or not _same(last, task):
            artifact = artifact_update(task)
            if artifact is not None:
                yield artifact
            yield status_update(task)
            last = task
        if task.status in STREAM_ENDS:
            return
        await watch.next_change(task.task_id, KEEPALIVE_S)
        task = await calls.task(str(task.task_id))


async def wait_until_settled(
    watch: TaskWatch,
    calls: ServiceCalls,
    task: Task,
    wait_s: float,
    gone: Callable[[], Awaitable[bool]] | None = None,
) -> Task:
    """``task`` once it ended or waits for input, or as it is after ``wait_s`` or once the
    caller is ``gone`` (checked every few seconds)."""
    loop = asyncio.get_running_loop()
    until = loop.time() + wait_s
    while task.status not in STREAM_ENDS and (left := until - loop.time()) > 0:
        await watch.next_change(task.task_id, min(left, CHECK_S))
        if gone is not None and await gone():
            break
        task = await calls.task(str(task.task_id))
    return task


__all__ = ["TaskWatch", "follow", "wait_until_settled"]
