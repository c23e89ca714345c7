"""The durable job that keeps each agent's inbox consumer in step with the agent's status.

It consumes the agent's status events from AGENT_EVENTS, one at a time in stream order (so a
pause is never applied after the activation that followed it), shared by all instances:
INITIALIZING creates the consumer paused, ACTIVE resumes it, READY / PAUSED / ERROR pause it,
and TERMINATED or a deletion removes it and ends the agent's undelivered messages FAILED.
Events are written through the outbox, so no status change can miss its step.
"""

import logging
from datetime import UTC, datetime
from uuid import UUID

from faststream.middlewares import AckPolicy
from faststream.nats import JStream, NatsMessage, NatsRouter, PullSub

from agent_orchestrator.contracts import subjects
from agent_orchestrator.contracts.agents import AgentStatus
from agent_orchestrator.contracts.communications import CommunicationStatus
from agent_orchestrator.contracts.events import Event, EventKind
from agent_orchestrator.domain import communications as rules
from agent_orchestrator.domain.errors import Unavailable
from agent_orchestrator.storage.communications import CommunicationRepository
from agent_orchestrator.storage.inboxes import Inboxes

log = logging.getLogger(__name__)

RETRY_DELAY_S = 1.0
BATCH = 500

_REASONS = {
    EventKind.TERMINATED: rules.RECIPIENT_TERMINATED,
    EventKind.DELETED: rules.RECIPIENT_DELETED,
}


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
    router: NatsRouter, inboxes: Inboxes, communications: CommunicationRepository
) -> None:
    """Consume status events from the keeper's durable consumer (see the module docstring)."""

    async def follow(event: Event) -> None:
        agent_id: UUID = event.agent_id
        if event.type in _REASONS:
            recipient = rules.Party(
                agent_id, event.project_id, AgentStatus.TERMINATED, event.version
            )
            await inboxes.remove(agent_id)
            failed = await fail_undelivered(communications, recipient, _REASONS[event.type])
            if failed:
                log.info("%d undelivered messages to %s failed: %s", failed, agent_id, event.type)
        else:
            await inboxes.ensure(agent_id, active=event.type is EventKind.ACTIVE)

    @router.subscriber(
        subjects.event_subject("*", "*"),
        stream=JStream(subjects.EVENTS_STREAM, declare=False),
        # Bound to the durable declared with its filter subjects in storage.jetstream.
        durable=subjects.AGENT_CONSUMER_KEEPER,
        pull_sub=PullSub(batch_size=1, timeout=5.0),
        ack_policy=AckPolicy.MANUAL,
        title="agent.event (consumer keeper)",
        description="Durable job: pause, resume, create or remove an agent's inbox consumer "
        "after each of its status events.",
    )
    async def keep_agent_consumers(event: Event, msg: NatsMessage) -> None:
        try:
            await follow(event)
        except Unavailable:
            log.warning("consumers of %s not updated yet: a dependency is down", event.agent_id)
            await msg.nack(delay=RETRY_DELAY_S)
            return
        await msg.ack()
