"""The outbox relay: publishes committed outbox rows to JetStream, in order, exactly once.

Exactly one relay leads at a time (a PostgreSQL advisory lock held by its connection), so rows
go out in id order and per-agent order holds. LISTEN/NOTIFY wakes it; a slow sweep covers a
missed notification. A crash between publish and marking re-publishes on restart, and the
stream drops the repeat by its ``Nats-Msg-Id`` within the duplicate window.

A batch is pipelined: its publishes leave in id order on one connection without waiting for
each acknowledgement, and rows are marked published only up to the first one JetStream did not
acknowledge; that one and the rest go again (as duplicates, if they had landed). Order could
only break if JetStream refused one message yet stored the next one already in flight.
"""

import asyncio
import contextlib
import logging
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import PubAck

from agent_orchestrator.contracts.subjects import MSG_ID_HEADER
from agent_orchestrator.storage.leadership import Leadership, LockSettings

log = logging.getLogger(__name__)

RELAY_LOCK_ID = 0x616F_7278  # "aorx"
CHANNEL = "outbox"


@dataclass
class RelaySettings:
    """Timings and sizes of the relay."""

    batch_size: int = 500
    publish_timeout_s: float = 5.0
    sweep_s: float = 5.0
    lock_retry_s: float = 1.0
    reconnect_s: float = 1.0
    retention_s: int = 24 * 3600
    idempotency_ttl_s: int = 24 * 3600
    cleanup_every_s: float = 60.0


@dataclass(frozen=True)
class PublishedHook:
    """SQL the relay runs for the rows it published whose subject starts with
    ``subject_prefix``: ``$1`` their msg ids (uuid[]), ``$2`` their stream sequences
    (bigint[]). So a store learns where its messages landed."""

    subject_prefix: str
    sql: str


def remaining_ttl_s(expires_at: datetime | None, now: datetime) -> int | None:
    """Whole seconds a message has left to live (at least 1), 0 if past, None if no limit."""
    if expires_at is None:
        return None
    left = (expires_at - now).total_seconds()
    return max(1, math.ceil(left)) if left > 0 else 0


class PublishedAhead:
    """Outbox rows whose message a handler of this instance already published right after its
    commit, with the stream sequence it landed at: the relay of this instance, when it leads,
    records them without publishing again. (Another instance's relay does not know them and
    publishes them again; the stream drops that repeat by its ``Nats-Msg-Id``.)"""

    def __init__(self, capacity: int = 100_000) -> None:
        self._seqs: OrderedDict[UUID, int] = OrderedDict()
        self._capacity = capacity

    def add(self, msg_id: UUID, seq: int) -> None:
        """``msg_id`` landed at ``seq``."""
        self._seqs[msg_id] = seq
        if len(self._seqs) > self._capacity:
            self._seqs.popitem(last=False)

    def take(self, msg_id: UUID) -> int | None:
        """Where ``msg_id`` landed, if it was published ahead (forgotten afterwards)."""
        return self._seqs.pop(msg_id, None)


class OutboxRelay:
    """Runs until cancelled; reconnects and re-competes for leadership after failures."""

    def __init__(
        self,
        dsn: str,
        js: JetStreamContext,
        settings: RelaySettings,
        hooks: Sequence[PublishedHook] = (),
        ahead: PublishedAhead | None = None,
    ) -> None:
        self._dsn = dsn
        self._js = js
        self._settings = settings
        self._hooks = tuple(hooks)
        self._ahead = ahead or PublishedAhead()
        self.published = 0
        self._leadership = Leadership(
            "outbox relay",
            dsn,
            RELAY_LOCK_ID,
            self._lead,
            LockSettings(settings.lock_retry_s, settings.reconnect_s),
        )

    @property
    def is_leader(self) -> bool:
        """Whether this instance's relay leads (holds the lock) now."""
        return self._leadership.is_leader

    @property
    def _stopping(self) -> bool:
        return self._leadership.stopping

    def stop(self) -> None:
        """Ask ``run`` to return at its next step (cancellation alone can be swallowed by
        libraries that turn a cancelled wait into a timeout)."""
        self._leadership.stopping = True

    async def run(self) -> None:
        """Lead when possible, publish while leading; returns after ``stop()``."""
        await self._leadership.run()

    async def _lead(self, conn: asyncpg.Connection) -> None:
        # Marking rows published need not wait for a disk flush: a mark lost in a crash only
        # means a re-publish, which the stream drops as a duplicate.
        await conn.execute("SET synchronous_commit = off")
        wake = asyncio.Event()

        def on_notify(*_: Any) -> None:
            wake.set()

        await conn.add_listener(CHANNEL, on_notify)
        conn.add_termination_listener(on_notify)
        loop = asyncio.get_running_loop()
        next_cleanup = loop.time()
        while not self._stopping:
            if conn.is_closed():
                raise asyncpg.exceptions.ConnectionDoesNotExistError("relay connection closed")
            wake.clear()
            try:
                sent = await self._publish_batch(conn)
            except (NatsError, TimeoutError) as exc:
                log.warning("outbox relay cannot publish to JetStream: %r", exc)
                await asyncio.sleep(self._settings.reconnect_s)
                continue
            if loop.time() >= next_cleanup:
                await self._cleanup(conn)
                next_cleanup = loop.time() + self._settings.cleanup_every_s
            if sent < self._settings.batch_size:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._settings.sweep_s):
                        await wake.wait()

    async def _publish_batch(self, conn: asyncpg.Connection) -> int:
        rows = await conn.fetch(
            """SELECT id, msg_id, subject, payload, expires_at FROM outbox
               WHERE published_at IS NULL ORDER BY id LIMIT $1""",
            self._settings.batch_size,
        )
        in_flight: list[asyncio.Future[PubAck] | int | None] = []
        done: list[asyncpg.Record] = []
        sequences: list[int | None] = []
        try:
            for row in rows:
                if self._stopping:
                    break
                if (seq := self._ahead.take(row["msg_id"])) is not None:
                    in_flight.append(seq)  # a handler published it already
                    continue
                ttl = remaining_ttl_s(row["expires_at"], datetime.now(UTC))
                if ttl == 0:
                    in_flight.append(None)  # expired before it could go out: its owner says so
                    continue
                in_flight.append(
                    await self._js.publish_async(
                        row["subject"],
                        row["payload"],
                        headers={MSG_ID_HEADER: str(row["msg_id"])},
                        msg_ttl=ttl,
                    )
                )
            for row, future in zip(rows, in_flight, strict=False):
                seq = future if isinstance(future, int) else None
                if isinstance(future, asyncio.Future):
                    ack = await asyncio.wait_for(future, self._settings.publish_timeout_s)
                    seq = ack.seq
                done.append(row)
                sequences.append(seq)
        finally:
            for future in in_flight[len(done) :]:
                if isinstance(future, asyncio.Future):
                    future.cancel()
            if done:
                await self._mark_published(conn, done, sequences)
        return len(rows)

    async def _mark_published(
        self, conn: asyncpg.Connection, rows: list[asyncpg.Record], sequences: list[int | None]
    ) -> None:
        async with conn.transaction():
            await conn.execute(
                "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])",
                [row["id"] for row in rows],
            )
            for hook in self._hooks:
                landed = [
                    (row["msg_id"], seq)
                    for row, seq in zip(rows, sequences, strict=True)
                    if seq is not None and row["subject"].startswith(hook.subject_prefix)
                ]
                if landed:
                    ids, seqs = zip(*landed, strict=True)
                    await conn.execute(hook.sql, list(ids), list(seqs))
        self.published += len(rows)

    async def _cleanup(self, conn: asyncpg.Connection) -> None:
        await conn.execute(
            "DELETE FROM outbox WHERE published_at < now() - make_interval(secs => $1)",
            float(self._settings.retention_s),
        )
        await conn.execute(
            "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)",
            float(self._settings.idempotency_ttl_s),
        )


@dataclass(frozen=True)
class OutboxBacklog:
    """Committed events not yet published, and how long the oldest has waited."""

    pending: int
    oldest_age_s: float


async def outbox_backlog(pool: asyncpg.Pool) -> OutboxBacklog:
    """The outbox's backlog now (reads only the pending rows, by their partial index)."""
    row = await pool.fetchrow(
        """SELECT count(*) AS pending,
                  coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS age
           FROM outbox WHERE published_at IS NULL"""
    )
    assert row is not None
    return OutboxBacklog(row["pending"], max(0.0, row["age"]))
