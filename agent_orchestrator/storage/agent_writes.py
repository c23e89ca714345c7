"""Agent writes as group-commit kinds: inserts, guarded updates and deletes of many callers in
one statement each, with their transitions, outbox and idempotency rows."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from uuid import UUID

from agent_orchestrator.contracts.agents import Agent, Transition
from agent_orchestrator.storage.atomic import IdempotencyRecord, OutboxMessage
from agent_orchestrator.storage.batch_sql import BatchStatement
from agent_orchestrator.storage.group_commit import Connection

AGENT_COLUMN_TYPES: dict[str, str] = {
    "agent_id": "uuid",
    "project_id": "text",
    "name": "text",
    "type": "text",
    "description": "text",
    "template_id": "uuid",
    "template_version": "int",
    "configuration": "jsonb",
    "prompt_template": "text",
    "metadata": "jsonb",
    "status": "text",
    "status_reason": "text",
    "version": "int",
    "created_at": "timestamptz",
    "updated_at": "timestamptz",
}
"""The columns of table ``agents`` with their SQL types, each named as its ``Agent`` field."""

UPDATED_COLUMNS = (
    "name",
    "description",
    "configuration",
    "prompt_template",
    "metadata",
    "status",
    "status_reason",
    "version",
    "updated_at",
)
"""What an agent update may change."""


@dataclass(frozen=True)
class AgentWrite:
    """One caller's agent change: the row, and what goes with it if the row is written."""

    agent: Agent
    previous_version: int = 0
    """The version the row must still have (updates and deletes)."""
    transition: Transition | None = None
    outbox: list[OutboxMessage] = field(default_factory=list)
    idempotency: IdempotencyRecord | None = None

    @property
    def agent_id(self) -> UUID:
        """The agent's id."""
        return self.agent.agent_id


@dataclass(frozen=True)
class AgentDelete:
    """One caller's agent deletion, if the agent is still at ``previous_version``."""

    agent_id: UUID
    previous_version: int
    outbox: list[OutboxMessage] = field(default_factory=list)
    idempotency: IdempotencyRecord | None = None
    transition: None = None


def _companions(
    st: BatchStatement, items: Sequence[AgentWrite | AgentDelete], keys: Sequence[object]
) -> None:
    with_transition = [(k, i) for k, i in zip(keys, items, strict=True) if i.transition]
    st.with_transitions(
        [k for k, _ in with_transition],
        [(i.agent_id, i.transition) for _, i in with_transition if i.transition],
    )
    messages = [(k, m) for k, i in zip(keys, items, strict=True) for m in i.outbox]
    st.with_outbox([k for k, _ in messages], [m for _, m in messages])
    keyed = [(k, i.idempotency) for k, i in zip(keys, items, strict=True) if i.idempotency]
    st.with_idempotency([k for k, _ in keyed], [r for _, r in keyed if r])


def _columns(
    items: Sequence[AgentWrite], names: Sequence[str]
) -> dict[str, tuple[Sequence[object], str]]:
    return {
        name: ([getattr(i.agent, name) for i in items], AGENT_COLUMN_TYPES[name]) for name in names
    }


VERSION_GUARD = "a.agent_id = u.agent_id AND a.version = u.previous_version RETURNING u.n AS key"
"""Rows of ``agents a`` still at the item's ``previous_version``; returns the item's ordinal."""


async def _guarded(
    conn: Connection, st: BatchStatement, items: Sequence[AgentWrite | AgentDelete], main: str
) -> list[bool]:
    """Run a version-guarded ``main`` with the items' companions; whether each was written."""
    ordinals = list(range(1, len(items) + 1))
    _companions(st, items, ordinals)
    touched = await st.touched(conn, main)
    return [n in touched for n in ordinals]


class InsertAgents:
    """New agents; result None (a taken agent id or Idempotency-Key raises)."""

    single_statement = True

    async def write(self, conn: Connection, items: Sequence[AgentWrite]) -> list[None]:
        st = BatchStatement(key_cast="uuid")
        source = st.unnest("u", _columns(items, list(AGENT_COLUMN_TYPES)))
        names = ", ".join(AGENT_COLUMN_TYPES)
        main = (
            f"INSERT INTO agents ({names}) SELECT {', '.join('u.' + c for c in AGENT_COLUMN_TYPES)}"
            f" FROM {source} ORDER BY u.n RETURNING agent_id AS key"
        )
        _companions(st, items, [i.agent.agent_id for i in items])
        await st.touched(conn, main)
        return [None] * len(items)


class UpdateAgents:
    """Changed agents, each if still at its ``previous_version``; result: whether it was."""

    single_statement = True

    async def write(self, conn: Connection, items: Sequence[AgentWrite]) -> list[bool]:
        st = BatchStatement()
        columns = _columns(items, ["agent_id", *UPDATED_COLUMNS])
        columns["previous_version"] = ([i.previous_version for i in items], "int")
        source = st.unnest("u", columns)
        assignments = ", ".join(f"{c} = u.{c}" for c in UPDATED_COLUMNS)
        main = f"UPDATE agents a SET {assignments} FROM {source} WHERE {VERSION_GUARD}"
        return await _guarded(conn, st, items, main)


class DeleteAgents:
    """Deleted agents (with their history), each if still at ``previous_version``."""

    single_statement = True

    async def write(self, conn: Connection, items: Sequence[AgentDelete]) -> list[bool]:
        st = BatchStatement()
        source = st.unnest(
            "u",
            {
                "agent_id": ([i.agent_id for i in items], "uuid"),
                "previous_version": ([i.previous_version for i in items], "int"),
            },
        )
        main = f"DELETE FROM agents a USING {source} WHERE {VERSION_GUARD}"
        return await _guarded(conn, st, items, main)


INSERT_AGENTS = InsertAgents()
UPDATE_AGENTS = UpdateAgents()
DELETE_AGENTS = DeleteAgents()
