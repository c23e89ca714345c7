"""The tasks repository: tasks, their assignments (via the outbox) and events.

A new task is stored only while its agent is ACTIVE (the agent row is held ``FOR SHARE`` so a
racing pause or terminate waits). Every later change is written only on the revision it was
decided from, so two reports racing for one task never both apply: that is also what makes a
question's on_timeout apply once, whichever instances sweep (only one write on the revision
they read succeeds). A task's pending question and its answers are columns of its row
(``input_request``, ``input_answers``), written with its status and event.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from agent_orchestrator.contracts.subjects import task_subject
from agent_orchestrator.contracts.tasks import Task, TaskStatus
from agent_orchestrator.domain.agents import AgentRef
from agent_orchestrator.domain.tasks import TaskChange, not_found
from agent_orchestrator.storage.agents import AGENT_REF_COLUMNS, agent_ref
from agent_orchestrator.storage.atomic import IdempotencyRecord
from agent_orchestrator.storage.group_commit import GroupCommit, GroupCommitStats
from agent_orchestrator.storage.group_read import GroupRead
from agent_orchestrator.storage.postgres import Database, translate_errors
from agent_orchestrator.storage.stream_positions import StreamPositions
from agent_orchestrator.storage.task_writes import (
    INSERT_TASKS,
    TASK_COLUMN_TYPES,
    UPDATE_TASKS,
    TaskWrite,
    assignment_message,
)

__all__ = ["StoredTask", "TaskRepository", "TaskWrite", "assignment_message"]

COLUMN_NAMES = tuple(TASK_COLUMN_TYPES)
COLUMNS = ", ".join(COLUMN_NAMES)
_T_COLUMNS = ", ".join(f"t.{name}" for name in COLUMN_NAMES)
OPEN = "('QUEUED', 'RUNNING', 'INPUT_REQUIRED')"
"""Statuses of a task that has not ended (SQL)."""
DUE = "('RUNNING', 'INPUT_REQUIRED')"
"""Statuses whose ``deadline_at`` the timeout sweep watches (SQL)."""

TASK_POSITIONS = StreamPositions("tasks", "task_id", f"status NOT IN {OPEN}", "message_id")
RECORD_TASK_SEQUENCES = TASK_POSITIONS.hook(task_subject(""))
"""Lets the outbox relay record where each assignment landed in AGENT_TASKS."""


@dataclass(frozen=True)
class StoredTask:
    """A task, the revision it was read at, and its agent as it is now."""

    task: Task
    revision: int
    agent: AgentRef
    max_concurrent_tasks: int | None = None
    """The agent's ``configuration.tasks.max_concurrent_tasks`` (None: no limit)."""


def _task(row: asyncpg.Record) -> Task:
    return Task.model_validate({name: row[name] for name in COLUMN_NAMES})


def _stored(row: asyncpg.Record) -> StoredTask:
    task = _task(row)
    agent = agent_ref(row, task.agent_id, task.project_id)
    return StoredTask(task, row["revision"], agent, row["a_max_tasks"])


class TaskRepository:
    """Reads and atomic writes of tasks."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._reads: GroupRead[UUID, StoredTask] = GroupRead(self._fetch_many)
        # Task writes have writers of their own, one per kind: every batch is one statement
        # without BEGIN/COMMIT, never mixed with other kinds in a transaction.
        self._inserts = GroupCommit(lambda: db.pool, writers=1)
        self._updates = GroupCommit(lambda: db.pool, writers=1)

    @property
    def write_stats(self) -> tuple[GroupCommitStats, GroupCommitStats]:
        """Statements run and writes done by the insert and the update writer."""
        return self._inserts.stats, self._updates.stats

    async def insert(self, change: TaskChange, *, idempotency: IdempotencyRecord | None) -> bool:
        """Store a new task with its event and first assignment; False, storing nothing, if
        its agent is no longer ACTIVE. Concurrent inserts share one statement."""
        return await self.insert_write(TaskWrite.of(change, idempotency=idempotency))

    @translate_errors
    async def insert_write(self, write: TaskWrite) -> bool:
        """``insert`` of a write built by the caller (who publishes its encoded assignment
        after the commit)."""
        assert write.change.assignment is not None
        return await self._inserts.submit(INSERT_TASKS, write)

    @translate_errors
    async def save(
        self,
        change: TaskChange,
        *,
        revision: int,
        taken: bool = False,
        idempotency: IdempotencyRecord | None = None,
    ) -> bool:
        """Store a changed task if it is still at ``revision``; False if it moved on.
        Concurrent saves share one statement.

        ``taken``: its worker acknowledges the assignment, so it leaves the stream by itself.
        """
        write = TaskWrite.of(change, idempotency=idempotency, revision=revision, taken=taken)
        return await self._updates.submit(UPDATE_TASKS, write)

    @translate_errors
    async def find(self, task_id: UUID) -> StoredTask | None:
        """One task with its agent, or None (concurrent finds share one query)."""
        return await self._reads.get(task_id)

    async def _fetch_many(self, task_ids: list[UUID]) -> dict[UUID, StoredTask]:
        rows = await self._fetch_stored("t.task_id = ANY($1::uuid[])", task_ids)
        return {stored.task.task_id: stored for stored in rows}

    async def get(self, task_id: UUID) -> StoredTask:
        """One task with its agent, or NotFound."""
        found = await self.find(task_id)
        if found is None:
            raise not_found(task_id)
        return found

    @translate_errors
    async def page(
        self,
        *,
        agent_id: UUID | None,
        project_id: str | None,
        status: TaskStatus | None,
        limit: int,
        before: UUID | None,
        context_id: str | None = None,
    ) -> list[Task]:
        """Up to ``limit`` tasks matching the filters, newest first, older than ``before``.

        The status is written into the query (it is one of TaskStatus) so that the inbox,
        ``status = 'INPUT_REQUIRED'`` per project, reads its own small index."""
        by_status = "TRUE" if status is None else f"status = '{TaskStatus(status).value}'"
        rows = await self._db.pool.fetch(
            f"""SELECT {COLUMNS} FROM tasks
                WHERE ($1::uuid IS NULL OR agent_id = $1)
                  AND ($2::text IS NULL OR project_id = $2)
                  AND {by_status}
                  AND ($3::uuid IS NULL OR task_id < $3)
                  AND ($5::text IS NULL OR context_id = $5)
                ORDER BY task_id DESC LIMIT $4""",
            agent_id,
            project_id,
            before,
            limit,
            context_id,
        )
        return [_task(row) for row in rows]

    @translate_errors
    async def overdue(self, now: datetime, *, limit: int) -> list[StoredTask]:
        """RUNNING tasks past their deadline, and INPUT_REQUIRED ones past their question's,
        earliest first."""
        return await self._fetch_stored(
            f"t.status IN {DUE} AND t.deadline_at <= $1 ORDER BY t.deadline_at LIMIT $2",
            now,
            limit,
        )

    @translate_errors
    async def open_tasks_of(self, agent_id: UUID, *, limit: int) -> list[StoredTask]:
        """The agent's QUEUED, RUNNING and INPUT_REQUIRED tasks."""
        return await self._fetch_stored(
            f"t.agent_id = $1 AND t.status IN {OPEN} LIMIT $2", agent_id, limit
        )

    @translate_errors
    async def busy_count(self, agent_id: UUID) -> int:
        """How many of the agent's tasks are RUNNING or INPUT_REQUIRED (for its tasks policy:
        ``task_input.admit``)."""
        count: int = await self._db.pool.fetchval(
            "SELECT count(*) FROM tasks WHERE agent_id = $1 AND status IN ('RUNNING', "
            "'INPUT_REQUIRED')",
            agent_id,
        )
        return count

    async def ended_in_stream(self, *, limit: int) -> list[tuple[UUID, int]]:
        """(task id, stream sequence) of ended tasks whose assignment may still be waiting."""
        return await TASK_POSITIONS.ended_in_stream(self._db, limit=limit)

    async def forget_stream_seqs(self, removed: list[tuple[UUID, int]]) -> None:
        """Note that these assignments are gone from AGENT_TASKS."""
        await TASK_POSITIONS.forget(self._db, removed)

    async def _fetch_stored(self, where: str, *args: Any) -> list[StoredTask]:
        rows = await self._db.pool.fetch(
            f"""SELECT {_T_COLUMNS}, t.revision, {AGENT_REF_COLUMNS},
                       (a.configuration -> 'tasks' ->> 'max_concurrent_tasks')::int
                           AS a_max_tasks
                FROM tasks t LEFT JOIN agents a ON a.agent_id = t.agent_id
                WHERE {where}""",
            *args,
        )
        return [_stored(row) for row in rows]
