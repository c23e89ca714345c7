"""Group commit against a real PostgreSQL: concurrent writes share transactions, and each
caller still gets its own result or its own error."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import nats.aio.client
import pytest
import pytest_asyncio

from agent_orchestrator.contracts.agents import Agent, AgentStatus, Transition
from agent_orchestrator.domain.ids import new_id
from agent_orchestrator.service import Service
from agent_orchestrator.storage.agent_writes import (
    DELETE_AGENTS,
    INSERT_AGENTS,
    UPDATE_AGENTS,
    AgentDelete,
    AgentWrite,
)
from agent_orchestrator.storage.atomic import IdempotencyKeyTaken, IdempotencyRecord, OutboxMessage
from agent_orchestrator.storage.postgres import Database
from tests.support.servers import ServerUrls


@pytest_asyncio.fixture
async def database(
    service: Service, servers: ServerUrls, nc: nats.aio.client.Client
) -> AsyncIterator[Database]:
    """A pool of its own (migrated by the session's service), so its stats are this test's.

    The outbox rows these tests write go to ``test.gc.…``: a stream of their own takes them, so
    the session's relay publishes them like any other instead of stalling on them (and so
    delaying every other test's events)."""
    await nc.jetstream().add_stream(name="TEST_GROUP_COMMIT", subjects=["test.gc.>"])
    db = Database(servers.database_url, max_size=4)
    await db.open()
    yield db
    await db.close()


def _agent(name: str = "gc", **changes: object) -> Agent:
    now = datetime.now(UTC)
    agent = Agent(
        agent_id=new_id(),
        name=name,
        type="group-commit-test",
        status=AgentStatus.CREATED,
        version=1,
        created_at=now,
        updated_at=now,
        configuration={"k": [1, 2]},
    )
    return agent.model_copy(update=changes)


def _transition(version: int, to: AgentStatus, from_: AgentStatus | None) -> Transition:
    return Transition.model_validate(
        {"from": from_, "to": to, "actor": "test", "at": datetime.now(UTC), "version": version}
    )


def _created(agent: Agent, key: str | None = None) -> AgentWrite:
    event_id = new_id()
    outbox = [OutboxMessage(event_id, f"test.gc.{agent.agent_id}", b"{}")]
    idem = (
        IdempotencyRecord("test.gc", key, "fp", {"agent_id": str(agent.agent_id)}) if key else None
    )
    return AgentWrite(agent, 0, _transition(1, AgentStatus.CREATED, None), outbox, idem)


async def _count(db: asyncpg.Pool, sql: str, *args: object) -> int:
    return int(await db.fetchval(sql, *args))


async def test_concurrent_inserts_share_transactions(database: Database, db: asyncpg.Pool) -> None:
    agents = [_agent(f"gc-{i}") for i in range(40)]
    await asyncio.gather(
        *(database.group_commit.submit(INSERT_AGENTS, _created(a)) for a in agents)
    )

    stats = database.group_commit.stats
    assert stats.items == 40
    assert stats.batches < 40, "concurrent callers should have shared transactions"
    ids = [a.agent_id for a in agents]
    assert await _count(db, "SELECT count(*) FROM agents WHERE agent_id = ANY($1)", ids) == 40
    assert (
        await _count(db, "SELECT count(*) FROM agent_transitions WHERE agent_id = ANY($1)", ids)
        == 40
    )
    subjects = [f"test.gc.{a.agent_id}" for a in agents]
    assert await _count(db, "SELECT count(*) FROM outbox WHERE subject = ANY($1)", subjects) == 40
    stored = await db.fetchval("SELECT configuration FROM agents WHERE agent_id = $1", ids[0])
    assert stored == '{"k": [1, 2]}'


async def test_a_lone_write_is_a_batch_of_one(database: Database, db: asyncpg.Pool) -> None:
    agent = _agent()
    await database.group_commit.submit(INSERT_AGENTS, _created(agent))

    assert (database.group_commit.stats.batches, database.group_commit.stats.items) == (1, 1)
    assert await _count(db, "SELECT count(*) FROM agents WHERE agent_id = $1", agent.agent_id) == 1


async def test_a_version_conflict_fails_only_its_caller(
    database: Database, db: asyncpg.Pool
) -> None:
    agents = [_agent(f"v-{i}") for i in range(5)]
    await asyncio.gather(
        *(database.group_commit.submit(INSERT_AGENTS, _created(a)) for a in agents)
    )
    now = datetime.now(UTC)
    paused = _transition(2, AgentStatus.PAUSED, AgentStatus.CREATED)

    def update(agent: Agent, name: str) -> AgentWrite:
        changed = agent.model_copy(update={"name": name, "version": 2, "updated_at": now})
        return AgentWrite(changed, 1, paused, [OutboxMessage(new_id(), "test.gc.v", b"{}")])

    # Two callers change agents[0] from version 1 at once: exactly one may win.
    writes = [update(agents[0], "first"), update(agents[0], "second")]
    writes += [update(a, "other") for a in agents[1:]]
    results = await asyncio.gather(
        *(database.group_commit.submit(UPDATE_AGENTS, w) for w in writes)
    )

    assert sorted(results[:2]) == [False, True]
    assert results[2:] == [True] * 4
    winner = "first" if results[0] else "second"
    row = await db.fetchrow(
        "SELECT name, version FROM agents WHERE agent_id = $1", agents[0].agent_id
    )
    assert (row["name"], row["version"]) == (winner, 2)
    ids = [a.agent_id for a in agents]
    transitions = "SELECT count(*) FROM agent_transitions WHERE agent_id = ANY($1) AND version = 2"
    assert await _count(db, transitions, ids) == 5


async def test_a_taken_idempotency_key_fails_only_its_caller(
    database: Database, db: asyncpg.Pool
) -> None:
    key = str(new_id())
    twins = [_created(_agent("twin-a"), key), _created(_agent("twin-b"), key)]
    others = [_created(_agent(f"bystander-{i}")) for i in range(3)]

    results = await asyncio.gather(
        *(database.group_commit.submit(INSERT_AGENTS, w) for w in [*twins, *others]),
        return_exceptions=True,
    )

    assert sum(isinstance(r, IdempotencyKeyTaken) for r in results[:2]) == 1
    assert results[2:] == [None, None, None]
    ids = [w.agent.agent_id for w in [*twins, *others]]
    assert await _count(db, "SELECT count(*) FROM agents WHERE agent_id = ANY($1)", ids) == 4
    stored = "SELECT count(*) FROM idempotency_keys WHERE subject = 'test.gc' AND key = $1"
    assert await _count(db, stored, key) == 1


async def test_a_value_postgresql_refuses_fails_only_its_caller(
    database: Database, db: asyncpg.Pool
) -> None:
    bad = _created(_agent("nul \x00 byte"))
    good = [_created(_agent(f"fine-{i}")) for i in range(3)]

    results = await asyncio.gather(
        *(database.group_commit.submit(INSERT_AGENTS, w) for w in [bad, *good]),
        return_exceptions=True,
    )

    assert isinstance(results[0], asyncpg.DataError)
    assert results[1:] == [None, None, None]
    ids = [w.agent.agent_id for w in [bad, *good]]
    assert await _count(db, "SELECT count(*) FROM agents WHERE agent_id = ANY($1)", ids) == 3


async def test_a_caller_cancelled_before_its_batch_writes_nothing(
    database: Database, db: asyncpg.Pool
) -> None:
    first, second = _agent("first"), _agent("cancelled")
    task_a = asyncio.create_task(database.group_commit.submit(INSERT_AGENTS, _created(first)))
    await asyncio.sleep(0)  # a queued, the writer scheduled
    task_b = asyncio.create_task(database.group_commit.submit(INSERT_AGENTS, _created(second)))
    await asyncio.sleep(0)  # the writer took a's batch; b queued behind it
    task_b.cancel()
    await task_a
    with pytest.raises(asyncio.CancelledError):
        await task_b

    assert await _count(db, "SELECT count(*) FROM agents WHERE agent_id = $1", first.agent_id) == 1
    assert await _count(db, "SELECT count(*) FROM agents WHERE agent_id = $1", second.agent_id) == 0


async def test_deletes_are_guarded_by_version(database: Database, db: asyncpg.Pool) -> None:
    agents = [_agent(f"d-{i}") for i in range(3)]
    await asyncio.gather(
        *(database.group_commit.submit(INSERT_AGENTS, _created(a)) for a in agents)
    )

    results = await asyncio.gather(
        database.group_commit.submit(DELETE_AGENTS, AgentDelete(agents[0].agent_id, 1)),
        database.group_commit.submit(DELETE_AGENTS, AgentDelete(agents[1].agent_id, 7)),
        database.group_commit.submit(DELETE_AGENTS, AgentDelete(agents[2].agent_id, 1)),
    )

    assert results == [True, False, True]
    ids = [a.agent_id for a in agents]
    assert await _count(db, "SELECT count(*) FROM agents WHERE agent_id = ANY($1)", ids) == 1


async def test_writes_after_a_writer_stopped_and_while_two_are_busy_are_all_written(
    database: Database, db: asyncpg.Pool
) -> None:
    agents = [_agent(f"w-{i}") for i in range(30)]
    async with asyncio.timeout(30):
        for agent in agents[:5]:  # each starts a writer again after the last one stopped
            await database.group_commit.submit(INSERT_AGENTS, _created(agent))
        waves = [agents[5:15], agents[15:30]]  # the second wave queues while the first writes
        first = [
            asyncio.create_task(database.group_commit.submit(INSERT_AGENTS, _created(a)))
            for a in waves[0]
        ]
        await asyncio.sleep(0)
        second = [database.group_commit.submit(INSERT_AGENTS, _created(a)) for a in waves[1]]
        await asyncio.gather(*first, *second)

    ids = [a.agent_id for a in agents]
    assert await _count(db, "SELECT count(*) FROM agents WHERE agent_id = ANY($1)", ids) == 30
