"""The ingest of AGENT_OUTGOING: one instance at a time reads it in batches, in stream order.

Per-sender order to one recipient must hold across instances, so exactly one ingester leads at
a time: the holder of a PostgreSQL advisory lock, like the outbox relay. When it starts leading
(and again after any failure) it creates the consumer ``message-ingest`` anew, so whatever an
earlier leader fetched and did not acknowledge comes first, in stream order (a work-queue
stream keeps every unacknowledged message; a new consumer starts from the oldest). Then it
fetches batches (natural batching: whatever has arrived, up to ``batch``), hands each to
:class:`DirectSends` and acknowledges it once recorded and published.
"""

import contextlib
import logging
from dataclasses import dataclass

import asyncpg
import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from agent_orchestrator.contracts import subjects
from agent_orchestrator.domain.errors import Unavailable
from agent_orchestrator.handlers.direct_sends import DirectSends, Outgoing, parse
from agent_orchestrator.storage.leadership import Leadership, LockSettings

log = logging.getLogger(__name__)

INGEST_LOCK_ID = 0x616F_6F67  # "aoog": not the migration lock ("aomi") nor the relay's ("aorx")


@dataclass(frozen=True)
class IngestSettings:
    """Batch size and timings of the ingest."""

    batch: int = 500
    fetch_timeout_s: float = 1.0
    ack_wait_s: float = 30.0
    lock_retry_s: float = 1.0
    retry_s: float = 1.0


def consumer_config(settings: IngestSettings) -> ConsumerConfig:
    """The leader's consumer on AGENT_OUTGOING."""
    return ConsumerConfig(
        durable_name=subjects.MESSAGE_INGEST_CONSUMER,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=settings.ack_wait_s,
        max_deliver=-1,
        max_ack_pending=settings.batch * 2,
        description="Records and delivers the messages workers send on agent.outgoing.<id>; "
        "read by the one instance that leads the ingest.",
    )


class MessageIngest:
    """Runs until ``stop()``; leads the ingest when it holds the lock."""

    def __init__(
        self,
        dsn: str,
        js: JetStreamContext,
        sends: DirectSends,
        settings: IngestSettings | None = None,
    ) -> None:
        self._js = js
        self._sends = sends
        self._settings = settings = settings or IngestSettings()
        self._leadership = Leadership(
            "message ingest",
            dsn,
            INGEST_LOCK_ID,
            self._lead,
            LockSettings(settings.lock_retry_s, settings.retry_s),
            expected=(Unavailable, nats.errors.Error, TimeoutError),
        )
        self.ingested = 0

    @property
    def is_leader(self) -> bool:
        """Whether this instance leads the ingest now."""
        return self._leadership.is_leader

    def stop(self) -> None:
        """Ask ``run`` to return at its next step."""
        self._leadership.stopping = True

    async def run(self) -> None:
        """Compete for the lead; ingest while leading; start over after a failure."""
        await self._leadership.run()

    async def _lead(self, conn: asyncpg.Connection) -> None:
        stream, name = subjects.OUTGOING_STREAM, subjects.MESSAGE_INGEST_CONSUMER
        # A consumer of its own: what an earlier leader fetched comes again, first, in order.
        with contextlib.suppress(NotFoundError):
            await self._js.delete_consumer(stream, name)
        await self._js.add_consumer(stream, consumer_config(self._settings))
        psub = await self._js.pull_subscribe_bind(name, stream=stream)
        try:
            while not self._leadership.stopping:
                if conn.is_closed():
                    raise asyncpg.exceptions.ConnectionDoesNotExistError("lock connection lost")
                try:
                    msgs = await psub.fetch(
                        self._settings.batch, timeout=self._settings.fetch_timeout_s
                    )
                except TimeoutError:  # nothing arrived (nats-py raises either kind)
                    continue
                await self.ingest(msgs)
        finally:
            with contextlib.suppress(Exception):
                await psub.unsubscribe()

    async def ingest(self, msgs: list[Msg]) -> None:
        """Record and deliver one fetched batch, then acknowledge it."""
        batch: list[Outgoing] = []
        for msg in msgs:
            message = parse(msg.subject, msg.data, msg.metadata.timestamp)
            if message is not None:
                batch.append(message)
        await self._sends.ingest(batch)
        for msg in msgs:
            await msg.ack()
        self.ingested += len(msgs)
