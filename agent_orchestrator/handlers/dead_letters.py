"""The durable job that marks a message FAILED once its recipient never acknowledged it.

When an inbox message reaches its consumer's max_deliver, nats-server publishes a
max-deliveries advisory; stream AGENT_DEAD_LETTERS keeps every one (also while no service
instance runs), and this consumer, shared by all instances, ends the message FAILED with the
reason and its ``message_failed`` event. The message itself is then removed from the stream by
the message sweeper; its content stays in the communications log.
"""

import logging
from datetime import UTC, datetime

from faststream.nats import NatsMessage

from agent_orchestrator.contracts import subjects
from agent_orchestrator.contracts.communications import CommunicationStatus
from agent_orchestrator.domain import communications as rules
from agent_orchestrator.domain.errors import NotFound, Unavailable
from agent_orchestrator.handlers.jobs import job
from agent_orchestrator.storage.agent_queues import AgentQueue, MaxDeliveriesAdvisory
from agent_orchestrator.storage.communications import CommunicationRepository

log = logging.getLogger(__name__)

RETRY_DELAY_S = 1.0


class DeadLetters:
    """The durable job that consumes max-deliveries advisories of AGENT_MESSAGES."""

    def __init__(self, *, inbox: AgentQueue, communications: CommunicationRepository) -> None:
        self._inbox = inbox
        self._communications = communications

    async def record(self, advisory: MaxDeliveriesAdvisory) -> None:
        """End the message at the advisory's stream position FAILED, if it is still SENT."""
        communication_id = await self._inbox.message_id_at(advisory.stream_seq)
        if communication_id is None:
            return  # delivered or removed meanwhile
        try:
            found = await self._communications.addressed(communication_id)
        except NotFound:
            return
        if found.message.status is not CommunicationStatus.SENT:
            return
        now = datetime.now(UTC)
        reason = f"not acknowledged after {advisory.deliveries} deliveries"
        failed = rules.end(found.message, CommunicationStatus.FAILED, reason, now)
        await self._communications.finish(
            [failed],
            [rules.outcome_event(failed, found.recipient, now)],
            stream_seqs=[advisory.stream_seq],
        )

    @job(
        subjects.MESSAGE_DEAD_LETTERS_SUBJECTS,
        stream=subjects.DEAD_LETTERS_STREAM,
        durable=subjects.DEAD_LETTER_CONSUMER,
        title="$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.AGENT_MESSAGES",
        description="Durable job: a message its recipient never acknowledged becomes FAILED.",
    )
    async def record_dead_letter(self, advisory: MaxDeliveriesAdvisory, msg: NatsMessage) -> None:
        try:
            await self.record(advisory)
        except Unavailable:
            log.warning("dead letter %d not recorded: a dependency is down", advisory.stream_seq)
            await msg.nack(delay=RETRY_DELAY_S)
            return
        await msg.ack()
