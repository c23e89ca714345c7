"""A SIGKILLed service loses nothing it acknowledged, and its events go out exactly once.

Each test starts its own nats-server and PostgreSQL and runs ``agent-orchestrator serve`` as a
child process, kills it with SIGKILL at a chosen moment, starts it again and checks what
PostgreSQL and JetStream hold against what callers were told.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import nats
import nats.aio.client
import nats.errors
import pytest

from agent_orchestrator.contracts import subjects
from tests.support.calls import ok
from tests.support.events import StreamEvent, read_events
from tests.support.service_process import OwnServers, ServiceProcess, own_servers

pytestmark = pytest.mark.slow

T = TypeVar("T")

WORKERS = 40
REQUEST_TIMEOUT_S = 2.0
MUTATING = (
    subjects.AGENT_CREATE,
    subjects.AGENT_INITIALIZE,
    subjects.AGENT_ACTIVATE,
    subjects.AGENT_PAUSE,
)


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


# --------------------------------------------------------------------------- helpers


async def cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel tasks and wait until they are done."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def eventually(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    *,
    within: float,
    what: str,
    interval: float = 0.1,
) -> T:
    """Poll ``probe`` until ``done(result)``; fail with the last result after ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        result = await probe()
        if done(result):
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not reached within {within:.0f} s; last seen: {result!r}")
        await asyncio.sleep(interval)


async def wait_relay_drained(db: asyncpg.Connection, *, within: float = 20.0) -> None:
    """Wait until every outbox row is published and no agent is INITIALIZING any more.

    With no INITIALIZING agent left no job will write again, so a drained outbox stays drained.
    """

    async def probe() -> tuple[int, int]:
        row = await db.fetchrow(
            """SELECT (SELECT count(*) FROM outbox WHERE published_at IS NULL) AS unpublished,
                      (SELECT count(*) FROM agents WHERE status = 'INITIALIZING') AS initializing"""
        )
        assert row is not None
        return int(row["unpublished"]), int(row["initializing"])

    await eventually(
        probe,
        lambda r: r == (0, 0),
        within=within,
        what="relay drained (unpublished outbox rows, INITIALIZING agents) == (0, 0)",
    )


async def outbox_events(db: asyncpg.Connection) -> list[asyncpg.Record]:
    """Outbox rows of events (not jobs), in id order."""
    return await db.fetch(
        "SELECT id, msg_id::text AS msg_id, subject, published_at FROM outbox "
        "WHERE subject LIKE 'agent.event.%' ORDER BY id"
    )


def compare_stream_with_outbox(
    stream: list[StreamEvent], outbox: list[asyncpg.Record]
) -> list[str]:
    """Problems found: messages without a Nats-Msg-Id, doubles, missing and unexpected ids."""
    problems = []
    no_id = [e.seq for e in stream if not e.msg_id]
    if no_id:
        problems.append(f"{len(no_id)} stream messages without Nats-Msg-Id (seqs {no_id[:10]})")
    per_id = Counter(e.msg_id for e in stream if e.msg_id)
    doubles = {m: n for m, n in per_id.items() if n > 1}
    if doubles:
        problems.append(
            f"{len(doubles)} msg ids published more than once: {list(doubles.items())[:10]}"
        )
    expected = Counter(r["msg_id"] for r in outbox)
    assert all(n == 1 for n in expected.values()), "outbox.msg_id is UNIQUE"
    missing = set(expected) - set(per_id)
    if missing:
        problems.append(
            f"{len(missing)} outbox events missing from the stream: {sorted(missing)[:10]}"
        )
    extra = set(per_id) - set(expected)
    if extra:
        problems.append(f"{len(extra)} stream messages with no outbox row: {sorted(extra)[:10]}")
    mismatched = [
        e.seq
        for e in stream
        if e.msg_id != e.envelope.get("event_id")
        or e.subject
        != subjects.event_subject(e.envelope.get("agent_id", "?"), e.envelope.get("type", "?"))
    ]
    if mismatched:
        problems.append(
            f"messages whose subject or Nats-Msg-Id disagree with the envelope: {mismatched[:10]}"
        )
    return problems


# --------------------------------------------------------------------------- load


@dataclass(frozen=True)
class Ack:
    """A command that got a success reply, and what the reply claimed."""

    subject: str
    agent_id: str
    version: int
    status: str


@dataclass
class Load:
    """Concurrent callers issuing commands; remembers every acknowledged one."""

    nc: nats.aio.client.Client
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    acks: list[Ack] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    in_flight: Counter[str] = field(default_factory=Counter)

    async def send(self, subject: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """One request; the reply body on success, None on an error reply or no reply."""
        if self.stop.is_set():
            return None
        mutating = subject in MUTATING
        self.in_flight[subject] += 1
        try:
            msg = await self.nc.request(
                subject, json.dumps(body).encode(), timeout=REQUEST_TIMEOUT_S
            )
        except nats.errors.NoRespondersError:
            self.outcomes[f"{subject}: no responders"] += 1
            return None
        except nats.errors.TimeoutError:
            self.outcomes[f"{subject}: timeout"] += 1
            return None
        finally:
            self.in_flight[subject] -= 1
        reply = json.loads(msg.data)
        if isinstance(reply, dict) and "error" in reply:
            self.outcomes[f"{subject}: {reply['error']['code']}"] += 1
            return None
        self.outcomes[f"{subject}: ok"] += 1
        if mutating:
            self.acks.append(
                Ack(subject, str(reply["agent_id"]), int(reply["version"]), str(reply["status"]))
            )
        return dict(reply)

    async def wait_ready(self, agent_id: str) -> bool:
        """Poll agent.get until the initialization job made the agent READY."""
        deadline = time.monotonic() + 10.0
        while not self.stop.is_set() and time.monotonic() < deadline:
            agent = await self.send(subjects.AGENT_GET, {"agent_id": agent_id})
            if agent is not None and agent["status"] == "READY":
                return True
            await asyncio.sleep(0.02)
        return False

    async def worker(self, n: int) -> None:
        """Create agents; walk some through initialize, activate, pause, activate, ..."""
        rng = random.Random(n)
        while not self.stop.is_set():
            agent = await self.send(
                subjects.AGENT_CREATE, {"name": f"crash-{n}", "type": "crash-test"}
            )
            if agent is None:
                continue
            agent_id = agent["agent_id"]
            steps = rng.randint(0, 5)
            if steps == 0:
                continue
            if await self.send(subjects.AGENT_INITIALIZE, {"agent_id": agent_id}) is None:
                continue
            if steps == 1 or not await self.wait_ready(agent_id):
                continue
            for i in range(steps - 1):
                subject = subjects.AGENT_ACTIVATE if i % 2 == 0 else subjects.AGENT_PAUSE
                if await self.send(subject, {"agent_id": agent_id}) is None:
                    break

    def acked(self, subject: str) -> int:
        """How many commands on ``subject`` were acknowledged."""
        return sum(1 for a in self.acks if a.subject == subject)


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

        # Every acknowledged create and transition is stored, at the version the reply claimed.
        created = {a.agent_id for a in acks if a.subject == subjects.AGENT_CREATE}
        stored = {
            str(r["agent_id"])
            for r in await db.fetch(
                "SELECT agent_id FROM agents WHERE agent_id = ANY($1::uuid[])", list(created)
            )
        }
        assert created <= stored, (
            f"{len(created - stored)} acknowledged agent.create replies have no agents row: "
            f"{sorted(created - stored)[:10]}"
        )
        acked_agents = sorted({a.agent_id for a in acks})
        transitions = {
            (str(r["agent_id"]), r["version"]): r["to_status"]
            for r in await db.fetch(
                "SELECT agent_id, version, to_status FROM agent_transitions "
                "WHERE agent_id = ANY($1::uuid[])",
                acked_agents,
            )
        }
        lost = [a for a in acks if transitions.get((a.agent_id, a.version)) != a.status]
        assert not lost, (
            f"{len(lost)} of {len(acks)} acknowledged commands are not in agent_transitions at "
            f"the version and status their reply claimed, e.g. "
            f"{[(a, transitions.get((a.agent_id, a.version))) for a in lost[:5]]}"
        )

        # Once the relay has drained, the stream holds each outbox event exactly once.
        await wait_relay_drained(db)
        js = nc.jetstream()
        stream = await read_events(js)
        outbox = await outbox_events(db)
        problems = compare_stream_with_outbox(stream, outbox)
        assert not problems, "AGENT_EVENTS disagrees with the outbox:\n" + "\n".join(problems)

        # Per agent, events arrive in version order: 1, 2, ..., the agent's version.
        versions: dict[str, list[int]] = defaultdict(list)
        for e in stream:
            versions[e.envelope["agent_id"]].append(int(e.envelope["version"]))
        final = {
            str(r["agent_id"]): r["version"]
            for r in await db.fetch("SELECT agent_id, version FROM agents")
        }
        out_of_order = {
            agent_id: (versions.get(agent_id), version)
            for agent_id, version in final.items()
            if versions.get(agent_id) != list(range(1, version + 1))
        }
        assert not out_of_order, (
            f"{len(out_of_order)} agents whose events are not versions 1..N in stream order "
            f"(seen, N): {list(out_of_order.items())[:5]}"
        )
        assert set(versions) == set(final), "events of agents that do not exist"
        assert created <= set(versions)


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
