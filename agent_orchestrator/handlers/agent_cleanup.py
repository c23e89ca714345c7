"""The durable job that cleans up after an agent has ended (TERMINATED or deleted).

Lifecycle commands touch no JetStream object: what a worker may take follows the agent's
status through the claim (task.start) and the delivery check (communication.handover). What an
ended agent leaves behind is cleaned up here, in the background, from its ``terminated`` or
``deleted`` event (through the outbox, so none is missed; shared by all instances): its
undelivered messages end FAILED, its open tasks CANCELLED, and what is left on its inbox and
task subjects is purged from AGENT_MESSAGES and AGENT_TASKS. Every step is idempotent, so a
redelivered event repeats it harmlessly.
"""

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from faststream.nats import NatsMessage

from agent_orchestrator.contracts import subjects
from agent_orchestrator.contracts.agents import AgentStatus
from agent_orchestrator.contracts.communications import CommunicationStatus
from agent_orchestrator.contracts.events import Event, EventKind
from agent_orchestrator.domain import communications as rules
from agent_orchestrator.domain.agents import AgentRef
from agent_orchestrator.domain.errors import Conflict, Unavailable
from agent_orchestrator.handlers.jobs import job
from agent_orchestrator.handlers.tasks import cancel_open_tasks
from agent_orchestrator.storage.agent_queues import AgentQueue
from agent_orchestrator.storage.communications import CommunicationRepository
from agent_orchestrator.storage.tasks import TaskRepository

log = logging.getLogger(__name__)

RETRY_DELAY_S = 1.0
BATCH = 500


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


class AgentCleanup:
    """The durable job that ends what waits for an ended agent (see the module docstring)."""

    def __init__(
        self,
        *,
        communications: CommunicationRepository,
        tasks: TaskRepository,
        queues: Sequence[AgentQueue],
    ) -> None:
        self._communications = communications
        self._tasks = tasks
        self._queues = tuple(queues)

    async def clean_up(self, event: Event) -> None:
        """Fail its messages, cancel its tasks, purge its subjects."""
        gone = AgentRef(event.agent_id, event.project_id, AgentStatus.TERMINATED, event.version)
        deleted = event.type is EventKind.DELETED
        reason = rules.RECIPIENT_DELETED if deleted else rules.RECIPIENT_TERMINATED
        failed = await fail_undelivered(self._communications, gone, reason)
        cancelled = await cancel_open_tasks(
            self._tasks, gone, "agent deleted" if deleted else "agent terminated"
        )
        for queue in self._queues:
            await queue.purge(event.agent_id)
        if failed or cancelled:
            log.info(
                "agent %s ended: %d undelivered messages failed, %d open tasks cancelled",
                event.agent_id,
                failed,
                cancelled,
            )

    @job(
        subjects.event_subject("*", "*"),
        stream=subjects.EVENTS_STREAM,
        # Bound to the durable declared with its filter subjects in storage.jetstream.
        durable=subjects.AGENT_CLEANUP_CONSUMER,
        title="agent.event (cleanup of ended agents)",
        description="Durable job: after an agent's terminated or deleted event, fail its "
        "undelivered messages, cancel its open tasks, purge its inbox and task subjects.",
    )
    async def clean_up_ended_agent(self, event: Event, msg: NatsMessage) -> None:
        try:
            await self.clean_up(event)
        except (Unavailable, Conflict) as exc:
            log.warning(
                "cleanup after %s postponed (%s); retrying",
                event.agent_id,
                str(exc.__cause__ or exc),
            )
            await msg.nack(delay=RETRY_DELAY_S)
            return
        await msg.ack()
