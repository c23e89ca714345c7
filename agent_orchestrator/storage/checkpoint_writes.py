"""Checkpoint records as a group-commit kind: many callers' records in one INSERT."""

from collections.abc import Sequence
from dataclasses import dataclass, field

from agent_orchestrator.contracts.checkpoints import Checkpoint
from agent_orchestrator.storage.atomic import IdempotencyRecord, OutboxMessage
from agent_orchestrator.storage.batch_sql import BatchStatement
from agent_orchestrator.storage.group_commit import Connection

CHECKPOINT_COLUMN_TYPES: dict[str, str] = {
    "checkpoint_id": "uuid",
    "agent_id": "uuid",
    "label": "text",
    "recoverable": "boolean",
    "state_revision": "bigint",
    "agent_status": "text",
    "agent_version": "int",
    "size_bytes": "int",
    "storage": "text",
    "scheduled": "boolean",
    "created_at": "timestamptz",
}
"""The columns of table ``checkpoints`` with their SQL types, named as ``Checkpoint`` fields."""


@dataclass(frozen=True)
class CheckpointWrite:
    """One caller's checkpoint record with its events and Idempotency-Key."""

    checkpoint: Checkpoint
    outbox: list[OutboxMessage] = field(default_factory=list)
    idempotency: IdempotencyRecord | None = None


class InsertCheckpoints:
    """Checkpoint records of existing agents; result False when the agent is gone."""

    single_statement = True

    async def write(self, conn: Connection, items: Sequence[CheckpointWrite]) -> list[bool]:
        st = BatchStatement(key_cast="uuid")
        source = st.unnest(
            "u",
            {
                name: ([getattr(i.checkpoint, name) for i in items], cast)
                for name, cast in CHECKPOINT_COLUMN_TYPES.items()
            },
        )
        names = ", ".join(CHECKPOINT_COLUMN_TYPES)
        selected = ", ".join(f"u.{name}" for name in CHECKPOINT_COLUMN_TYPES)
        main = (
            f"INSERT INTO checkpoints ({names}) SELECT {selected} FROM {source} "
            "WHERE EXISTS (SELECT 1 FROM agents a WHERE a.agent_id = u.agent_id) "
            "ORDER BY u.n RETURNING checkpoint_id AS key"
        )
        keys = [i.checkpoint.checkpoint_id for i in items]
        messages = [(i.checkpoint.checkpoint_id, m) for i in items for m in i.outbox]
        st.with_outbox([k for k, _ in messages], [m for _, m in messages])
        keyed = [(i.checkpoint.checkpoint_id, i.idempotency) for i in items if i.idempotency]
        st.with_idempotency([k for k, _ in keyed], [r for _, r in keyed if r])
        touched = await st.touched(conn, main)
        return [key in touched for key in keys]


INSERT_CHECKPOINTS = InsertCheckpoints()
