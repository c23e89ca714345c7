"""What a worker knows of its agent's status, cheaply: the agent's lifecycle events.

A worker reads the agent once (agent.get) and then follows its status events on
``agent.event.<agent_id>.<status>`` with plain NATS subscriptions (no consumer), one per status
kind: the agent's task and message events (several per task) are not delivered to it. Each event
and each service answer carries the agent's version, so a late answer never overrides a newer
status. While the agent is not ACTIVE the worker takes nothing, and it re-reads the agent
every ``REFRESH_S`` in case an event was missed (a reconnect). This only spares fetches: what
the program may have is decided by the service (task.start, communication.handover).
"""

import asyncio
import contextlib
import json
import logging
from uuid import UUID

import nats.aio.client
import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from agent_orchestrator.client.errors import RequestFailed, ServiceUnavailable
from agent_orchestrator.client.requests import OrchestratorClient
from agent_orchestrator.contracts.agents import AgentStatus
from agent_orchestrator.contracts.errors import ErrorCode
from agent_orchestrator.contracts.subjects import event_subject

log = logging.getLogger(__name__)

#: How often an agent that is not ACTIVE is read again, should an event have been missed.
REFRESH_S = 5.0
_STATUS_EVENTS = {status.lower(): status for status in AgentStatus}


class AgentStatusWatch:
    """Follows one agent's status (see the module docstring)."""

    def __init__(
        self, nc: nats.aio.client.Client, agent_id: UUID, client: OrchestratorClient
    ) -> None:
        self.agent_id = agent_id
        self._nc = nc
        self._client = client
        self.status: AgentStatus | None = None
        self.version = -1
        self._changed = asyncio.Event()
        self._subs: list[Subscription] = []

    @property
    def active(self) -> bool:
        """The agent is ACTIVE (as last heard)."""
        return self.status is AgentStatus.ACTIVE

    @property
    def ended(self) -> bool:
        """The agent is TERMINATED or deleted: it will never take anything again."""
        return self.version >= 0 and self.status in (None, AgentStatus.TERMINATED)

    async def open(self) -> "AgentStatusWatch":
        """Subscribe to the agent's status events, then read it."""
        for kind in [*_STATUS_EVENTS, "deleted"]:
            subject = event_subject(str(self.agent_id), kind)
            self._subs.append(await self._nc.subscribe(subject, cb=self._on_event))
        await self.refresh()
        return self

    async def close(self) -> None:
        """Stop following."""
        subs, self._subs = self._subs, []
        for sub in subs:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()

    def learn(self, status: AgentStatus | None, version: int) -> None:
        """Take ``status`` unless what is known is newer (a deleted agent: None)."""
        if version < self.version or (version == self.version and status is self.status):
            return
        self.status, self.version = status, version
        self._changed.set()

    async def refresh(self) -> None:
        """Read the agent (agent.get); a service that does not answer changes nothing."""
        try:
            agent = await self._client.get_agent(self.agent_id)
        except ServiceUnavailable as exc:
            log.debug("status of %s not read: %s", self.agent_id, exc.message)
            return
        except RequestFailed as exc:
            if exc.code is ErrorCode.NOT_FOUND:
                self.learn(None, max(self.version, 0) + 1)
                return
            raise
        self.learn(agent.status, agent.version)

    async def wait_active(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for the agent to be ACTIVE (or ended); whether it is."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not (self.active or self.ended):
            left = deadline - loop.time()
            if left <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(left, REFRESH_S)):
                    await self._changed.wait()
                    continue
            if not (self.active or self.ended) and loop.time() < deadline:
                await self.refresh()
        return self.active

    async def _on_event(self, msg: Msg) -> None:
        kind = msg.subject.rsplit(".", 1)[-1]
        if kind != "deleted" and kind not in _STATUS_EVENTS:
            return
        try:
            version = int(json.loads(msg.data)["version"])
        except (ValueError, KeyError, TypeError):
            return
        self.learn(_STATUS_EVENTS.get(kind), version)
