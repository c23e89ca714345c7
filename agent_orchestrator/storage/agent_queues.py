"""Per-agent work queues: one durable consumer per agent on a work-queue stream.

Two of them: the inbox (``inbox-<agent_id>`` on ``agent.inbox.<agent_id>`` in AGENT_MESSAGES)
and the task queue (``tasks-<agent_id>`` on ``agent.task.<agent_id>`` in AGENT_TASKS). An
agent's consumer (explicit acks, an ack wait, a maximum number of deliveries) is created when
the agent is initialized and deleted when it is terminated. It is paused by the server unless
the agent is ACTIVE, so what is sent to a PAUSED (or not yet active) agent waits in the stream.
"""

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID

from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import APIError, NotFoundError
from pydantic import BaseModel, ConfigDict

from agent_orchestrator.contracts.agents import AgentStatus
from agent_orchestrator.contracts.subjects import MSG_ID_HEADER
from agent_orchestrator.domain.errors import CapacityReached
from agent_orchestrator.storage.jetstream import JetStreamBound, jetstream_calls

PAUSED_UNTIL = "9999-01-01T00:00:00Z"
"""A consumer paused until then waits for an explicit resume."""

# JetStream error codes that mean "that message is not in the stream (any more)", as nats-server
# 2.15 answers a delete or get: 10037 no message found; 10043 sequence not found (400, for a
# work-queue message acknowledged since); 10057 message delete failed (500 "stream store EOF").
MESSAGE_GONE = frozenset({10037, 10043, 10057})
#: "maximum consumers limit reached": the stream's max_consumers (``max_agent_queues``).
CONSUMER_LIMIT_REACHED = 10026


class MaxDeliveriesAdvisory(BaseModel):
    """The server's notice that a message reached its consumer's max_deliver unacknowledged."""

    model_config = ConfigDict(extra="ignore")

    stream: str
    consumer: str
    stream_seq: int
    deliveries: int


@dataclass(frozen=True)
class QueueSettings:
    """How every consumer of one kind of queue delivers (max_deliveries -1: no limit)."""

    ack_wait_s: float = 30.0
    max_deliveries: int = 5
    max_ack_pending: int = 1000


class AgentQueue(JetStreamBound):
    """Creates, pauses, resumes and removes one kind of per-agent consumer; removes its
    messages."""

    def __init__(
        self,
        stream: str,
        subject: Callable[[str], str],
        consumer: Callable[[str], str],
        settings: QueueSettings,
        *,
        holds: str,
    ) -> None:
        """``subject`` and ``consumer`` name an agent's subject and consumer by agent id;
        ``holds`` says what waits there (for descriptions)."""
        super().__init__()
        self.stream = stream
        self._subject = subject
        self._consumer = consumer
        self._settings = settings
        self._holds = holds

    def config(self, agent_id: UUID, *, active: bool) -> ConsumerConfig:
        """The consumer of one agent's queue (created paused unless ``active``)."""
        s = self._settings
        return ConsumerConfig(
            durable_name=self._consumer(str(agent_id)),
            filter_subject=self._subject(str(agent_id)),
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=s.ack_wait_s,
            max_deliver=s.max_deliveries,
            max_ack_pending=s.max_ack_pending,
            pause_until=None if active else PAUSED_UNTIL,
            description=f"{self._holds} of agent {agent_id}; delivered while it is ACTIVE.",
        )

    async def follow(self, agent_id: UUID, status: AgentStatus | None) -> None:
        """Make the consumer match the agent's ``status`` (None: the agent is gone): removed
        once TERMINATED or gone, delivering while ACTIVE, paused otherwise (created if it is
        missing); nothing before the agent was first initialized."""
        if status is None or status is AgentStatus.TERMINATED:
            await self.remove(agent_id)
            return
        if status is AgentStatus.CREATED:
            return
        active = status is AgentStatus.ACTIVE
        name = self._consumer(str(agent_id))
        with jetstream_calls():
            try:
                if active:
                    await self.js.resume_consumer(self.stream, name)
                else:
                    await self.js.pause_consumer(self.stream, name, PAUSED_UNTIL)
                return
            except NotFoundError:
                pass
        await self.ensure(agent_id, active=active)

    async def ensure(self, agent_id: UUID, *, active: bool) -> None:
        """Make the agent's consumer exist, delivering only if ``active``."""
        name = self._consumer(str(agent_id))
        with jetstream_calls():
            try:
                info = await self.js.add_consumer(self.stream, self.config(agent_id, active=active))
            except APIError as exc:
                if exc.err_code != CONSUMER_LIMIT_REACHED:
                    raise
                raise CapacityReached(
                    f"no room for the {self._holds} of one more agent: stream {self.stream} "
                    "holds its maximum of consumers, one per initialized agent "
                    "(AO_MAX_AGENT_QUEUES); terminate agents or raise the limit"
                ) from exc
            if active and info.paused:
                await self.js.resume_consumer(self.stream, name)
            elif not active and not info.paused:
                await self.js.pause_consumer(self.stream, name, PAUSED_UNTIL)

    async def remove(self, agent_id: UUID) -> None:
        """Delete the agent's consumer (what waits for it is ended, and removed, by the sweep)."""
        with jetstream_calls(), contextlib.suppress(NotFoundError):
            await self.js.delete_consumer(self.stream, self._consumer(str(agent_id)))

    async def delete_message(self, stream_seq: int) -> None:
        """Remove one message from AGENT_MESSAGES (gone already is fine)."""
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
