"""The communications log in PostgreSQL: one row per message and recipient.

A send stores its rows, their inbox messages and their events in one statement that also
holds the sender and recipients (``FOR SHARE``) so that no message slips in after an agent
is terminated, and that refuses a sender over its backlog limit. Every later status change
is a conditional update (``WHERE status = 'SENT'``), so of two racing outcomes only one
happens and only it gets an event.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from agent_orchestrator.contracts.agents import AgentStatus
from agent_orchestrator.contracts.communications import (
    Communication,
    CommunicationStatus,
    Direction,
)
from agent_orchestrator.contracts.events import Event
from agent_orchestrator.contracts.subjects import inbox_subject
from agent_orchestrator.domain.agents import AgentRef
from agent_orchestrator.domain.communications import Outgoing, not_found
from agent_orchestrator.storage.agents import AGENT_REF_COLUMNS, agent_ref
from agent_orchestrator.storage.atomic import AtomicWrite, IdempotencyRecord, OutboxMessage
from agent_orchestrator.storage.group_commit import GroupCommit, GroupCommitStats
from agent_orchestrator.storage.postgres import Database, translate_errors
from agent_orchestrator.storage.send_writes import SEND_WRITES, SendWrite, inbox_message
from agent_orchestrator.storage.stream_positions import TAKEN, StreamPositions

COLUMNS = (
    "communication_id, broadcast_id, from_agent_id, to_agent_id, project_id, type, content, "
    "correlation_id, reply_to, ttl_s, expires_at, status, status_reason, created_at, "
    "updated_at, delivered_at"
)
COLUMN_NAMES = tuple(name.strip() for name in COLUMNS.split(","))
_C_COLUMNS = ", ".join(f"c.{name}" for name in COLUMN_NAMES)

MESSAGE_POSITIONS = StreamPositions(
    "communications", "communication_id", "status <> 'SENT'", "communication_id"
)
RECORD_INBOX_SEQUENCES = MESSAGE_POSITIONS.hook(inbox_subject(""))
"""Lets the outbox relay record where each inbox message landed in AGENT_MESSAGES."""


@dataclass(frozen=True)
class Addressed:
    """A message with its recipient as it is now (a deleted one: version 0)."""

    message: Communication
    recipient: AgentRef


def _communication(row: asyncpg.Record) -> Communication:
    return Communication.model_validate({name: row[name] for name in COLUMN_NAMES})


def _addressed(row: asyncpg.Record) -> Addressed:
    message = _communication(row)
    return Addressed(message, agent_ref(row, row["to_agent_id"], message.project_id))


def _party(row: asyncpg.Record) -> AgentRef:
    return AgentRef(row["agent_id"], row["project_id"], AgentStatus(row["status"]), row["version"])


def inbox_messages(outgoing: Outgoing) -> list[OutboxMessage]:
    """The inbox message of each recipient of a send (``Nats-Msg-Id`` = communication_id)."""
    return [inbox_message(m) for m in outgoing.messages]


class CommunicationRepository:
    """Reads and atomic writes of the communications log."""

    def __init__(self, db: Database) -> None:
        self._db = db
        # Sends have a writer of their own: one statement per batch, never mixed with other
        # kinds in a transaction; one at a time, so batches never wait on each other's locks.
        self._sends = GroupCommit(lambda: db.pool, writers=1)

    @translate_errors
    async def parties(self, agent_ids: list[UUID]) -> dict[UUID, AgentRef]:
        """The agents among ``agent_ids`` that exist."""
        rows = await self._db.pool.fetch(
            """SELECT agent_id, project_id, status, version FROM agents
               WHERE agent_id = ANY($1::uuid[])""",
            agent_ids,
        )
        return {row["agent_id"]: _party(row) for row in rows}

    @translate_errors
    async def active_in_project(self, project_id: str | None, *, besides: UUID) -> list[AgentRef]:
        """Every ACTIVE agent of the project (agents without one form their own), but one."""
        rows = await self._db.pool.fetch(
            """SELECT agent_id, project_id, status, version FROM agents
               WHERE project_id IS NOT DISTINCT FROM $1 AND status = 'ACTIVE'
                 AND agent_id <> $2
               ORDER BY agent_id""",
            project_id,
            besides,
        )
        return [_party(row) for row in rows]

    @property
    def send_stats(self) -> GroupCommitStats:
        """Statements run and sends written by the send writer."""
        return self._sends.stats

    @translate_errors
    async def insert(self, write: SendWrite) -> bool:
        """Store a send with its inbox messages and events (batched with concurrent sends);
        False, storing nothing, when a party was meanwhile TERMINATED or deleted, or the
        sender's backlog would exceed its limit of undelivered messages."""
        return await self._sends.submit(SEND_WRITES, write)

    @translate_errors
    async def backlog(self, sender: UUID, *, limit: int) -> int:
        """How many of the sender's messages are undelivered (counting stops at ``limit``)."""
        count = await self._db.pool.fetchval(
            """SELECT count(*) FROM (SELECT 1 FROM communications
               WHERE from_agent_id = $1 AND status = 'SENT' LIMIT $2) AS backlog""",
            sender,
            limit,
        )
        return int(count)

    @translate_errors
    async def find(self, communication_id: UUID) -> Communication | None:
        """One message, or None."""
        row = await self._db.pool.fetchrow(
            f"SELECT {COLUMNS} FROM communications WHERE communication_id = $1",
            communication_id,
        )
        return None if row is None else _communication(row)

    @translate_errors
    async def many(self, ids: list[UUID]) -> dict[UUID, Communication]:
        """Those of ``ids`` that exist, by id."""
        rows = await self._db.pool.fetch(
            f"SELECT {COLUMNS} FROM communications WHERE communication_id = ANY($1::uuid[])", ids
        )
        return {row["communication_id"]: _communication(row) for row in rows}

    async def get(self, communication_id: UUID) -> Communication:
        """One message, or NotFound."""
        message = await self.find(communication_id)
        if message is None:
            raise not_found(communication_id)
        return message

    @translate_errors
    async def of_recipient(self, agent_id: UUID, ids: list[UUID]) -> dict[UUID, Communication]:
        """Those of ``ids`` addressed to ``agent_id``, by id."""
        rows = await self._db.pool.fetch(
            f"""SELECT {COLUMNS} FROM communications
                WHERE communication_id = ANY($1::uuid[]) AND to_agent_id = $2""",
            ids,
            agent_id,
        )
        return {row["communication_id"]: _communication(row) for row in rows}

    @translate_errors
    async def recipient_with(
        self, agent_id: UUID, ids: list[UUID]
    ) -> tuple[AgentRef | None, dict[UUID, Communication]]:
        """The agent (None if it does not exist) and those of ``ids`` addressed to it, in one
        query (the delivery check's two reads)."""
        rows = await self._db.pool.fetch(
            f"""SELECT a.agent_id AS a_id, {AGENT_REF_COLUMNS}, {_C_COLUMNS}
                FROM agents a LEFT JOIN communications c
                  ON c.to_agent_id = a.agent_id AND c.communication_id = ANY($2::uuid[])
                WHERE a.agent_id = $1""",
            agent_id,
            ids,
        )
        if not rows:
            return None, {}
        agent = agent_ref(rows[0], agent_id, rows[0]["a_project_id"])
        found = {
            row["communication_id"]: _communication(row)
            for row in rows
            if row["communication_id"] is not None
        }
        return agent, found

    @translate_errors
    async def broadcast_copies(self, broadcast_id: UUID) -> list[Communication]:
        """Every copy of one broadcast, by recipient."""
        rows = await self._db.pool.fetch(
            f"""SELECT {COLUMNS} FROM communications WHERE broadcast_id = $1
                ORDER BY to_agent_id""",
            broadcast_id,
        )
        return [_communication(row) for row in rows]

    @translate_errors
    async def addressed(self, communication_id: UUID) -> Addressed:
        """One message with its recipient, or NotFound."""
        rows = await self._fetch_addressed("c.communication_id = $1", communication_id)
        if not rows:
            raise not_found(communication_id)
        return rows[0]

    @translate_errors
    async def page(
        self,
        agent_id: UUID,
        *,
        direction: Direction,
        status: CommunicationStatus | None,
        limit: int,
        before: UUID | None,
    ) -> list[Communication]:
        """Up to ``limit`` of an agent's communications, newest first, older than ``before``."""
        branches = []
        if direction in (Direction.SENT, Direction.BOTH):
            branches.append("from_agent_id = $1")
        if direction in (Direction.RECEIVED, Direction.BOTH):
            # A message to oneself is listed once.
            branches.append("to_agent_id = $1" + (" AND from_agent_id <> $1" if branches else ""))
        selects = [
            f"""(SELECT {COLUMNS} FROM communications
                 WHERE {where} AND ($2::text IS NULL OR status = $2)
                   AND ($3::uuid IS NULL OR communication_id < $3)
                 ORDER BY communication_id DESC LIMIT $4)"""
            for where in branches
        ]
        rows = await self._db.pool.fetch(
            f"""SELECT * FROM ({" UNION ALL ".join(selects)}) AS found
                ORDER BY communication_id DESC LIMIT $4""",
            agent_id,
            status,
            before,
            limit,
        )
        return [_communication(row) for row in rows]

    @translate_errors
    async def due_to_expire(self, now: datetime, *, limit: int) -> list[Addressed]:
        """Undelivered messages whose time to live has passed, oldest deadline first."""
        return await self._fetch_addressed(
            "c.status = 'SENT' AND c.expires_at <= $1 ORDER BY c.expires_at LIMIT $2",
            now,
            limit,
        )

    @translate_errors
    async def undelivered_to(self, agent_id: UUID, *, limit: int) -> list[Communication]:
        """Messages to ``agent_id`` still waiting for delivery, oldest first."""
        rows = await self._db.pool.fetch(
            f"""SELECT {COLUMNS} FROM communications
                WHERE to_agent_id = $1 AND status = 'SENT'
                ORDER BY communication_id LIMIT $2""",
            agent_id,
            limit,
        )
        return [_communication(row) for row in rows]

    async def finish(
        self,
        ended: list[Communication],
        events: list[Event],
        *,
        stream_seqs: list[int | None] | None = None,
        left_stream: bool = False,
        idempotency: IdempotencyRecord | None = None,
    ) -> set[UUID]:
        """Store messages that left SENT (``events[i]`` belongs to ``ended[i]``); returns the
        ids actually changed: a message that another outcome reached first is left alone,
        and its event is not stored.

        ``stream_seqs`` records where they are in AGENT_MESSAGES (the sweep removes them from
        there); ``left_stream`` says they are gone from it already (or their receiver removes
        them), so the sweep has nothing to do."""
        seqs = stream_seqs or [None] * len(ended)
        write = AtomicWrite(
            # Rows are locked in id order (the relay's hook does the same), so two batches
            # over the same rows cannot deadlock.
            """UPDATE communications c SET status = u.status, status_reason = u.reason,
                   updated_at = u.at, delivered_at = u.delivered,
                   stream_seq = CASE WHEN $7 THEN $8 ELSE COALESCE(u.seq, c.stream_seq) END
               FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[],
                           $5::timestamptz[], $6::bigint[])
                    AS u(id, status, reason, at, delivered, seq),
                    (SELECT communication_id FROM communications
                     WHERE communication_id = ANY($1::uuid[]) AND status = 'SENT'
                     ORDER BY communication_id FOR UPDATE) AS l
               WHERE c.communication_id = u.id AND l.communication_id = u.id
                 AND c.status = 'SENT'
               RETURNING c.communication_id""",
            [
                [m.communication_id for m in ended],
                [m.status for m in ended],
                [m.status_reason for m in ended],
                [m.updated_at for m in ended],
                [m.delivered_at for m in ended],
                seqs,
                left_stream,
                TAKEN,
            ],
        )
        write.with_outbox_per_row(
            [OutboxMessage.for_event(e) for e in events],
            [m.communication_id for m in ended],
            key="communication_id",
        ).with_idempotency(idempotency)
        return set(await self._returning(write, "communication_id"))

    async def ended_in_stream(self, *, limit: int) -> list[tuple[UUID, int]]:
        """(id, stream sequence) of messages that reached a final status but may still be
        in AGENT_MESSAGES."""
        return await MESSAGE_POSITIONS.ended_in_stream(self._db, limit=limit)

    async def forget_stream_seqs(self, removed: list[tuple[UUID, int]]) -> None:
        """Note that these messages are gone from the stream (unless republished since)."""
        await MESSAGE_POSITIONS.forget(self._db, removed)

    async def _fetch_addressed(self, where: str, *args: Any) -> list[Addressed]:
        rows = await self._db.pool.fetch(
            f"""SELECT {_C_COLUMNS}, {AGENT_REF_COLUMNS}
                FROM communications c LEFT JOIN agents a ON a.agent_id = c.to_agent_id
                WHERE {where}""",
            *args,
        )
        return [_addressed(row) for row in rows]

    @translate_errors
    async def _execute(self, write: AtomicWrite) -> bool:
        return await write.execute(self._db.pool)

    @translate_errors
    async def _returning(self, write: AtomicWrite, key: str) -> list[Any]:
        return await write.returning(self._db.pool, key)
