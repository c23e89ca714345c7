"""Task writes as group-commit kinds: the new tasks of many ``agent.execute`` calls, and the
revision-guarded changes of many ``task.start`` / ``task.complete`` / ``task.fail`` / … calls,
each in one ``unnest`` statement with their outbox and idempotency rows (see batching.md).

Per item: a new task is written only while its agent is ACTIVE (the agent rows are held
``FOR SHARE`` so a racing pause or terminate waits); a change only while the task is still at
the revision it was decided from. Either way the others of the batch are written regardless,
and a caller whose condition failed writes nothing (no event, no idempotency record).
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from agent_orchestrator.contracts.subjects import task_subject
from agent_orchestrator.contracts.tasks import Task
from agent_orchestrator.domain.tasks import TaskChange, assignment_id
from agent_orchestrator.storage.atomic import AtomicWrite, IdempotencyRecord, OutboxMessage
from agent_orchestrator.storage.batch_sql import BatchStatement
from agent_orchestrator.storage.group_commit import Connection
from agent_orchestrator.storage.stream_positions import TAKEN

TASK_COLUMN_TYPES: dict[str, str] = {
    "task_id": "uuid",
    "agent_id": "uuid",
    "project_id": "text",
    "status": "text",
    "status_reason": "text",
    "input": "jsonb",
    "parameters": "jsonb",
    "result": "jsonb",
    "error": "jsonb",
    "progress": "int",
    "progress_message": "text",
    "attempts": "int",
    "max_attempts": "int",
    "timeout_s": "int",
    "deadline_at": "timestamptz",
    "created_at": "timestamptz",
    "updated_at": "timestamptz",
    "started_at": "timestamptz",
    "finished_at": "timestamptz",
    "input_request": "jsonb",
    "input_answers": "jsonb",
    "input_wait_s": "int",
    "context_id": "text",
}
"""The columns of table ``tasks`` with their SQL types, each named as its ``Task`` field."""

_CHANGED_COLUMNS = [name for name in TASK_COLUMN_TYPES if name != "task_id"]
TASK_SUBJECT_PREFIX = task_subject("")


def row_values(task: Task) -> dict[str, Any]:
    """The task's column values, as the ``tasks`` row holds them."""
    values = {name: getattr(task, name) for name in TASK_COLUMN_TYPES}
    values["input_request"] = task.input_request and task.input_request.model_dump(mode="json")
    values["input_answers"] = [answer.model_dump(mode="json") for answer in task.input_answers]
    return values


def change_outbox(change: TaskChange) -> list[OutboxMessage]:
    """The change's event, then its assignment on ``agent.task.<agent_id>`` if it queues an
    attempt."""
    events = [OutboxMessage.for_event(change.event)] if change.event else []
    return events + assignment_message(change)


def assignment_message(change: TaskChange) -> list[OutboxMessage]:
    """The change's assignment on ``agent.task.<agent_id>``, if it queues an attempt."""
    if change.assignment is None:
        return []
    a = change.assignment
    return [OutboxMessage.of(assignment_id(a.task_id, a.attempt), task_subject(str(a.agent_id)), a)]


@dataclass(frozen=True)
class TaskWrite:
    """One caller's task write: the change, and for an update the revision it was decided
    from and whether its worker took the assignment (and acknowledges it itself)."""

    change: TaskChange
    idempotency: IdempotencyRecord | None = None
    revision: int = 0
    taken: bool = False
    outbox: tuple[OutboxMessage, ...] = ()

    @classmethod
    def of(
        cls,
        change: TaskChange,
        *,
        idempotency: IdempotencyRecord | None = None,
        revision: int = 0,
        taken: bool = False,
    ) -> "TaskWrite":
        """The write of ``change`` with its outbox rows, encoded once."""
        return cls(change, idempotency, revision, taken, tuple(change_outbox(change)))

    @property
    def assignments(self) -> list[OutboxMessage]:
        """The assignment among the outbox rows (to publish right after the commit)."""
        return [m for m in self.outbox if m.subject.startswith(TASK_SUBJECT_PREFIX)]

    @property
    def message_id(self) -> UUID | None:
        """The Nats-Msg-Id of the attempt the change queues, if it queues one."""
        a = self.change.assignment
        return None if a is None else assignment_id(a.task_id, a.attempt)


def _columns(
    items: Sequence[TaskWrite], names: Sequence[str]
) -> dict[str, tuple[Sequence[Any], str]]:
    """Column arrays; JSON columns as text, cast back by ``_value`` (asyncpg's array encoder
    takes a list element, such as ``input_answers``, for a sub-array, not a JSON value)."""
    rows = [row_values(i.change.task) for i in items]
    columns: dict[str, tuple[Sequence[Any], str]] = {}
    for name in names:
        values = [r[name] for r in rows]
        if TASK_COLUMN_TYPES[name] == "jsonb":
            columns[name] = ([None if v is None else json.dumps(v) for v in values], "text")
        else:
            columns[name] = (values, TASK_COLUMN_TYPES[name])
    return columns


def _value(name: str) -> str:
    """Column ``name`` of the unnested row ``u``, in its table type."""
    return f"u.{name}::jsonb" if TASK_COLUMN_TYPES.get(name) == "jsonb" else f"u.{name}"


def _companions(st: BatchStatement, items: Sequence[TaskWrite], keys: Sequence[object]) -> None:
    messages = [(k, m) for k, i in zip(keys, items, strict=True) for m in i.outbox]
    st.with_outbox([k for k, _ in messages], [m for _, m in messages])
    keyed = [(k, i.idempotency) for k, i in zip(keys, items, strict=True) if i.idempotency]
    st.with_idempotency([k for k, _ in keyed], [r for _, r in keyed if r])


def _placeholder(i: int, name: str) -> str:
    return f"${i}::jsonb" if TASK_COLUMN_TYPES[name] == "jsonb" else f"${i}"


def _one_insert(write: TaskWrite) -> AtomicWrite:
    """A lone new task: a one-row statement (for one item it costs PostgreSQL about half of
    the ``unnest`` form; from two items on the ``unnest`` form is cheaper per item)."""
    task, n = write.change.task, len(TASK_COLUMN_TYPES)
    values = row_values(task)
    one = AtomicWrite(
        f"""INSERT INTO tasks ({", ".join(TASK_COLUMN_TYPES)}, message_id)
            SELECT {", ".join(_placeholder(i, c) for i, c in enumerate(TASK_COLUMN_TYPES, 1))},
                   ${n + 1}
            WHERE (SELECT count(*) FROM (
                      SELECT 1 FROM agents WHERE agent_id = ${n + 2} AND status = 'ACTIVE'
                      FOR SHARE) AS active) = 1
            RETURNING task_id""",
        [*values.values(), write.message_id, task.agent_id],
    )
    return one.with_outbox(list(write.outbox)).with_idempotency(write.idempotency)


def _one_update(write: TaskWrite) -> AtomicWrite:
    """A lone change: a one-row statement (see ``_one_insert``)."""
    n = len(TASK_COLUMN_TYPES)
    sets = ", ".join(
        f"{c} = {_placeholder(i, c)}" for i, c in enumerate(TASK_COLUMN_TYPES, 1) if c != "task_id"
    )
    one = AtomicWrite(
        f"""UPDATE tasks SET {sets}, revision = revision + 1,
               message_id = COALESCE(${n + 1}::uuid, message_id),
               stream_seq = CASE WHEN ${n + 1}::uuid IS NOT NULL THEN NULL
                                 WHEN ${n + 2} THEN {TAKEN} ELSE stream_seq END
            WHERE task_id = $1 AND revision = ${n + 3}
            RETURNING task_id""",
        [*row_values(write.change.task).values(), write.message_id, write.taken, write.revision],
    )
    return one.with_outbox(list(write.outbox)).with_idempotency(write.idempotency)


class InsertTasks:
    """New tasks, each only while its agent is ACTIVE; result: whether it was stored."""

    single_statement = True

    async def write(self, conn: Connection, items: Sequence[TaskWrite]) -> list[bool]:
        if len(items) == 1:
            return [await _one_insert(items[0]).execute(conn)]
        st = BatchStatement(key_cast="uuid")
        columns = _columns(items, list(TASK_COLUMN_TYPES))
        columns["message_id"] = ([i.message_id for i in items], "uuid")
        source = st.unnest("u", columns)
        agents = st.array(sorted({i.change.task.agent_id for i in items}), "uuid")
        names = ", ".join(columns)
        main = (
            f"INSERT INTO tasks ({names}) SELECT {', '.join(_value(c) for c in columns)} "
            f"FROM {source}, (SELECT agent_id FROM agents WHERE agent_id = ANY({agents}) "
            "AND status = 'ACTIVE' ORDER BY agent_id FOR SHARE) AS live "
            "WHERE live.agent_id = u.agent_id ORDER BY u.n RETURNING task_id AS key"
        )
        keys = [i.change.task.task_id for i in items]
        _companions(st, items, keys)
        touched = await st.touched(conn, main)
        return [key in touched for key in keys]


class UpdateTasks:
    """Changed tasks, each only if still at its ``revision``; result: whether it was."""

    single_statement = True

    async def write(self, conn: Connection, items: Sequence[TaskWrite]) -> list[bool]:
        if len(items) == 1:
            return [await _one_update(items[0]).execute(conn)]
        st = BatchStatement()
        columns = _columns(items, list(TASK_COLUMN_TYPES))
        columns["message_id"] = ([i.message_id for i in items], "uuid")
        columns["taken"] = ([i.taken for i in items], "bool")
        columns["revision"] = ([i.revision for i in items], "int")
        ids = st.array([i.change.task.task_id for i in items], "uuid")
        source = st.unnest("u", columns)
        sets = ", ".join(f"{name} = {_value(name)}" for name in _CHANGED_COLUMNS)
        # Rows are locked in id order (the relay's hook does the same): no deadlock between
        # two batches over the same tasks.
        main = f"""UPDATE tasks t SET {sets}, revision = t.revision + 1,
                       message_id = COALESCE(u.message_id, t.message_id),
                       stream_seq = CASE WHEN u.message_id IS NOT NULL THEN NULL
                                         WHEN u.taken THEN {TAKEN} ELSE t.stream_seq END
                   FROM {source},
                        (SELECT task_id FROM tasks WHERE task_id = ANY({ids})
                         ORDER BY task_id FOR UPDATE) AS l
                   WHERE t.task_id = u.task_id AND l.task_id = u.task_id
                     AND t.revision = u.revision
                   RETURNING u.n AS key"""
        ordinals = list(range(1, len(items) + 1))
        _companions(st, items, ordinals)
        touched = await st.touched(conn, main)
        return [n in touched for n in ordinals]


INSERT_TASKS = InsertTasks()
UPDATE_TASKS = UpdateTasks()
