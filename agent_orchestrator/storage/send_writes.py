"""Sends written together: many callers' messages in one statement (natural batching).

A send is a *group*: its messages (one per recipient), their inbox copies and events in the
outbox, and its Idempotency-Key record. One statement writes every group queued while the last
one was in flight (the send writer is a ``GroupCommit`` of its own, one statement a batch, no
BEGIN/COMMIT). Its first CTEs keep the groups whose parties are all still live (``FOR SHARE``,
so no message slips in after a terminate commits) and whose sender has room in its backlog
(``sender_backlog_room``, counting the same sender's earlier groups of the batch); the main
write inserts the kept groups' messages (a message already in the log is left alone: a
redelivered direct send), and the companions insert the outbox and idempotency rows of the
messages it inserted, in the callers' order. Each caller learns whether its group was written;
a statement error makes the writer run each group alone, so it reaches only its caller.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
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
    here), the sender's backlog limit, its Idempotency-Key.

    ``checked``: write only while every party is live and the sender has room (a refused
    message, recorded FAILED, is not checked). ``inbox`` empty: the inbox copies are not the
    outbox's to publish (the direct path publishes them itself after the write)."""

    messages: list[Communication]
    inbox: list[OutboxMessage]
    events: list[OutboxMessage]
    sender: UUID
    max_backlog: int
    idempotency: IdempotencyRecord | None = None
    checked: bool = True
    in_outbox: bool = field(default=True)

    @classmethod
    def of(
        cls,
        outgoing: Outgoing,
        *,
        sender: UUID,
        max_backlog: int,
        idempotency: IdempotencyRecord | None = None,
        checked: bool = True,
        in_outbox: bool = True,
    ) -> "SendWrite":
        """The write of one composed send."""
        return cls(
            outgoing.messages,
            [inbox_message(m) for m in outgoing.messages if m.to_agent_id is not None],
            [OutboxMessage.for_event(e) for e in outgoing.events],
            sender,
            max_backlog,
            idempotency,
            checked,
            in_outbox,
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


class SendWrites:
    """The group-commit kind of sends: one statement for a batch; per send, written or not."""

    single_statement = True

    async def write(self, conn: Connection, items: Sequence[SendWrite]) -> list[bool]:
        """Store every send whose parties are live and whose sender has room."""
        stmt = BatchStatement("uuid")
        owners: list[int] = []
        messages: list[Communication] = []
        outbox: list[OutboxMessage] = []
        outbox_owners: list[UUID] = []
        party_owners: list[int] = []
        parties: list[UUID] = []
        party_counts: list[int] = []
        adding: list[int] = []
        queued: dict[UUID, int] = {}  # the sender's messages in this batch so far
        for n, item in enumerate(items, start=1):
            owners += [n] * len(item.messages)
            messages += item.messages
            inbox = item.inbox if item.in_outbox else [None] * len(item.messages)
            for message, copy, event in zip(item.messages, inbox, item.events, strict=True):
                outbox += [copy, event] if copy else [event]
                outbox_owners += [message.communication_id] * (2 if copy else 1)
            live = (
                []
                if not item.checked
                else sorted({item.sender, *(m.to_agent_id for m in item.messages if m.to_agent_id)})
            )
            party_owners += [n] * len(live)
            party_counts.append(len(live))
            parties += live
            if item.checked:
                queued[item.sender] = queued.get(item.sender, 0) + len(item.messages)
            adding.append(queued.get(item.sender, 0))
        groups = stmt.unnest(
            "g",
            {
                "sender": ([i.sender for i in items], "uuid"),
                "checked": ([i.checked for i in items], "bool"),
                "adding": (adding, "int"),
                "max_backlog": ([i.max_backlog for i in items], "int"),
                "parties": (party_counts, "int"),
            },
        )
        pairs = stmt.unnest("p", {"owner": (party_owners, "int"), "agent_id": (parties, "uuid")})
        everyone = stmt.array(sorted(set(parties)), "uuid")
        before = [
            f"""live AS (SELECT agent_id FROM agents
                WHERE agent_id = ANY({everyone}) AND status <> 'TERMINATED'
                ORDER BY agent_id FOR SHARE)""",
            f"""kept AS (SELECT g.n FROM {groups}
                WHERE NOT g.checked
                   OR ((SELECT count(*) FROM {pairs} JOIN live USING (agent_id)
                        WHERE p.owner = g.n) = g.parties
                       AND (SELECT sender_backlog_room(g.sender, g.adding, g.max_backlog))))""",
        ]
        source = stmt.unnest("m", {"owner": (owners, "int"), **_message_columns(messages)})
        main = f"""INSERT INTO communications (communication_id, broadcast_id, from_agent_id,
                       to_agent_id, project_id, type, content, correlation_id, reply_to, ttl_s,
                       expires_at, status, status_reason, created_at, updated_at)
                   SELECT m.id, m.bid, m.frm, m.dst, m.prj, m.typ, m.cnt::jsonb, m.cor, m.rep,
                          m.ttl, m.exp, m.st, m.why, m.at, m.at
                   FROM {source}
                   WHERE m.owner IN (SELECT n FROM kept) ORDER BY m.n
                   ON CONFLICT (communication_id) DO NOTHING
                   RETURNING communication_id AS key"""
        stmt.with_outbox(outbox_owners, outbox)
        keyed = [(i.messages[0].communication_id, i.idempotency) for i in items if i.idempotency]
        stmt.with_idempotency([k for k, _ in keyed], [r for _, r in keyed if r])
        written = await stmt.touched(conn, main, before=before)
        return [item.messages[0].communication_id in written for item in items]


SEND_WRITES = SendWrites()
