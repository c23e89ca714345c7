"""Each agent's inbox consumer follows the agent's status.

The consumer ``inbox-<agent_id>`` is created (paused) when the agent is initialized, delivers
only while the agent is ACTIVE, and is removed when the agent is TERMINATED or deleted; then the
agent's undelivered messages end FAILED. Two paths keep it so:

- the lifecycle commands sync it before they reply, so a caller who was told PAUSED can rely
  on no more deliveries;
- a durable job consumes the agent's status events (shared by all instances, through the
  outbox, so none is missed) and syncs again: it covers an instance that died between its
  commit and its sync, and fails the messages of terminated and deleted agents.

A sync reads the agent's status, applies it and reads again until the status held still, so
racing transitions and late syncs always settle on the consumer state of the final status.
"""

import logging
from datetime import UTC, datetime
from uuid import UUID

from faststream.middlewares import AckPolicy
from faststream.nats import JStream, NatsMessage, NatsRouter, PullSub

from agent_orchestrator.contracts import subjects
from agent_orchestrator.contracts.agents import AgentStatus
from agent_orchestrator.contracts.communications import CommunicationStatus
from agent_orchestrator.contracts.events import Event
from agent_orchestrator.domain import communications as rules
from agent_orchestrator.domain.errors import Conflict, NotFound, Unavailable
from agent_orchestrator.storage.agents import AgentRepository
from agent_orchestrator.storage.communications import CommunicationRepository
from agent_orchestrator.storage.inboxes import Inboxes

log = logging.getLogger(__name__)

RETRY_DELAY_S = 1.0
BATCH = 500
MAX_ROUNDS = 8


class AgentConsumers:
    """Brings an agent's consumers in line with its status."""

    def __init__(self, agents: AgentRepository, inboxes: Inboxes) -> None:
        self._agents = agents
        self._inboxes = inboxes

    async def _status(self, agent_id: UUID) -> AgentStatus | None:
        try:
            return (await self._agents.get(agent_id)).status
        except NotFound:
            return None

    async def sync(self, agent_id: UUID) -> AgentStatus | None:
        """Apply the agent's current status (None: it is gone) until it held still."""
        for _ in range(MAX_ROUNDS):
            status = await self._status(agent_id)
            await self._inboxes.follow(agent_id, status)
            if await self._status(agent_id) is status:
                return status
        raise Conflict(f"agent {agent_id} keeps changing; its consumers follow later")


def affects_consumers(before: AgentStatus, after: AgentStatus) -> bool:
    """Whether a transition changes what the agent's consumers do."""
    return AgentStatus.ACTIVE in (before, after) or after is AgentStatus.TERMINATED


async def fail_undelivered(
    communications: CommunicationRepository, recipient: rules.Party, reason: str
) -> int:
    """End every message still waiting for ``recipient`` FAILED with ``reason``."""
    failed = 0
    while waiting := await communications.undelivered_to(recipient.agent_id, limit=BATCH):
        now = datetime.now(UTC)
        ended = [rules.end(m, CommunicationStatus.FAILED, reason, now) for m in waiting]
        events = [rules.outcome_event(m, recipient, now) for m in ended]
        failed += len(await communications.finish(ended, events))
    return failed


def register_agent_consumer_keeper(
    router: NatsRouter, consumers: AgentConsumers, communications: CommunicationRepository
) -> None:
    """Consume status events from the keeper's durable consumer (see the module docstring)."""

    async def follow(event: Event) -> None:
        status = await consumers.sync(event.agent_id)
        if status is None or status is AgentStatus.TERMINATED:
            reason = rules.RECIPIENT_DELETED if status is None else rules.RECIPIENT_TERMINATED
            recipient = rules.Party(
                event.agent_id, event.project_id, AgentStatus.TERMINATED, event.version
            )
            failed = await fail_undelivered(communications, recipient, reason)
            if failed:
                log.info("%d undelivered messages to %s failed: %s", failed, event.agent_id, reason)

    @router.subscriber(
        subjects.event_subject("*", "*"),
        stream=JStream(subjects.EVENTS_STREAM, declare=False),
        # Bound to the durable declared with its filter subjects in storage.jetstream.
        durable=subjects.AGENT_CONSUMER_KEEPER,
        pull_sub=PullSub(batch_size=1, timeout=5.0),
        ack_policy=AckPolicy.MANUAL,
        title="agent.event (consumer keeper)",
        description="Durable job: create, pause, resume or remove an agent's inbox consumer "
        "after each of its status events; fail the messages of a terminated or deleted agent.",
    )
    async def keep_agent_consumers(event: Event, msg: NatsMessage) -> None:
        try:
            await follow(event)
        except (Unavailable, Conflict):
            log.warning("consumers of %s not in step yet; retrying", event.agent_id)
            await msg.nack(delay=RETRY_DELAY_S)
            return
        await msg.ack()
