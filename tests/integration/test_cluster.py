"""Proof under faults on a NATS cluster: SIGKILL of one node of three, streams and buckets at R3.

The test starts a three-node nats-server cluster on loopback and a PostgreSQL of its own, and
runs ``agent-orchestrator serve`` as a child process with ``AO_JS_REPLICAS=3`` and ``NATS_URL``
naming all three nodes. It checks that every stream, KV bucket and object store the service
made has three replicas, and every durable consumer too (they inherit the stream's).

Then it moves the JetStream meta leader, and the leadership of every stream and durable
consumer, to the node that holds the service's connection, puts the load of
``test_faults.py`` on the service (callers walking agents through their lifecycle, ACTIVE
agents exchanging messages and being handed tasks, their programs running in-process), plus
callers writing the agents' state as fast as they can, and
SIGKILLs that node while commands are in flight. The load goes on; the node is started again
after ``NODE_DOWN_S`` (or once a new meta leader is elected, if that takes longer); the load
goes on a little more. Every client (the service, the load, the agents' programs) has all three
URLs and fails over.

Once the service has settled, the checks of ``test_faults.py`` hold (every acknowledged command
durable; every message delivered and handled; every task run once, in its first attempt;
AGENT_EVENTS equal to the outbox, per agent in order), and for state: every acknowledged write
is in the agent's state (or a later write by the same writer is), and has its
``state_updated`` event exactly once. The service answers again by itself within
``SERVE_AGAIN_WITHIN_S`` of the kill.

It prints what callers saw (``-s`` shows it); ``docs/fault-tests.md`` has figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import nats
import nats.aio.client
import pytest
from nats.js import JetStreamContext

from agent_orchestrator.client import OrchestratorClient
from agent_orchestrator.contracts import subjects
from agent_orchestrator.contracts.events import EventKind
from agent_orchestrator.storage.state import STATE_EVENTS_CONSUMER, STATE_STREAM
from tests.integration.test_faults import (
    LIFECYCLE_CALLERS,
    MESSENGERS,
    SETTLE_S,
    TALKERS,
    TASKERS,
    Bench,
    check_messages,
    check_tasks,
)
from tests.support.durability import (
    Load,
    cancel_all,
    check_acknowledged_commands,
    compare_stream_with_outbox,
    event_order_problems,
    outbox_events,
    talkers_running,
    wait_relay_drained,
)
from tests.support.events import StreamEvent, read_events
from tests.support.nats_cluster import (
    ClusterNode,
    ClusterServers,
    NatsCluster,
    all_consumers,
    all_streams,
    lead_from,
    own_cluster_servers,
)
from tests.support.polling import eventually
from tests.support.service_process import ServiceProcess

pytestmark = pytest.mark.slow

REPLICAS = 3
STATE_WRITERS = 2
#: Each state writer's pause between writes: next to none. The writer publishes each
#: revision's event itself; the state-events reader (which could fall more than
#: AO_STATE_HISTORY revisions behind and lose events, before the writers published) is only
#: the backstop now (docs/fault-tests.md).
STATE_WRITE_PAUSE_S = 0.02
#: Seconds the killed node stays down (the load goes on meanwhile).
NODE_DOWN_S = 5.0
#: Seconds the load goes on once the node is back and the cluster healthy.
AFTER_RESTART_S = 2.0
#: Bound on the cluster's becoming healthy again (after the kill, and after the restart).
CLUSTER_HEALTHY_WITHIN_S = 60.0
#: Every stream the service makes (KV buckets and the object store are streams too).
SERVICE_STREAMS = frozenset(
    {
        subjects.EVENTS_STREAM,
        subjects.TEMPLATE_EVENTS_STREAM,
        subjects.SCHEDULES_STREAM,
        subjects.MESSAGES_STREAM,
        subjects.TASKS_STREAM,
        subjects.DEAD_LETTERS_STREAM,
        subjects.JOBS_STREAM,
        f"KV_{subjects.STATE_BUCKET}",
        f"KV_{subjects.CHECKPOINT_BUCKET}",
        f"KV_{subjects.HEARTBEATS_BUCKET}",
        f"OBJ_{subjects.CHECKPOINT_OBJECTS}",
    }
)
#: The durable consumers the service makes at start-up (per-agent ones come later).
SERVICE_CONSUMERS = frozenset(
    {
        (subjects.JOBS_STREAM, subjects.INITIALIZE_JOB_CONSUMER),
        (subjects.SCHEDULES_STREAM, subjects.CHECKPOINT_SCHEDULER_CONSUMER),
        (subjects.EVENTS_STREAM, subjects.AGENT_CLEANUP_CONSUMER),
        (subjects.DEAD_LETTERS_STREAM, subjects.DEAD_LETTER_CONSUMER),
        (STATE_STREAM, STATE_EVENTS_CONSUMER),
        (f"KV_{subjects.HEARTBEATS_BUCKET}", subjects.LIVENESS_MONITOR_CONSUMER),
    }
)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[ClusterServers]:
    """A three-node nats-server cluster and a PostgreSQL of this test alone."""
    with own_cluster_servers(tmp_path) as own:
        yield own


@pytest.fixture
def service(servers: ClusterServers, tmp_path: Path) -> Iterator[ServiceProcess]:
    """The service (not started) on every node of the cluster, streams and buckets at R3;
    killed at teardown, before the servers."""
    proc = ServiceProcess(
        servers.nats_url,
        servers.database_url,
        tmp_path / "service.log",
        env={"AO_JS_REPLICAS": str(REPLICAS)},
    )
    try:
        yield proc
    finally:
        proc.kill()


# --------------------------------------------------------------------------- state writes


@dataclass
class StateWrites:
    """Callers merging ``{"writer-<n>": i}`` into the state of the given agents, i counting
    up per writer; remembers what was acknowledged."""

    load: Load
    #: (agent_id, key) -> the last i sent / acknowledged
    sent: dict[tuple[str, str], int] = field(default_factory=dict)
    acked: dict[tuple[str, str], int] = field(default_factory=dict)
    #: (agent_id, revision) of every acknowledged write
    revisions: set[tuple[str, int]] = field(default_factory=set)

    async def writer(self, n: int, agents: Sequence[str], *, pause_s: float) -> None:
        """Write one key into the state of one of ``agents`` at a time, at random."""
        rng = random.Random(3000 + n)
        key = f"writer-{n}"
        i = 0
        while not self.load.stop.is_set():
            agent_id = rng.choice(list(agents))
            self.sent[(agent_id, key)] = i
            reply = await self.load.send(
                subjects.AGENT_STATE_UPDATE, {"agent_id": agent_id, "state": {key: i}}
            )
            if reply is not None:
                assert reply["state"][key] == i, reply
                self.acked[(agent_id, key)] = i
                self.revisions.add((agent_id, int(reply["revision"])))
            i += 1
            await asyncio.sleep(pause_s)


# --------------------------------------------------------------------------- the bench


@dataclass
class ClusterBench(Bench):
    """test_faults's Bench, with state writers."""

    states: StateWrites | None = None


@contextlib.asynccontextmanager
async def bench(servers: ClusterServers) -> AsyncIterator[ClusterBench]:
    """Agents with running programs, and the load on them (started, cancelled on exit); like
    test_faults's, every connection with all three nodes' URLs."""
    urls = servers.nats_urls
    async with contextlib.AsyncExitStack() as stack:
        nc = await nats.connect(urls, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
        stack.push_async_callback(nc.close)
        client = OrchestratorClient(nc)
        talkers = await stack.enter_async_context(
            # nats.connect takes the list of URLs as well as one (talkers_running hints str).
            talkers_running(urls, client, count=TALKERS, project=f"cluster-{uuid.uuid4()}")
        )
        load = Load(nc)
        states = StateWrites(load)
        callers = [asyncio.create_task(load.worker(n)) for n in range(LIFECYCLE_CALLERS)]
        callers += [
            asyncio.create_task(load.messenger(n, talkers.agents, pause_s=0.01))
            for n in range(MESSENGERS)
        ]
        callers += [
            asyncio.create_task(load.tasker(n, talkers.agents, pause_s=0.02))
            for n in range(TASKERS)
        ]
        callers += [
            asyncio.create_task(states.writer(n, talkers.agents, pause_s=STATE_WRITE_PAUSE_S))
            for n in range(STATE_WRITERS)
        ]
        stack.push_async_callback(cancel_all, callers)
        # Bench.servers is only read by test_faults's own checks, not used here.
        yield ClusterBench(servers, nc, load, talkers, callers, states=states)


# --------------------------------------------------------------------------- the checks


async def replication(js: JetStreamContext) -> dict[str, Any]:
    """Replicas of every stream and durable consumer of the account; fails on one that is not
    at ``REPLICAS``. Returns figures."""
    streams = {s.config.name or "": s for s in await all_streams(js)}
    assert set(streams) >= SERVICE_STREAMS, f"streams missing: {SERVICE_STREAMS - set(streams)}"
    wrong = {
        name: (s.config.num_replicas, s.cluster)
        for name, s in streams.items()
        if s.config.num_replicas != REPLICAS
        or s.cluster is None
        or len(s.cluster.replicas or []) != REPLICAS - 1
    }
    assert not wrong, f"streams not at R{REPLICAS}: {wrong}"
    durable: dict[tuple[str, str], Any] = {}
    for name in streams:
        for c in await all_consumers(js, name):
            if c.config.durable_name:
                durable[(name, c.name)] = c
    assert set(durable) >= SERVICE_CONSUMERS, f"missing: {SERVICE_CONSUMERS - set(durable)}"
    # num_replicas 0 (unset): the consumer has as many as its stream.
    wrong = {
        key: (c.config.num_replicas, c.cluster)
        for key, c in durable.items()
        if c.config.num_replicas not in (0, None, REPLICAS)
        or c.cluster is None
        or len(c.cluster.replicas or []) != REPLICAS - 1
    }
    assert not wrong, f"durable consumers not at R{REPLICAS}: {wrong}"
    per_agent = Counter(
        stream for stream, consumer in durable if consumer.startswith(("inbox-", "tasks-"))
    )
    return {"streams": len(streams), "durable consumers": len(durable), **per_agent}


async def settle_and_check(b: ClusterBench, database_url: str) -> None:
    """test_faults's checks, with state_updated events (published from the state bucket, not
    the outbox) checked apart: every acknowledged state revision has its event, once."""
    assert b.states is not None
    await check_states(b)
    db = await asyncpg.connect(database_url)
    try:
        await check_acknowledged_commands(db, b.load.acks)
        await check_messages(db, b)
        await check_tasks(db, b)
        await wait_relay_drained(db, within=SETTLE_S)
        js = b.nc.jetstream()
        await eventually(
            lambda: js.consumer_info(STATE_STREAM, STATE_EVENTS_CONSUMER),
            lambda info: info.num_pending == 0 and info.num_ack_pending == 0,
            within=SETTLE_S,
            what="every state revision's event published (state-events consumer drained)",
        )
        stream = await read_events(js)
        state_events = [e for e in stream if e.envelope["type"] == EventKind.STATE_UPDATED]
        others = [e for e in stream if e.envelope["type"] != EventKind.STATE_UPDATED]
        problems = compare_stream_with_outbox(others, await outbox_events(db))
        problems += await event_order_problems(db, others)
        problems += state_event_problems(state_events, b.states)
        assert not problems, "AGENT_EVENTS disagrees:\n" + "\n".join(problems)
        b.figures["events"] = len(stream)
        b.figures["state events"] = len(state_events)
        b.figures["agents with state events out of revision order"] = len(
            agents_with_state_events_out_of_order(state_events)
        )
    finally:
        await db.close()


def state_event_problems(events: list[StreamEvent], states: StateWrites) -> list[str]:
    """Doubles, and acknowledged revisions without their event."""
    problems = []
    per_id = Counter(e.msg_id for e in events)
    doubles = {m: n for m, n in per_id.items() if n > 1}
    if doubles:
        problems.append(f"state events published more than once: {list(doubles.items())[:10]}")
    revisions: defaultdict[str, list[int]] = defaultdict(list)
    for e in events:
        revisions[str(e.envelope["agent_id"])].append(int(e.envelope["data"]["revision"]))
    missing = sorted((agent, rev) for agent, rev in states.revisions if rev not in revisions[agent])
    if missing:
        problems.append(
            f"{len(missing)} acknowledged state revisions without an event: {missing[:10]}"
        )
    return problems


def agents_with_state_events_out_of_order(events: list[StreamEvent]) -> list[str]:
    """Agents whose state events go back in revision somewhere. Allowed after a failover: the
    batch that was in flight is published again only after its ack wait, behind later
    revisions (every event carries its revision); reported, not failed."""
    revisions: defaultdict[str, list[int]] = defaultdict(list)
    for e in events:
        revisions[str(e.envelope["agent_id"])].append(int(e.envelope["data"]["revision"]))
    return [a for a, revs in revisions.items() if revs != sorted(revs)]


async def check_states(b: ClusterBench) -> None:
    """Each writer's key holds its last acknowledged value, or a later one it sent."""
    assert b.states is not None
    client = OrchestratorClient(b.nc)
    final = {a: (await client.get_state(a)).state for a in b.talkers.agents}
    lost = {
        (agent, key): (acked, final[agent].get(key), b.states.sent[(agent, key)])
        for (agent, key), acked in b.states.acked.items()
        if not acked <= final[agent].get(key, -1) <= b.states.sent[(agent, key)]
    }
    assert not lost, f"state writes lost ((agent, key): (acked, stored, last sent)): {lost}"
    b.figures["state writes acknowledged"] = len(b.states.revisions)


async def led_by(nc: nats.aio.client.Client, cluster: NatsCluster, node: str) -> dict[str, Any]:
    """What ``node`` leads: the meta group, and how many of the streams."""
    streams = await all_streams(nc.jetstream())
    led = [s for s in streams if s.cluster is not None and s.cluster.leader == node]
    return {
        "meta": await asyncio.to_thread(cluster.meta_leader) == node,
        "streams": f"{len(led)} of {len(streams)}",
    }


async def connected(node: ClusterNode, name: str) -> bool:
    """Whether a client connection called ``name`` is on ``node``."""
    return name in await asyncio.to_thread(node.client_names)


# --------------------------------------------------------------------------- the scenario


async def test_sigkill_of_the_leading_node(
    servers: ClusterServers, service: ServiceProcess
) -> None:
    """SIGKILL the node that leads JetStream's meta group and every stream and durable
    consumer, and holds the service's connection, mid-load; start it again after 5 s."""
    cluster = servers.cluster
    await service.start_and_wait(within=60.0)
    figures: dict[str, Any] = {}
    async with contextlib.AsyncExitStack() as stack:
        probe = await nats.connect(servers.nats_urls, max_reconnect_attempts=-1)
        stack.push_async_callback(probe.close)
        figures["replication at start"] = await replication(probe.jetstream())

        # Put every leader on the node the service is connected to.
        # The service has one connection, so one node.
        (target,) = [n for n in cluster.nodes if await connected(n, subjects.SERVICE_NAME)]
        await cluster.move_meta_leader(target.server_name)
        not_moved = await lead_from(probe, target.server_name)
        figures["killed node"] = target.server_name
        figures["groups it did not lead"] = not_moved

    async with bench(servers) as b:
        b.figures.update(figures)
        await b.warm_up()
        b.figures["the killed node led"] = await led_by(b.nc, cluster, target.server_name)
        lag = await b.nc.jetstream().consumer_info(STATE_STREAM, STATE_EVENTS_CONSUMER)
        b.figures["state revisions without their event yet at the kill"] = (
            lag.num_pending + lag.num_ack_pending
        )
        b.figures["connections on the killed node"] = Counter(
            name or "load or program" for name in await asyncio.to_thread(target.client_names)
        )
        killed_at = time.monotonic()
        await asyncio.to_thread(target.kill)
        elected = asyncio.create_task(
            asyncio.to_thread(cluster.wait_meta_leader, CLUSTER_HEALTHY_WITHIN_S)
        )
        b.figures["serves again after s"] = round(await b.serves_again(killed_at), 3)
        b.figures["new meta leader"] = await elected
        b.figures["meta leader elected after s"] = round(time.monotonic() - killed_at, 2)
        await asyncio.sleep(max(0.0, NODE_DOWN_S - (time.monotonic() - killed_at)))

        restarting = time.monotonic()
        await asyncio.to_thread(target.start)
        await asyncio.to_thread(cluster.wait_healthy, CLUSTER_HEALTHY_WITHIN_S)
        back_at = time.monotonic()
        b.figures["node down s"] = round(restarting - killed_at, 2)
        b.figures["restarted node current after s"] = round(back_at - restarting, 2)
        await asyncio.sleep(AFTER_RESTART_S)
        await b.stop_load()
        assert service.is_running, service.log_tail()
        b.figures["service connected to"] = [
            n.server_name for n in cluster.nodes if await connected(n, subjects.SERVICE_NAME)
        ]
        # Calls in flight at the kill are among those sent before it.
        b.figures["outcomes of calls sent before the kill"] = b.outcomes(0, killed_at)
        b.figures["while the node was down"] = b.outcomes(killed_at, restarting)
        b.figures["after it was started again"] = b.outcomes(restarting, float("inf"))
        b.report("sigkill of the leading node of three")

        # Successes, and while the cluster elected new leaders timeouts, no responders,
        # connection errors or `unavailable` (no bug replies, no refusals).
        assert not b.outage_outcomes_beyond_expected(), b.figures

        await settle_and_check(b, servers.database_url)
        b.figures["replication at the end"] = await replication(b.nc.jetstream())
        b.report("sigkill of the leading node of three, settled")
