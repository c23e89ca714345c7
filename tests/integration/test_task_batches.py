"""Batched task writes against a real PostgreSQL: concurrent inserts and claims share
statements, and each caller still gets its own outcome (an agent no longer ACTIVE, a task
that moved on, a taken Idempotency-Key fail only their own caller)."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from uuid import UUID

import asyncpg
import pytest_asyncio

from agent_orchestrator.client import OrchestratorClient
from agent_orchestrator.contracts import subjects
from agent_orchestrator.contracts.tasks import ExecuteTask, TaskStatus
from agent_orchestrator.domain import tasks as rules
from agent_orchestrator.domain.agents import AgentRef
from agent_orchestrator.storage.agents import AgentRepository
from agent_orchestrator.storage.atomic import IdempotencyKeyTaken, IdempotencyRecord
from agent_orchestrator.storage.postgres import Database
from agent_orchestrator.storage.tasks import TaskRepository
from tests.support.agents import sdk_agent
from tests.support.calls import ok
from tests.support.servers import ServerUrls

DEFAULTS = rules.TaskDefaults(timeout_s=600, max_attempts=3, heartbeat_s=60)


@pytest_asyncio.fixture
async def database(servers: ServerUrls) -> AsyncIterator[Database]:
    """A pool of its own, so its group commit's stats are this test's."""
    db = Database(servers.database_url, min_size=1, max_size=4)
    await db.open()
    yield db
    await db.close()


async def _active(client: OrchestratorClient, database: Database) -> AgentRef:
    agent_id = await sdk_agent(client)
    return AgentRef.of(await AgentRepository(database).get(UUID(agent_id)))


def _queued(agent: AgentRef, n: int = 0) -> rules.TaskChange:
    body = ExecuteTask(agent_id=agent.agent_id, input={"n": n})
    return rules.queue(body, agent, DEFAULTS, datetime.now(UTC))


async def _events(db: asyncpg.Pool, task_id: UUID) -> list[str]:
    rows = await db.fetch(
        "SELECT subject FROM outbox WHERE subject LIKE 'agent.event.%' "
        "AND strpos(convert_from(payload, 'UTF8'), $1) > 0 ORDER BY id",
        str(task_id),
    )
    return [row["subject"].rsplit(".", 1)[1] for row in rows]


async def test_concurrent_executes_share_statements(
    client: OrchestratorClient, database: Database, db: asyncpg.Pool
) -> None:
    agent = await _active(client, database)
    tasks = TaskRepository(database)
    changes = [_queued(agent, n) for n in range(30)]
    written = await asyncio.gather(*(tasks.insert(c, idempotency=None) for c in changes))
    assert written == [True] * 30
    inserts, _ = tasks.write_stats
    assert inserts.items == 30
    assert inserts.batches < 30
    for change in changes:
        stored = await tasks.get(change.task.task_id)
        assert stored.task.status is TaskStatus.QUEUED
        assert stored.task.input == change.task.input
        assert await _events(db, change.task.task_id) == ["task_queued"]
    assignments = await db.fetchval(
        "SELECT count(*) FROM outbox WHERE subject = $1", subjects.task_subject(str(agent.agent_id))
    )
    assert assignments == 30


async def test_an_insert_for_an_agent_no_longer_active_fails_only_its_caller(
    client: OrchestratorClient, database: Database, db: asyncpg.Pool
) -> None:
    active, paused = await _active(client, database), await _active(client, database)
    await client.change(subjects.AGENT_PAUSE, str(paused.agent_id))
    tasks = TaskRepository(database)
    kept, refused = _queued(active), _queued(paused)  # decided while both were ACTIVE
    assert await asyncio.gather(
        tasks.insert(kept, idempotency=None), tasks.insert(refused, idempotency=None)
    ) == [True, False]
    assert await tasks.find(refused.task.task_id) is None
    assert await _events(db, refused.task.task_id) == []
    assert await _events(db, kept.task.task_id) == ["task_queued"]


async def test_two_claims_of_one_task_in_a_batch_start_it_once(
    client: OrchestratorClient, database: Database, db: asyncpg.Pool
) -> None:
    agent = await _active(client, database)
    tasks = TaskRepository(database)
    others = [_queued(agent, n) for n in range(5)]
    target = _queued(agent)
    for change in [target, *others]:
        assert await tasks.insert(change, idempotency=None)
    stored = {c.task.task_id: await tasks.get(c.task.task_id) for c in [target, *others]}

    def claim(task_id: UUID) -> rules.TaskChange:
        s = stored[task_id]
        change = rules.start(s.task, 1, s.agent, DEFAULTS, datetime.now(UTC))
        assert change is not None
        return change

    first, second = claim(target.task.task_id), claim(target.task.task_id)
    revision = stored[target.task.task_id].revision
    outcomes = await asyncio.gather(
        tasks.save(first, revision=revision, taken=True),
        tasks.save(second, revision=revision, taken=True),
        *(
            tasks.save(claim(c.task.task_id), revision=stored[c.task.task_id].revision, taken=True)
            for c in others
        ),
    )
    assert sorted(outcomes[:2]) == [False, True]
    assert outcomes[2:] == [True] * 5
    assert await _events(db, target.task.task_id) == ["task_queued", "task_started"]
    after = await tasks.get(target.task.task_id)
    assert after.task.status is TaskStatus.RUNNING
    assert after.revision == revision + 1
    assert (
        await db.fetchval("SELECT stream_seq FROM tasks WHERE task_id = $1", target.task.task_id)
        == 0
    )  # taken: its worker acknowledges the assignment
    for change in others:
        assert (await tasks.get(change.task.task_id)).task.status is TaskStatus.RUNNING


async def test_a_taken_idempotency_key_fails_only_its_caller(
    client: OrchestratorClient, database: Database
) -> None:
    agent = await _active(client, database)
    tasks = TaskRepository(database)
    key = f"batch-{agent.agent_id}"
    record = IdempotencyRecord(subjects.AGENT_EXECUTE, key, "fp", {"n": 1})
    assert await tasks.insert(_queued(agent), idempotency=record)
    again, other = _queued(agent), _queued(agent)
    outcomes = await asyncio.gather(
        tasks.insert(again, idempotency=record),
        tasks.insert(other, idempotency=None),
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], IdempotencyKeyTaken)
    assert outcomes[1] is True
    assert await tasks.find(again.task.task_id) is None
    assert (await tasks.get(other.task.task_id)).task.status is TaskStatus.QUEUED


async def test_racing_executes_with_one_idempotency_key_queue_one_task(
    client: OrchestratorClient, db: asyncpg.Pool
) -> None:
    agent_id = await sdk_agent(client)
    key = {"Idempotency-Key": str(uuid.uuid4())}
    body = {"agent_id": agent_id, "input": {"text": "once"}}
    replies = await asyncio.gather(
        *(ok(client.nc, subjects.AGENT_EXECUTE, body, headers=key) for _ in range(10))
    )
    assert len({reply["task_id"] for reply in replies}) == 1
    count = await db.fetchval("SELECT count(*) FROM tasks WHERE agent_id = $1", UUID(agent_id))
    assert count == 1
