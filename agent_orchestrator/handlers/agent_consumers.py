"""Each agent's consumers (its inbox and its task queue) follow the agent's status.

The consumers ``inbox-<agent_id>`` and ``tasks-<agent_id>`` are created (paused) when the agent
is initialized, deliver only while the agent is ACTIVE, and are removed when the agent is
TERMINATED or deleted; then the agent's undelivered messages end FAILED and its open tasks
CANCELLED. Two paths keep it so:

- the lifecycle commands sync it before they reply, so a caller who was told PAUSED can rely
  on no more deliveries;
- a durable job consumes the agent's status events (shared by all instances, through the
  outbox, so none is missed) and syncs again: it covers an instance that died between its
  commit and its sync, and ends what waited for terminated and deleted agents.

A sync reads the agent's status, applies it and reads again until the status held still, so
racing transitions and late syncs always settle on the consumer state of the final status.
"""

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from uuid import UUID

from faststream.nats import NatsMessage

from agent_orchestrator.contracts import subjects
from agent_orchestrator.contracts.agents import Agent, AgentStatus
from agent_orchestrator.contracts.communications import CommunicationStatus
from agent_orchestrator.contracts.events import Event
from agent_orchestrator.domain import communications as rules
from agent_orchestrator.domain.agents import AgentRef
from agent_orchestrator.domain.errors import Conflict, NotFound, Unavailable
from agent_orchestrator.handlers.jobs import job
from agent_orchestrator.handlers.tasks import cancel_open_tasks
from agent_orchestrator.storage.agent_queues import AgentQueue
from agent_orchestrator.storage.agents import AgentRepository
from agent_orchestrator.storage.communications import CommunicationRepository
from agent_orchestrator.storage.tasks import TaskRepository

log = logging.getLogger(__name__)

RETRY_DELAY_S = 1.0
BATCH = 500
MAX_ROUNDS = 8


class AgentConsumers:
    """Brings an agent's consumers in line with its status."""

    def __init__(
        self,
        agents: AgentRepository,
        queues: Sequence[AgentQueue],
        *,
        on_active: Callable[[Agent], Awaitable[None]] | None = None,
    ) -> None:
        """``on_active`` also runs for an agent found ACTIVE (the liveness monitor's arming)."""
        self._agents = agents
        self._queues = tuple(queues)
        self._on_active = on_active

    async def _agent(self, agent_id: UUID) -> Agent | None:
        try:
            return await self._agents.get(agent_id)
        except NotFound:
            return None

    async def sync(self, agent_id: UUID) -> AgentStatus | None:
        """Apply the agent's current status (None: it is gone) until it held still."""
        for _ in range(MAX_ROUNDS):
            agent = await self._agent(agent_id)
            status = agent.status if agent else None
            for queue in self._queues:
                await queue.follow(agent_id, status)
            again = await self._agent(agent_id)
            if (again.status if again else None) is status:
                if again is not None and status is AgentStatus.ACTIVE and self._on_active:
                    await self._on_active(again)
                return status
        raise Conflict(f"agent {agent_id} keeps changing; its consumers follow later")


def affects_consumers(before: AgentStatus, after: AgentStatus) -> bool:
    """Whether a transition changes what the agent's consumers do."""
    return AgentStatus.ACTIVE in (before, after) or after is AgentStatus.TERMINATED


async def fail_undelivered(
    communications: CommunicationRepository, recipient: AgentRef, reason: str
) -> int:
    """End every message still waiting for ``recipient`` FAILED with ``reason``."""
    failed = 0
    while waiting := await communications.undelivered_to(recipient.agent_id, limit=BATCH):
        now = datetime.now(UTC)
        ended = [rules.end(m, CommunicationStatus.FAILED, reason, now) for m in waiting]
        events = [rules.outcome_event(m, recipient, now) for m in ended]
        failed += len(await communications.finish(ended, events))
    return failed


class ConsumerKeeper:
    """The durable job that syncs an agent's consumers after each of its status events (see
    the module docstring)."""

    def __init__(
        self,
        *,
        consumers: AgentConsumers,
        communications: CommunicationRepository,
        tasks: TaskRepository,
    ) -> None:
        self._consumers = consumers
        self._communications = communications
        self._tasks = tasks

    async def follow(self, event: Event) -> None:
        """Sync the agent's consumers; end what waits for a terminated or deleted agent."""
        status = await self._consumers.sync(event.agent_id)
        if status is None or status is AgentStatus.TERMINATED:
            gone = AgentRef(event.agent_id, event.project_id, AgentStatus.TERMINATED, event.version)
            deleted = status is None
            reason = rules.RECIPIENT_DELETED if deleted else rules.RECIPIENT_TERMINATED
            failed = await fail_undelivered(self._communications, gone, reason)
            reason = "agent deleted" if deleted else "agent terminated"
            cancelled = await cancel_open_tasks(self._tasks, gone, reason)
            if failed or cancelled:
                log.info(
                    "%s: %d undelivered messages failed, %d open tasks cancelled",
                    reason,
                    failed,
                    cancelled,
                )

    @job(
        subjects.event_subject("*", "*"),
        stream=subjects.EVENTS_STREAM,
        # Bound to the durable declared with its filter subjects in storage.jetstream.
        durable=subjects.AGENT_CONSUMER_KEEPER,
        title="agent.event (consumer keeper)",
        description="Durable job: create, pause, resume or remove an agent's inbox consumer "
        "after each of its status events; fail the messages of a terminated or deleted agent.",
    )
    async def keep_agent_consumers(self, event: Event, msg: NatsMessage) -> None:
        try:
            await self.follow(event)
        except (Unavailable, Conflict) as exc:
            log.warning(
                "consumers of %s not in step yet (%s); retrying",
                event.agent_id,
                str(exc.__cause__ or exc),
            )
            await msg.nack(delay=RETRY_DELAY_S)
            return
        await msg.ack()
