"""A SIGKILLed service loses nothing it acknowledged, and its events go out exactly once.

Each test starts its own nats-server and PostgreSQL and runs ``agent-orchestrator serve`` as a
child process, kills it with SIGKILL at a chosen moment, starts it again and checks what
PostgreSQL and JetStream hold against what callers were told.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import nats
import pytest

from agent_orchestrator.contracts import subjects
from tests.support.calls import ok
from tests.support.durability import (
    MUTATING,
    Load,
    cancel_all,
    check_acknowledged_commands,
    compare_stream_with_outbox,
    event_order_problems,
    outbox_events,
    wait_relay_drained,
)
from tests.support.events import read_events
from tests.support.polling import eventually
from tests.support.service_process import OwnServers, ServiceProcess, own_servers

pytestmark = pytest.mark.slow

WORKERS = 40


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[OwnServers]:
    """A nats-server and a PostgreSQL of this test alone."""
    with own_servers(tmp_path) as own:
        yield own


@pytest.fixture
def service(servers: OwnServers, tmp_path: Path) -> Iterator[ServiceProcess]:
    """The service as a child process (not started); killed at teardown, before the servers."""
    proc = ServiceProcess(servers.nats_url, servers.database_url, tmp_path / "service.log")
    try:
        yield proc
    finally:
        proc.kill()


# --------------------------------------------------------------------------- tests


async def test_sigkill_in_flight_loses_no_acknowledged_command(
    servers: OwnServers, service: ServiceProcess
) -> None:
    await service.start_and_wait()
    async with contextlib.AsyncExitStack() as cleanup:
        nc = await nats.connect(servers.nats_url)
        cleanup.push_async_callback(nc.close)
        db = await asyncpg.connect(servers.database_url)
        cleanup.push_async_callback(db.close)
        load = Load(nc)
        workers = [asyncio.create_task(load.worker(n)) for n in range(WORKERS)]
        cleanup.push_async_callback(cancel_all, workers)

        # Let the load reach every kind of command, then kill while commands are in flight.
        await eventually(
            lambda: asyncio.sleep(0, result=[load.acked(s) for s in MUTATING]),
            lambda counts: sum(counts) >= 200 and min(counts) >= 5,
            within=20.0,
            what=f"acknowledged {list(MUTATING)} (>=200 in all, >=5 each)",
            interval=0.02,
        )
        await eventually(
            lambda: asyncio.sleep(0, result={s: load.in_flight[s] for s in MUTATING}),
            lambda n: sum(n.values()) >= 5 and n[subjects.AGENT_CREATE] >= 1,
            within=5.0,
            what="commands in flight (>=5 in all, >=1 agent.create)",
            interval=0,
        )
        in_flight_at_kill = {s: n for s, n in load.in_flight.items() if n}
        service.kill()
        load.stop.set()
        await asyncio.gather(*workers)
        acks = list(load.acks)
        # Shown when the test fails: what the callers saw.
        print(f"in flight at kill: {in_flight_at_kill}; outcomes: {sorted(load.outcomes.items())}")

        await service.start_and_wait()

        await check_acknowledged_commands(db, acks)

        # Once the relay has drained, the stream holds each outbox event exactly once, and
        # per agent in version order, as its transition history says.
        await wait_relay_drained(db)
        js = nc.jetstream()
        stream = await read_events(js)
        outbox = await outbox_events(db)
        problems = compare_stream_with_outbox(stream, outbox)
        problems += await event_order_problems(db, stream)
        assert not problems, "AGENT_EVENTS disagrees with the outbox:\n" + "\n".join(problems)
        created = {a.agent_id for a in acks if a.subject == subjects.AGENT_CREATE}
        assert created <= {e.envelope["agent_id"] for e in stream}


@pytest.mark.parametrize("blocked_write", ["completes", "terminated"])
async def test_initialization_survives_a_killed_service(
    servers: OwnServers, service: ServiceProcess, blocked_write: str
) -> None:
    """The initialization job is mid-way (its UPDATE waits on our row lock) when the service dies.

    The orphaned UPDATE either goes on once the lock is gone (``completes``: PostgreSQL does not
    notice the dead client while the statement waits) or is cut off with its backend
    (``terminated``), so that only the redelivered job can finish the initialization. Either way
    the agent reaches READY exactly once.
    """
    await service.start_and_wait()
    async with contextlib.AsyncExitStack() as cleanup:
        nc = await nats.connect(servers.nats_url)
        cleanup.push_async_callback(nc.close)
        js = nc.jetstream()
        db = await asyncpg.connect(servers.database_url)
        cleanup.push_async_callback(db.close)
        locker = await asyncpg.connect(servers.database_url)
        cleanup.push_async_callback(locker.close)  # rolls back a lock still held
        lock = locker.transaction()
        agent = await ok(nc, subjects.AGENT_CREATE, {"name": "survivor", "type": "crash-test"})
        agent_id = agent["agent_id"]

        # Hold the job back until the row lock is taken, so that the job cannot finish first.
        await js.pause_consumer(
            subjects.JOBS_STREAM, subjects.INITIALIZE_JOB_CONSUMER, "2100-01-01T00:00:00Z"
        )
        initializing = await ok(nc, subjects.AGENT_INITIALIZE, {"agent_id": agent_id})
        assert (initializing["status"], initializing["version"]) == ("INITIALIZING", 2)
        await lock.start()
        row = await locker.fetchrow(
            "SELECT status, version FROM agents WHERE agent_id = $1 FOR UPDATE", agent["agent_id"]
        )
        assert row is not None
        assert (row["status"], row["version"]) == ("INITIALIZING", 2)
        await js.resume_consumer(subjects.JOBS_STREAM, subjects.INITIALIZE_JOB_CONSUMER)

        # The job is delivered and its write waits on our lock: it is mid-way.
        await eventually(
            lambda: js.consumer_info(subjects.JOBS_STREAM, subjects.INITIALIZE_JOB_CONSUMER),
            lambda info: info.num_ack_pending >= 1,
            within=10.0,
            what="initialization job delivered (num_ack_pending >= 1)",
        )
        locker_pid = await locker.fetchval("SELECT pg_backend_pid()")
        blocked = await eventually(
            lambda: db.fetch(
                "SELECT pid, query FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
                locker_pid,
            ),
            lambda rows: len(rows) >= 1,
            within=10.0,
            what="the job's write blocked by the test's row lock",
        )
        assert all("UPDATE agents" in r["query"] for r in blocked), [r["query"] for r in blocked]

        service.kill()

        if blocked_write == "terminated":
            for r in blocked:
                await db.execute("SELECT pg_terminate_backend($1)", r["pid"])
            await eventually(
                lambda: db.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])",
                    [r["pid"] for r in blocked],
                ),
                lambda n: n == 0,
                within=10.0,
                what="the orphaned backend gone",
            )
        await lock.rollback()

        async def status_now() -> str:
            return str(
                await db.fetchval(
                    "SELECT status FROM agents WHERE agent_id = $1", agent["agent_id"]
                )
            )

        if blocked_write == "terminated":
            await asyncio.sleep(0.3)
            assert await status_now() == "INITIALIZING", "the terminated write must not commit"
        else:
            await eventually(
                status_now,
                lambda s: s == "READY",
                within=5.0,
                what="the orphaned write committed once the lock was released",
            )

        await service.start_and_wait()

        ready = await eventually(
            lambda: ok(nc, subjects.AGENT_GET, {"agent_id": agent_id}),
            lambda a: a["status"] != "INITIALIZING",
            within=15.0,
            what="agent left INITIALIZING after the restart",
        )
        assert (ready["status"], ready["version"]) == ("READY", 3), ready

        # The redelivered job is acknowledged and changes nothing more.
        await eventually(
            lambda: js.consumer_info(subjects.JOBS_STREAM, subjects.INITIALIZE_JOB_CONSUMER),
            lambda info: info.num_ack_pending == 0 and info.num_pending == 0,
            within=15.0,
            what="initialization job acknowledged",
        )
        history = await ok(nc, subjects.AGENT_HISTORY, {"agent_id": agent_id})
        moves = [(t["from"], t["to"], t["version"]) for t in history["items"]]
        assert moves == [
            (None, "CREATED", 1),
            ("CREATED", "INITIALIZING", 2),
            ("INITIALIZING", "READY", 3),
        ], moves

        await wait_relay_drained(db)
        events = await read_events(js, subjects.event_subject(agent_id, "*"))
        kinds = Counter(e.envelope["type"] for e in events)
        assert kinds == {"created": 1, "initializing": 1, "ready": 1}, kinds
        assert [e.envelope["version"] for e in events] == [1, 2, 3]
        outbox = [r for r in await outbox_events(db) if r["subject"].split(".")[2] == agent_id]
        problems = compare_stream_with_outbox(events, outbox)
        assert not problems, "AGENT_EVENTS disagrees with the outbox:\n" + "\n".join(problems)
