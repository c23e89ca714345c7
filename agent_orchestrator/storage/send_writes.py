"""Sends written together: many callers' messages in one statement (natural batching).

A send is a *group*: its messages (one per recipient), their inbox messages and events in the
outbox, and its Idempotency-Key record. One statement writes every group queued while the last
one was in flight (the send writer is a ``GroupCommit`` of its own, one statement a batch, no
BEGIN/COMMIT): the main query keeps the groups whose parties are all still live (``FOR SHARE``,
so no message slips in after a terminate commits) and whose sender has room in its backlog
(``sender_backlog_room``, counting the same sender's earlier groups of the batch); the
companions insert the kept groups' rows, in the callers' order. Each caller learns whether its
group was kept; a statement error makes the writer run each group alone, so it reaches only
the caller that caused it.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from agent_orchestrator.contracts.communications import Communication
from agent_orchestrator.contracts.subjects import inbox_subject
from agent_orchestrator.domain.communications import Outgoing
from agent_orchestrator.storage.atomic import IdempotencyRecord, OutboxMessage
from agent_orchestrator.storage.batch_sql import BatchStatement
from agent_orchestrator.storage.group_commit import Connection


def inbox_message(message: Communication) -> OutboxMessage:
    """A message's copy for its recipient's inbox (``Nats-Msg-Id`` = communication_id)."""
    assert message.to_agent_id is not None
    return OutboxMessage.of(
        message.communication_id,
        inbox_subject(str(message.to_agent_id)),
        message,
        expires_at=message.expires_at,
    )


@dataclass(frozen=True)
class SendWrite:
    """One send to store: its messages, their inbox copies and events (each encoded once,
    here), the sender's backlog limit, its Idempotency-Key."""

    messages: list[Communication]
    inbox: list[OutboxMessage]
    events: list[OutboxMessage]
    sender: UUID
    max_backlog: int
    idempotency: IdempotencyRecord | None = None

    @classmethod
    def of(
        cls,
        outgoing: Outgoing,
        *,
        sender: UUID,
        max_backlog: int,
        idempotency: IdempotencyRecord | None = None,
    ) -> "SendWrite":
        """The write of one composed send."""
        return cls(
            outgoing.messages,
            [inbox_message(m) for m in outgoing.messages],
            [OutboxMessage.for_event(e) for e in outgoing.events],
            sender,
            max_backlog,
            idempotency,
        )


def _message_columns(
    messages: Sequence[Communication],
) -> dict[str, tuple[Sequence[object], str]]:
    return {
        "id": ([m.communication_id for m in messages], "uuid"),
        "bid": ([m.broadcast_id for m in messages], "uuid"),
        "frm": ([m.from_agent_id for m in messages], "uuid"),
        "dst": ([m.to_agent_id for m in messages], "uuid"),
        "prj": ([m.project_id for m in messages], "text"),
        "typ": ([m.type for m in messages], "text"),
        "cnt": ([json.dumps(m.content) for m in messages], "text"),
        "cor": ([m.correlation_id for m in messages], "text"),
        "rep": ([m.reply_to for m in messages], "uuid"),
        "ttl": ([m.ttl_s for m in messages], "int"),
        "exp": ([m.expires_at for m in messages], "timestamptz"),
        "st": ([m.status for m in messages], "text"),
        "why": ([m.status_reason for m in messages], "text"),
        "at": ([m.created_at for m in messages], "timestamptz"),
    }


def insert_messages(
    stmt: BatchStatement, owners: Sequence[int], messages: Sequence[Communication]
) -> None:
    """Add the INSERT of ``messages`` (``owners[i]`` the group of ``messages[i]``) to ``stmt``,
    for kept groups only, in list order."""
    source = stmt.unnest("m", {"owner": (owners, "int"), **_message_columns(messages)})
    stmt.companions.append(
        f"""INSERT INTO communications (communication_id, broadcast_id, from_agent_id,
               to_agent_id, project_id, type, content, correlation_id, reply_to, ttl_s,
               expires_at, status, status_reason, created_at, updated_at)
           SELECT m.id, m.bid, m.frm, m.dst, m.prj, m.typ, m.cnt::jsonb, m.cor, m.rep, m.ttl,
                  m.exp, m.st, m.why, m.at, m.at
           FROM {source}
           WHERE m.owner IN (SELECT key FROM changed) ORDER BY m.n"""
    )


class SendWrites:
    """The group-commit kind of sends: one statement for a batch; per send, kept or not."""

    single_statement = True

    async def write(self, conn: Connection, items: Sequence[SendWrite]) -> list[bool]:
        """Store every send whose parties are live and whose sender has room."""
        stmt = BatchStatement("int")
        owners: list[int] = []
        messages: list[Communication] = []
        outbox: list[OutboxMessage] = []
        outbox_owners: list[int] = []
        party_owners: list[int] = []
        parties: list[UUID] = []
        adding: list[int] = []
        party_counts: list[int] = []
        queued: dict[UUID, int] = {}  # the sender's messages in this batch so far
        for n, item in enumerate(items, start=1):
            group = item.messages
            owners += [n] * len(group)
            messages += group
            for inbox, event in zip(item.inbox, item.events, strict=True):
                outbox += [inbox, event]
                outbox_owners += [n, n]
            live = sorted({item.sender, *(m.to_agent_id for m in group if m.to_agent_id)})
            party_owners += [n] * len(live)
            party_counts.append(len(live))
            parties += live
            queued[item.sender] = queued.get(item.sender, 0) + len(group)
            adding.append(queued[item.sender])
        groups = stmt.unnest(
            "g",
            {
                "sender": ([i.sender for i in items], "uuid"),
                "adding": (adding, "int"),
                "max_backlog": ([i.max_backlog for i in items], "int"),
                "parties": (party_counts, "int"),
            },
        )
        pairs = stmt.unnest("p", {"owner": (party_owners, "int"), "agent_id": (parties, "uuid")})
        everyone = stmt.array(sorted(set(parties)), "uuid")
        live_cte = f"""live AS (SELECT agent_id FROM agents
                   WHERE agent_id = ANY({everyone}) AND status <> 'TERMINATED'
                   ORDER BY agent_id FOR SHARE)"""
        main = f"""SELECT g.n AS key FROM {groups}
                   WHERE (SELECT count(*) FROM {pairs} JOIN live USING (agent_id)
                          WHERE p.owner = g.n) = g.parties
                     AND (SELECT sender_backlog_room(g.sender, g.adding, g.max_backlog))"""
        insert_messages(stmt, owners, messages)
        stmt.with_outbox(outbox_owners, outbox)
        keyed = [(n, i.idempotency) for n, i in enumerate(items, start=1) if i.idempotency]
        stmt.with_idempotency([n for n, _ in keyed], [r for _, r in keyed if r])
        kept = await stmt.touched(conn, main, before=[live_cte])
        return [n in kept for n in range(1, len(items) + 1)]


SEND_WRITES = SendWrites()
