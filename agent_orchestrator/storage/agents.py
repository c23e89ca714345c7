"""The agents repository: agents, their transitions, and their outbox and idempotency rows."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from agent_orchestrator.contracts.agents import Agent, AgentStatus, Transition
from agent_orchestrator.domain.agents import AgentRef, Change, not_found
from agent_orchestrator.storage.agent_writes import (
    AGENT_COLUMN_TYPES,
    DELETE_AGENTS,
    INSERT_AGENTS,
    UPDATE_AGENTS,
    AgentDelete,
    AgentWrite,
)
from agent_orchestrator.storage.atomic import IdempotencyRecord, OutboxMessage
from agent_orchestrator.storage.group_read import GroupRead
from agent_orchestrator.storage.postgres import Database, translate_errors

AGENT_COLUMN_NAMES = tuple(AGENT_COLUMN_TYPES)
"""The columns of table ``agents``, each named as the field of ``Agent`` it holds."""
AGENT_COLUMNS = ", ".join(AGENT_COLUMN_NAMES)


AGENT_REF_COLUMNS = "a.project_id AS a_project_id, a.status AS a_status, a.version AS a_version"
"""Select these from ``agents a`` LEFT JOINed to a row that names an agent; see agent_ref."""


def agent_ref(row: asyncpg.Record, agent_id: UUID, project_id: str | None) -> AgentRef:
    """The agent of a row selected with AGENT_REF_COLUMNS; a deleted agent is TERMINATED at
    version 0, in ``project_id`` (the project the row recorded)."""
    if row["a_version"] is None:
        return AgentRef(agent_id, project_id, AgentStatus.TERMINATED, 0)
    return AgentRef(agent_id, row["a_project_id"], AgentStatus(row["a_status"]), row["a_version"])


@dataclass(frozen=True)
class AgentFilter:
    """What agent.list may filter on."""

    project_id: str | None = None
    status: AgentStatus | None = None
    type: str | None = None
    template_id: UUID | None = None
    name: str | None = None


_FILTER = """($1::text IS NULL OR project_id = $1)
                  AND ($2::text IS NULL OR status = $2)
                  AND ($3::text IS NULL OR type = $3)
                  AND ($4::uuid IS NULL OR template_id = $4)
                  AND ($5::text IS NULL OR strpos(lower(name), lower($5)) > 0)"""
"""AgentFilter as SQL, on parameters $1 to $5 (see _filter_values)."""


def _filter_values(where: AgentFilter) -> list[Any]:
    return [where.project_id, where.status, where.type, where.template_id, where.name]


def _agent(row: asyncpg.Record) -> Agent:
    return Agent.model_validate(dict(row))


class AgentRepository:
    """Reads and atomic writes of agents in PostgreSQL."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._reads: GroupRead[UUID, Agent] = GroupRead(self._fetch)

    @translate_errors
    async def get(self, agent_id: UUID) -> Agent:
        """The agent, or NotFound (concurrent gets share one query: see group_read)."""
        agent = await self._reads.get(agent_id)
        if agent is None:
            raise not_found(agent_id)
        return agent

    async def _fetch(self, agent_ids: list[UUID]) -> dict[UUID, Agent]:
        rows = await self._db.pool.fetch(
            f"SELECT {AGENT_COLUMNS} FROM agents WHERE agent_id = ANY($1::uuid[])", agent_ids
        )
        return {row["agent_id"]: _agent(row) for row in rows}

    @translate_errors
    async def page(self, where: AgentFilter, *, limit: int, before: UUID | None) -> list[Agent]:
        """Up to ``limit`` agents matching ``where``, newest first, older than ``before``."""
        rows = await self._db.pool.fetch(
            f"""SELECT {AGENT_COLUMNS} FROM agents
                WHERE {_FILTER}
                  AND ($6::uuid IS NULL OR agent_id < $6)
                ORDER BY agent_id DESC LIMIT $7""",
            *_filter_values(where),
            before,
            limit,
        )
        return [_agent(row) for row in rows]

    @translate_errors
    async def counts(self, where: AgentFilter) -> list[tuple[AgentStatus, int | None, int]]:
        """How many agents match ``where`` (its status ignored), by status and template
        version: ``(status, template_version, count)`` rows."""
        rows = await self._db.pool.fetch(
            f"""SELECT status, template_version, count(*) AS n FROM agents
                WHERE {_FILTER}
                GROUP BY status, template_version""",
            *_filter_values(
                AgentFilter(where.project_id, None, where.type, where.template_id, where.name)
            ),
        )
        return [(AgentStatus(r["status"]), r["template_version"], r["n"]) for r in rows]

    @translate_errors
    async def history(self, agent_id: UUID, *, limit: int, after: int) -> list[Transition]:
        """Transitions after version ``after``, oldest first; NotFound for an unknown agent."""
        rows = await self._db.pool.fetch(
            """SELECT a.agent_id, t.version, t.from_status, t.to_status, t.reason, t.actor, t.at
               FROM agents a LEFT JOIN agent_transitions t
                 ON t.agent_id = a.agent_id AND t.version > $2
               WHERE a.agent_id = $1
               ORDER BY t.version LIMIT $3""",
            agent_id,
            after,
            limit,
        )
        if not rows:
            raise not_found(agent_id)
        return [
            Transition(
                from_status=r["from_status"],
                to_status=r["to_status"],
                reason=r["reason"],
                actor=r["actor"],
                at=r["at"],
                version=r["version"],
            )
            for r in rows
            if r["version"] is not None
        ]

    @translate_errors
    async def last_transition_at(self, agent_id: UUID) -> datetime | None:
        """When the agent last changed status (None for an unknown agent)."""
        at: datetime | None = await self._db.pool.fetchval(
            "SELECT max(at) FROM agent_transitions WHERE agent_id = $1", agent_id
        )
        return at

    @translate_errors
    async def transitions_since(
        self, agent_id: UUID, *, to_status: AgentStatus, actor: str, since: datetime
    ) -> int:
        """How often ``actor`` moved the agent to ``to_status`` since ``since``."""
        count = await self._db.pool.fetchval(
            """SELECT count(*) FROM agent_transitions
               WHERE agent_id = $1 AND to_status = $2 AND actor = $3 AND at >= $4""",
            agent_id,
            to_status,
            actor,
            since,
        )
        return int(count)

    @translate_errors
    async def insert(
        self,
        change: Change,
        *,
        outbox: list[OutboxMessage],
        idempotency: IdempotencyRecord | None = None,
    ) -> None:
        """Store a new agent with its creation record and events (group-committed)."""
        write = AgentWrite(change.agent, 0, change.transition, outbox, idempotency)
        await self._db.group_commit.submit(INSERT_AGENTS, write)

    @translate_errors
    async def save(
        self,
        change: Change,
        *,
        previous_version: int,
        outbox: list[OutboxMessage],
        idempotency: IdempotencyRecord | None = None,
    ) -> bool:
        """Store a changed agent if it is still at ``previous_version``; False if it moved on."""
        write = AgentWrite(change.agent, previous_version, change.transition, outbox, idempotency)
        return await self._db.group_commit.submit(UPDATE_AGENTS, write)

    @translate_errors
    async def delete(
        self,
        agent_id: UUID,
        *,
        previous_version: int,
        outbox: list[OutboxMessage],
        idempotency: IdempotencyRecord | None = None,
    ) -> bool:
        """Delete an agent (and its history) if still at ``previous_version``."""
        write = AgentDelete(agent_id, previous_version, outbox, idempotency)
        return await self._db.group_commit.submit(DELETE_AGENTS, write)
