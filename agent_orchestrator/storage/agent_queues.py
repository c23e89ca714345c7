"""Per-agent subjects of the two work-queue streams, as the service sees them.

An agent's messages wait on ``agent.inbox.<agent_id>`` in AGENT_MESSAGES, its task assignments
on ``agent.task.<agent_id>`` in AGENT_TASKS. The service holds no consumer per agent: a running
worker creates its agent's consumer itself (see ``client.pull_queue`` and
docs/data-plane.md), with the :class:`QueueSettings` the service writes into the stream's
metadata. The service removes single messages (ended ones, by the sweep) and, once an agent
has ended, everything left on its subject.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from uuid import UUID

from nats.js.errors import APIError, NotFoundError
from pydantic import BaseModel, ConfigDict

from agent_orchestrator.contracts.queues import QueueSettings
from agent_orchestrator.contracts.subjects import MSG_ID_HEADER
from agent_orchestrator.storage.atomic import OutboxMessage
from agent_orchestrator.storage.jetstream import JetStreamBound, jetstream_calls
from agent_orchestrator.storage.outbox import PublishedAhead, remaining_ttl_s

log = logging.getLogger(__name__)

#: How long a handler waits for the PubAcks of what it publishes right after its commit.
PUBLISH_TIMEOUT_S = 2.0

__all__ = ["AgentQueue", "MaxDeliveriesAdvisory", "QueueSettings"]

# JetStream error codes that mean "that message is not in the stream (any more)", as nats-server
# 2.15 answers a delete or get: 10037 no message found; 10043 sequence not found (400, for a
# work-queue message acknowledged since); 10057 message delete failed (500 "stream store EOF").
MESSAGE_GONE = frozenset({10037, 10043, 10057})


class MaxDeliveriesAdvisory(BaseModel):
    """The server's notice that a message reached its consumer's max_deliver unacknowledged."""

    model_config = ConfigDict(extra="ignore")

    stream: str
    consumer: str
    stream_seq: int
    deliveries: int


class AgentQueue(JetStreamBound):
    """One work-queue stream of per-agent subjects: its settings, and removals from it."""

    def __init__(
        self,
        stream: str,
        subject: Callable[[str], str],
        settings: QueueSettings,
        ahead: PublishedAhead,
    ) -> None:
        """``subject`` names an agent's subject by agent id; ``ahead`` tells this instance's
        outbox relay what was published already."""
        super().__init__()
        self.stream = stream
        self._subject = subject
        self.settings = settings
        self._ahead = ahead

    async def publish_committed(self, messages: Sequence[OutboxMessage]) -> None:
        """Publish messages whose outbox rows have just committed, pipelined, so that they
        reach the stream without waiting for the relay. Best effort: a failure is left to the
        relay, which publishes every outbox row anyway (the stream drops that repeat by its
        ``Nats-Msg-Id``), so nothing is lost and nothing doubled. What landed is noted for
        this instance's relay, which then only records it."""
        try:
            for msg_id, seq in await self.publish(messages):
                self._ahead.add(msg_id, seq)
        except Exception as exc:  # the relay publishes it
            log.debug("direct publish to %s failed, left to the relay: %r", self.stream, exc)

    async def publish(self, messages: Sequence[OutboxMessage]) -> list[tuple[UUID, int]]:
        """Publish messages pipelined (in order, then one wait for every PubAck), each with
        what is left of its time to live (an expired one is skipped); (msg id, stream
        sequence) of each. Raises when one is not acknowledged in time."""
        now = datetime.now(UTC)
        sent = []
        for m in messages:
            ttl = remaining_ttl_s(m.expires_at, now)
            if ttl == 0:
                continue
            headers = {MSG_ID_HEADER: str(m.msg_id)}
            future = await self.js.publish_async(m.subject, m.payload, headers=headers, msg_ttl=ttl)
            sent.append((m.msg_id, future))
        if not sent:
            return []
        acks = await asyncio.wait_for(asyncio.gather(*(f for _, f in sent)), PUBLISH_TIMEOUT_S)
        return [(msg_id, ack.seq) for (msg_id, _), ack in zip(sent, acks, strict=True)]

    async def purge(self, agent_id: UUID) -> None:
        """Remove everything still waiting on the agent's subject (it has ended)."""
        with jetstream_calls(), contextlib.suppress(NotFoundError):
            await self.js.purge_stream(self.stream, subject=self._subject(str(agent_id)))

    async def delete_message(self, stream_seq: int) -> None:
        """Remove one message from the stream (gone already is fine)."""
        with jetstream_calls():
            try:
                await self.js.delete_msg(self.stream, stream_seq)
            except APIError as exc:
                if exc.err_code not in MESSAGE_GONE and not isinstance(exc, NotFoundError):
                    raise

    async def message_id_at(self, stream_seq: int) -> UUID | None:
        """The ``Nats-Msg-Id`` (a UUID) of the message at ``stream_seq``, None if it is gone."""
        with jetstream_calls():
            try:
                msg = await self.js.get_msg(self.stream, stream_seq)
            except NotFoundError:
                return None
        msg_id = (msg.headers or {}).get(MSG_ID_HEADER)
        try:
            return UUID(msg_id) if msg_id else None
        except ValueError:
            return None
