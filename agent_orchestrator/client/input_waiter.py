"""How a worker's waiting questions hear that something happened to their task.

A task handler that asks (``run.ask``) waits for its task's answer. The answer is an event the
service publishes, ``agent.event.<agent_id>.task_input_provided`` (also for a default taken at
the question's deadline); a cancel or a timeout that ends the task is ``task_cancelled`` or
``task_failed``. One :class:`InputWaiter` per worker subscribes to those three subjects of its
agent (core NATS, no JetStream consumer) and wakes the asks of the task each event names. An
event only wakes the ask: it then asks the service again (with the same ``input_seq``, which
changes nothing) and takes the answer, or the task's end, from the reply. So a missed event
(a reconnect, a relay that is late) costs only time: every ask also asks again on its own
every few seconds.
"""

import asyncio
import json
import logging
from uuid import UUID

import nats.aio.client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from agent_orchestrator.contracts.events import EventKind
from agent_orchestrator.contracts.subjects import event_subject

log = logging.getLogger(__name__)

WAKING_KINDS = (
    EventKind.TASK_INPUT_PROVIDED,
    EventKind.TASK_CANCELLED,
    EventKind.TASK_FAILED,
)
"""What happens to a waiting task: it is answered, or it ends."""


class InputWaiter:
    """Wakes the asks of one agent's tasks on the events of their tasks (one per worker)."""

    def __init__(self, nc: nats.aio.client.Client, agent_id: UUID) -> None:
        self._nc = nc
        self._agent_id = agent_id
        self._subs: list[Subscription] = []
        self._opening: asyncio.Lock = asyncio.Lock()
        self._waiting: dict[UUID, set[asyncio.Event]] = {}

    async def open(self) -> None:
        """Subscribe (once) and make sure the server has the interest before returning, so
        that no event published after this returns is missed."""
        async with self._opening:
            if self._subs:
                return
            for kind in WAKING_KINDS:
                subject = event_subject(str(self._agent_id), kind)
                self._subs.append(await self._nc.subscribe(subject, cb=self._on_event))
            await self._nc.flush()

    def expect(self, task_id: UUID) -> asyncio.Event:
        """An event set whenever something happens to ``task_id``, until ``forget``."""
        wake = asyncio.Event()
        self._waiting.setdefault(task_id, set()).add(wake)
        return wake

    def forget(self, task_id: UUID, wake: asyncio.Event) -> None:
        """Stop waking ``wake``."""
        waiting = self._waiting.get(task_id)
        if waiting is not None:
            waiting.discard(wake)
            if not waiting:
                del self._waiting[task_id]

    async def close(self) -> None:
        """Unsubscribe."""
        subs, self._subs = self._subs, []
        for sub in subs:
            try:
                await sub.unsubscribe()
            except nats.errors.Error as exc:  # closed or draining connection: nothing to undo
                log.debug("unsubscribe of %s: %r", sub.subject, exc)

    async def _on_event(self, msg: Msg) -> None:
        try:
            data = json.loads(msg.data)["data"]
            task_id = UUID(str(data["task_id"]))
        except (ValueError, KeyError, TypeError):
            log.warning("an event without a task id on %s", msg.subject)
            return
        for wake in self._waiting.get(task_id, ()):
            wake.set()
