"""Proof under faults: a killed instance, a restarted nats-server, a restarted PostgreSQL.

Each scenario starts a nats-server and a PostgreSQL of its own and runs ``agent-orchestrator
serve`` as child processes, puts load on it (callers walking agents through their lifecycle,
ACTIVE agents exchanging messages and being handed tasks, their programs running in-process),
breaks something while commands are in flight, and lets the load go on. Once the fault is over
and the service has settled it checks, against what callers were told:

- every acknowledged create and transition is in PostgreSQL at the version its reply claimed;
- every message stored (so every acknowledged one) ends DELIVERED, none FAILED or EXPIRED, and
  reached its recipient's handler (more than once is allowed: delivery is at least once);
- every task stored (so every acknowledged one) ends SUCCEEDED with its input as result, in its
  first attempt, its handler run exactly once (none of the faults lasts long enough for the
  service to give up an attempt, so no attempt may be repeated);
- AGENT_EVENTS holds each outbox event exactly once, per agent in version order, its status
  events being the agent's transition history;
- the service answers again, by itself, within ``SERVE_AGAIN_WITHIN_S``.

Each scenario prints what callers saw (``-s`` shows it); ``docs/fault-tests.md`` has figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import nats
import nats.aio.client
import nats.errors
import nats.js.errors
import pytest

from agent_orchestrator.client import OrchestratorClient
from agent_orchestrator.contracts import subjects
from tests.support.calls import call
from tests.support.durability import (
    MUTATING,
    NO_RESPONDERS,
    OK,
    REQUEST_TIMEOUT_S,
    TIMEOUT,
    Load,
    Talkers,
    cancel_all,
    check_acknowledged_commands,
    compare_stream_with_outbox,
    event_order_problems,
    outbox_events,
    talkers_running,
    wait_relay_drained,
)
from tests.support.events import read_events
from tests.support.polling import eventually
from tests.support.queues import subject_is_empty
from tests.support.service_process import OwnServers, ServiceProcess, own_servers

pytestmark = pytest.mark.slow

LIFECYCLE_CALLERS = 12
MESSENGERS = 3
TASKERS = 2
TALKERS = 6
#: Seconds the load goes on once the service answers again after the fault.
AFTER_FAULT_S = 2.0
#: Bound on the time from the end of a fault to the service's first success reply.
SERVE_AGAIN_WITHIN_S = 15.0
#: Bound on the time for messages and tasks to settle, and the relay to drain, afterwards.
SETTLE_S = 30.0
NATS_DOWN_S = 1.5
POSTGRES_DOWN_S = 3.0
#: After SIGKILL the nats-server may still route a request to the dead instance until it has
#: noticed the closed connection.
KILL_GRACE_S = 0.5


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[OwnServers]:
    """A nats-server and a PostgreSQL of this test alone."""
    with own_servers(tmp_path) as own:
        yield own


@pytest.fixture
def spawn(servers: OwnServers, tmp_path: Path) -> Iterator[Callable[[str], ServiceProcess]]:
    """Makes service processes (not started) logging to ``<name>.log``; all are killed at
    teardown, before the servers."""
    made: list[ServiceProcess] = []

    def make(name: str) -> ServiceProcess:
        proc = ServiceProcess(servers.nats_url, servers.database_url, tmp_path / f"{name}.log")
        made.append(proc)
        return proc

    try:
        yield make
    finally:
        for proc in made:
            proc.kill()


# --------------------------------------------------------------------------- the bench


@dataclass
class Bench:
    """The load, the agents' programs, and what a scenario measured."""

    servers: OwnServers
    nc: nats.aio.client.Client
    load: Load
    talkers: Talkers
    callers: list[asyncio.Task[None]]
    started: float = field(default_factory=time.monotonic)
    figures: dict[str, Any] = field(default_factory=dict)

    def progress(self) -> dict[str, int]:
        """What the load achieved so far."""
        counts = {s: self.load.acked(s) for s in (*MUTATING, subjects.AGENT_SEND)}
        counts[subjects.AGENT_EXECUTE] = self.load.acked(subjects.AGENT_EXECUTE)
        counts["received"] = len(self.talkers.received)
        counts["ran"] = len(self.talkers.runs)
        counts.update({k: n for k, n in self.load.outcomes.items() if not k.endswith(f": {OK}")})
        return counts

    async def warm_up(self) -> None:
        """Wait until every kind of command has been acknowledged and messages and tasks flow,
        then until commands are in flight: the moment for a fault."""
        await eventually(
            lambda: asyncio.sleep(0, result=self.progress()),
            lambda p: (
                sum(p[s] for s in MUTATING) >= 100
                and min(p[s] for s in MUTATING) >= 5
                and p[subjects.AGENT_SEND] >= 30
                and p[subjects.AGENT_EXECUTE] >= 15
                and p["received"] >= 10
                and p["ran"] >= 5
            ),
            within=30.0,
            what="load warmed up",
            interval=0.05,
        )
        await eventually(
            lambda: asyncio.sleep(0, result=sum(self.load.in_flight.values())),
            lambda n: n >= 3,
            within=5.0,
            what="commands in flight (>= 3)",
            interval=0,
        )
        self.figures["in flight at the fault"] = {
            s: n for s, n in sorted(self.load.in_flight.items()) if n
        }

    async def serves_again(self, since: float) -> float:
        """Wait until a command sent after ``since`` succeeds; the seconds that took."""
        await eventually(
            lambda: asyncio.sleep(0, result=self.load.first_success_after(since)),
            lambda t: t < float("inf"),
            within=SERVE_AGAIN_WITHIN_S,
            what="a command sent after the fault answered with success",
            interval=0.05,
        )
        return self.load.first_success_after(since)

    async def stop_load(self) -> None:
        """Stop the callers (each is done within one request timeout)."""
        self.load.stop.set()
        async with asyncio.timeout(REQUEST_TIMEOUT_S * 5):
            await asyncio.gather(*self.callers)

    def outcomes(self, start: float, end: float) -> dict[str, int]:
        """Callers' outcomes of calls sent in [start, end)."""
        return dict(sorted(self.load.outcomes_between(start, end).items()))

    def outage_outcomes_beyond_expected(self) -> set[str]:
        """Outcomes other than successes and what an outage of NATS may cause: timeouts, no
        responders, connection errors, `unavailable` (so bug replies and refusals)."""
        return {
            c.outcome
            for c in self.load.calls
            if c.outcome not in (OK, TIMEOUT, NO_RESPONDERS, "unavailable")
            and not c.outcome.endswith("Error")
        }

    def report(self, scenario: str) -> None:
        """Print the figures (shown with -s, and when the test fails)."""
        self.figures["acknowledged"] = self.progress()
        self.figures["redelivered messages"] = sum(
            len(r) - 1 for r in self.talkers.received.values()
        )
        self.figures["run time s"] = round(time.monotonic() - self.started, 1)
        print(f"\n[{scenario}] " + json.dumps(self.figures, default=str))


@contextlib.asynccontextmanager
async def bench(servers: OwnServers) -> AsyncIterator[Bench]:
    """Agents with running programs, and the load on them (started, cancelled on exit)."""
    async with contextlib.AsyncExitStack() as stack:
        nc = await nats.connect(
            servers.nats_url, max_reconnect_attempts=-1, reconnect_time_wait=0.2
        )
        stack.push_async_callback(nc.close)
        client = OrchestratorClient(nc)
        talkers = await stack.enter_async_context(
            talkers_running(
                servers.nats_url, client, count=TALKERS, project=f"faults-{uuid.uuid4()}"
            )
        )
        load = Load(nc)
        callers = [asyncio.create_task(load.worker(n)) for n in range(LIFECYCLE_CALLERS)]
        callers += [
            asyncio.create_task(load.messenger(n, talkers.agents, pause_s=0.01))
            for n in range(MESSENGERS)
        ]
        callers += [
            asyncio.create_task(load.tasker(n, talkers.agents, pause_s=0.02))
            for n in range(TASKERS)
        ]
        stack.push_async_callback(cancel_all, callers)
        yield Bench(servers, nc, load, talkers, callers)


# --------------------------------------------------------------------------- the checks


async def settle_and_check(b: Bench) -> None:
    """Every check of the module docstring, once messages and tasks have settled."""
    db = await asyncpg.connect(b.servers.database_url)
    try:
        await check_acknowledged_commands(db, b.load.acks)
        await check_messages(db, b)
        await check_tasks(db, b)
        await wait_relay_drained(db, within=SETTLE_S)
        stream = await read_events(b.nc.jetstream())
        problems = compare_stream_with_outbox(stream, await outbox_events(db))
        problems += await event_order_problems(db, stream)
        assert not problems, "AGENT_EVENTS disagrees with the outbox:\n" + "\n".join(problems)
        b.figures["events"] = len(stream)
    finally:
        await db.close()


async def check_messages(db: asyncpg.Connection, b: Bench) -> None:
    """Every message stored ends DELIVERED and reached its recipient's handler."""
    await eventually(
        lambda: db.fetchval("SELECT count(*) FROM communications WHERE status = 'SENT'"),
        lambda n: n == 0,
        within=SETTLE_S,
        what="every message delivered (messages still SENT == 0)",
    )
    stored = {
        str(r["communication_id"]): (str(r["status"]), str(r["to_agent_id"]))
        for r in await db.fetch("SELECT communication_id, status, to_agent_id FROM communications")
    }
    acked = b.load.messages
    missing = sorted(set(acked) - set(stored))
    assert not missing, f"{len(missing)} acknowledged messages are not stored: {missing[:10]}"
    ended = Counter(status for status, _ in stored.values())
    assert set(ended) == {"DELIVERED"}, f"messages by final status: {dict(ended)}"
    received = b.talkers.received
    never = sorted(c for c in stored if stored[c][1] not in received.get(c, []))
    assert not never, (
        f"{len(never)} of {len(stored)} stored messages ({len(acked)} acknowledged) never "
        f"reached their recipient's handler: {never[:10]}"
    )
    astray = {c: r for c, r in received.items() if c not in stored or set(r) != {stored[c][1]}}
    assert not astray, f"messages handled by an agent they were not sent to: {astray}"
    for agent_id in b.talkers.agents:
        assert await nothing_waiting(b.nc, agent_id), f"inbox of {agent_id}: messages waiting"
    b.figures["messages stored / acknowledged"] = (len(stored), len(acked))


async def nothing_waiting(nc: nats.aio.client.Client, agent_id: str) -> bool:
    """No message waits undelivered for the agent: its worker's consumer has none pending (an
    ack lost in the outage may still be held: its redelivery is acked after the ack wait), or,
    once the worker has stopped and removed it, the inbox subject is empty."""
    try:
        info = await nc.jetstream().consumer_info(
            subjects.MESSAGES_STREAM, subjects.inbox_consumer(agent_id)
        )
    except nats.js.errors.NotFoundError:
        inbox = subjects.inbox_subject(agent_id)
        return await subject_is_empty(nc, subjects.MESSAGES_STREAM, inbox, within=40.0)
    return info.num_pending == 0


async def check_tasks(db: asyncpg.Connection, b: Bench) -> None:
    """Every task stored ends SUCCEEDED in its first attempt, run once by its agent."""
    await eventually(
        lambda: db.fetchval("SELECT count(*) FROM tasks WHERE status IN ('QUEUED', 'RUNNING')"),
        lambda n: n == 0,
        within=SETTLE_S,
        what="every task ended (tasks QUEUED or RUNNING == 0)",
    )
    stored = {
        str(r["task_id"]): r
        for r in await db.fetch(
            "SELECT task_id, agent_id, status, attempts, input::text, result::text FROM tasks"
        )
    }
    acked = b.load.tasks
    missing = sorted(set(acked) - set(stored))
    assert not missing, f"{len(missing)} acknowledged tasks are not stored: {missing[:10]}"
    ended = Counter(str(r["status"]) for r in stored.values())
    assert set(ended) == {"SUCCEEDED"}, f"tasks by final status: {dict(ended)}"
    wrong = {
        t: (r["input"], r["result"])
        for t, r in stored.items()
        if json.loads(r["result"]) != json.loads(r["input"])
    }
    assert not wrong, f"tasks whose result is not their input: {list(wrong.items())[:5]}"
    assert all(json.loads(stored[t]["input"]) == i for t, (_, i) in acked.items())
    runs = b.talkers.runs
    retried = {t: r["attempts"] for t, r in stored.items() if r["attempts"] != 1}
    assert not retried, f"tasks that needed more than one attempt: {retried}"
    again = {key: n for key, n in runs.items() if n != 1}
    assert not again, f"attempts run more than once: {again}"
    never = sorted(t for t in stored if (t, 1) not in runs)
    assert not never, f"{len(never)} tasks SUCCEEDED without their handler running: {never}"
    astray = {
        t: (by, str(stored[t]["agent_id"]))
        for t, by in b.talkers.ran_by.items()
        if t not in stored or by != str(stored[t]["agent_id"])
    }
    assert not astray, f"tasks run by an agent they were not handed to: {astray}"
    b.figures["tasks stored / acknowledged"] = (len(stored), len(acked))


async def answering_instances(nc: nats.aio.client.Client) -> dict[str, int]:
    """Instance id -> requests served, of every instance that answers ``$SRV.STATS``."""
    replies: list[dict[str, Any]] = []
    sub = await nc.subscribe(nc.new_inbox())
    try:
        await nc.publish(f"$SRV.STATS.{subjects.SERVICE_NAME}", b"", reply=sub.subject)
        deadline = time.monotonic() + 1.0
        while (left := deadline - time.monotonic()) > 0:
            try:
                replies.append(json.loads((await sub.next_msg(timeout=left)).data))
            except nats.errors.TimeoutError:
                break
    finally:
        await sub.unsubscribe()
    return {r["id"]: sum(e["num_requests"] for e in r["endpoints"]) for r in replies}


# --------------------------------------------------------------------------- scenarios


async def test_sigkill_of_one_of_two_instances(
    servers: OwnServers, spawn: Callable[[str], ServiceProcess]
) -> None:
    """SIGKILL instance A mid-load while B runs: B serves on, callers see nothing but timeouts
    of requests A held; A is started again after 2 s and takes its share of the load."""
    a, b_proc = spawn("service-a"), spawn("service-b")
    await a.start_and_wait()
    await b_proc.start_and_wait()
    async with bench(servers) as b:
        assert len(await answering_instances(b.nc)) == 2
        await b.warm_up()
        killed_at = time.monotonic()
        a.kill()
        b.figures["serves again after s"] = round(await b.serves_again(killed_at), 3)
        await asyncio.sleep(2.0)
        alone = await answering_instances(b.nc)
        assert len(alone) == 1, alone
        restarting = time.monotonic()
        await a.start_and_wait()
        rejoined = time.monotonic()
        b.figures["restarted A answers after s"] = round(rejoined - restarting, 2)
        await asyncio.sleep(AFTER_FAULT_S)
        await b.stop_load()
        both = await answering_instances(b.nc)
        b.figures["outcomes before the kill"] = b.outcomes(0, killed_at)
        b.figures["outcomes within 0.5 s of the kill"] = b.outcomes(
            killed_at, killed_at + KILL_GRACE_S
        )
        b.figures["outcomes after that"] = b.outcomes(killed_at + KILL_GRACE_S, float("inf"))
        b.figures["requests served per instance after A rejoined"] = both
        b.report("sigkill one of two instances")

        # Callers saw successes, and timeouts only for requests sent before A was gone.
        failed = [c for c in b.load.calls if c.outcome != OK]
        assert {c.outcome for c in failed} <= {TIMEOUT}, Counter(c.outcome for c in failed)
        late = [c for c in failed if c.sent >= killed_at + KILL_GRACE_S]
        assert not late, f"{len(late)} requests sent after the kill failed: {late[:5]}"
        # The restarted instance serves too.
        (survivor,) = alone
        assert set(both) - {survivor}, f"the restarted instance does not answer: {both}"
        assert all(n > 0 for n in both.values()), both

        await settle_and_check(b)


async def test_nats_server_restart(
    servers: OwnServers, spawn: Callable[[str], ServiceProcess]
) -> None:
    """Stop the nats-server mid-load and start it again on the same port after 1.5 s: the
    service, the callers and the agents' programs reconnect by themselves."""
    service = spawn("service")
    await service.start_and_wait()
    async with bench(servers) as b:
        await b.warm_up()
        down_at = time.monotonic()
        await asyncio.to_thread(servers.nats.stop)
        stopped = time.monotonic()
        await asyncio.sleep(NATS_DOWN_S)
        await asyncio.to_thread(servers.nats.start)
        up_at = time.monotonic()
        b.figures["nats-server stop took s"] = round(stopped - down_at, 2)
        b.figures["nats-server down s"] = round(up_at - down_at, 2)
        b.figures["serves again after s"] = round(await b.serves_again(up_at), 3)
        await asyncio.sleep(AFTER_FAULT_S)
        await b.stop_load()
        assert service.is_running, service.log_tail()
        b.figures["outcomes before"] = b.outcomes(0, down_at)
        b.figures["outcomes while down"] = b.outcomes(down_at, up_at)
        b.figures["outcomes after"] = b.outcomes(up_at, float("inf"))
        b.report("nats-server restart")

        # Nothing but successes, and while NATS was away timeouts, no responders, connection
        # errors or `unavailable` (no bug replies, no refusals).
        assert not b.outage_outcomes_beyond_expected(), b.figures

        await settle_and_check(b)


async def test_postgres_restart(
    servers: OwnServers, spawn: Callable[[str], ServiceProcess]
) -> None:
    """SIGKILL PostgreSQL mid-load and start it again after 3 s: meanwhile every command is
    answered `unavailable` at once; afterwards the service serves again by itself."""
    service = spawn("service")
    await service.start_and_wait()
    async with bench(servers) as b:
        await b.warm_up()
        talker, other = b.talkers.agents[:2]
        down_at = time.monotonic()
        await asyncio.to_thread(servers.postgres.kill)
        killed = time.monotonic()

        # Commands sent now get `unavailable`, quickly (not a hang until the caller's timeout).
        probes = {
            subjects.AGENT_GET: {"agent_id": talker},
            subjects.AGENT_CREATE: {"name": "while-down", "type": "fault-test"},
            subjects.AGENT_PAUSE: {"agent_id": talker},
            subjects.AGENT_SEND: {"from_agent_id": talker, "to_agent_id": other},
            subjects.AGENT_EXECUTE: {"agent_id": talker, "input": "while-down"},
            subjects.TASK_GET: {"task_id": next(iter(b.load.tasks))},
        }
        answers = {}
        for subject, body in probes.items():
            sent = time.monotonic()
            reply = await call(b.nc, subject, body, timeout=5.0)
            answers[subject] = (reply.error_code, reply.status, round(time.monotonic() - sent, 3))
        b.figures["probes while down (code, status, s)"] = answers
        assert all(code == "unavailable" and status == 503 for code, status, _ in answers.values())

        await asyncio.sleep(max(0.0, POSTGRES_DOWN_S - (time.monotonic() - killed)))
        restarting = time.monotonic()
        await asyncio.to_thread(servers.postgres.restart)
        up_at = time.monotonic()
        b.figures["postgres down s"] = round(up_at - down_at, 2)
        b.figures["serves again after s"] = round(await b.serves_again(up_at), 3)
        await asyncio.sleep(AFTER_FAULT_S)
        await b.stop_load()
        assert service.is_running, service.log_tail()
        b.figures["outcomes before"] = b.outcomes(0, down_at)
        b.figures["outcomes while down"] = b.outcomes(down_at, up_at)
        b.figures["outcomes after"] = b.outcomes(up_at, float("inf"))
        b.report("postgres restart")

        # Every call sent once PostgreSQL was dead (and answerable before it came back) got
        # `unavailable`; none hung until its timeout. (Calls sent while the kill was under way
        # may still have made it.)
        while_down = [
            c
            for c in b.load.calls
            if killed <= c.sent < restarting - REQUEST_TIMEOUT_S
            or (killed <= c.sent and c.done < restarting)
        ]
        not_refused = [
            (c.subject, round(c.sent - killed, 3), c.outcome)
            for c in while_down
            if c.outcome != "unavailable"
        ]
        assert not not_refused, (len(while_down), not_refused[:10])
        unexpected = {c.outcome for c in b.load.calls} - {OK, "unavailable"}
        assert not unexpected, b.figures

        await settle_and_check(b)
