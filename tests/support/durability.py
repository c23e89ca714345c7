"""Load and checks shared by the crash and fault tests.

``Load`` runs concurrent callers against the service over plain nats-py and remembers what it
was told: every acknowledged agent command (``Ack``), message (``agent.send``) and task
(``agent.execute``), and the outcome and timing of every call (``Call``), so a test can say what
callers saw before, during and after a fault. The checks compare that with what PostgreSQL and
JetStream hold once the service has settled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import nats
import nats.aio.client
import nats.errors
import pytest
from pydantic import JsonValue

from agent_orchestrator.client import AgentWorker, InboxMessage, OrchestratorClient, TaskRun
from agent_orchestrator.contracts import subjects
from tests.support.agents import sdk_agent
from tests.support.events import StreamEvent
from tests.support.polling import eventually

REQUEST_TIMEOUT_S = 2.0
#: A caller whose request failed waits this long before its next one (no busy loop while a
#: dependency is down).
FAILURE_PAUSE_S = 0.05
MUTATING = (
    subjects.AGENT_CREATE,
    subjects.AGENT_INITIALIZE,
    subjects.AGENT_ACTIVATE,
    subjects.AGENT_PAUSE,
)
OK = "ok"
TIMEOUT = "timeout"
NO_RESPONDERS = "no responders"
#: Event kinds that record a change of the agent row itself (each one a new version).
LIFECYCLE_KINDS = frozenset(
    {
        "created",
        "updated",
        "initializing",
        "ready",
        "active",
        "paused",
        "error",
        "terminated",
    }
)


# --------------------------------------------------------------------------- waiting


async def cancel_all(tasks: Sequence[asyncio.Task[Any]]) -> None:
    """Cancel tasks and wait until they are done."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def wait_relay_drained(db: asyncpg.Connection, *, within: float = 20.0) -> None:
    """Wait until every outbox row is published and no agent is INITIALIZING any more.

    With no INITIALIZING agent left no job will write again, so a drained outbox stays drained
    (as long as nothing else writes: stop the load first).
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


# --------------------------------------------------------------------------- the load


@dataclass(frozen=True)
class Ack:
    """A command that got a success reply, and what the reply claimed."""

    subject: str
    agent_id: str
    version: int
    status: str


@dataclass(frozen=True)
class Call:
    """One request of the load: when it left and came back (monotonic), and what came back."""

    subject: str
    sent: float
    done: float
    outcome: str


@dataclass
class Load:
    """Concurrent callers issuing commands; remembers every acknowledged one.

    ``worker`` walks agents through their lifecycle (create, initialize, activate, pause, ...);
    ``messenger`` sends messages between the given ACTIVE agents and ``tasker`` hands them tasks.
    """

    nc: nats.aio.client.Client
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    acks: list[Ack] = field(default_factory=list)
    #: communication_id -> to_agent_id of every acknowledged agent.send
    messages: dict[str, str] = field(default_factory=dict)
    #: task_id -> (agent_id, input) of every acknowledged agent.execute
    tasks: dict[str, tuple[str, Any]] = field(default_factory=dict)
    outcomes: Counter[str] = field(default_factory=Counter)
    in_flight: Counter[str] = field(default_factory=Counter)
    calls: list[Call] = field(default_factory=list)

    async def send(self, subject: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """One request; the reply body on success, None on an error reply or no reply."""
        if self.stop.is_set():
            return None
        self.in_flight[subject] += 1
        sent = time.monotonic()
        reply: Any = None
        try:
            msg = await self.nc.request(
                subject, json.dumps(body).encode(), timeout=REQUEST_TIMEOUT_S
            )
        except nats.errors.NoRespondersError:
            outcome = NO_RESPONDERS
        except (nats.errors.TimeoutError, TimeoutError):
            outcome = TIMEOUT
        except nats.errors.Error as exc:  # e.g. the connection is being re-established
            outcome = type(exc).__name__
        else:
            reply = json.loads(msg.data)
            if subjects.SERVICE_ERROR_HEADER in (msg.headers or {}):
                outcome = str(reply["error"]["code"])
            else:
                outcome = OK
        finally:
            self.in_flight[subject] -= 1
        self.calls.append(Call(subject, sent, time.monotonic(), outcome))
        self.outcomes[f"{subject}: {outcome}"] += 1
        if outcome != OK:
            await asyncio.sleep(FAILURE_PAUSE_S)
            return None
        if subject in MUTATING:
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

    async def messenger(self, n: int, agents: Sequence[str], *, pause_s: float = 0.0) -> None:
        """Send messages from one of ``agents`` to another, at random."""
        rng = random.Random(1000 + n)
        i = 0
        while not self.stop.is_set():
            sender, recipient = rng.sample(list(agents), 2)
            reply = await self.send(
                subjects.AGENT_SEND,
                {
                    "from_agent_id": sender,
                    "to_agent_id": recipient,
                    "type": "fault-test",
                    "content": {"messenger": n, "i": i},
                },
            )
            if reply is not None:
                self.messages[str(reply["communication_id"])] = recipient
            i += 1
            await asyncio.sleep(pause_s)

    async def tasker(self, n: int, agents: Sequence[str], *, pause_s: float = 0.0) -> None:
        """Hand tasks to ``agents``, at random."""
        rng = random.Random(2000 + n)
        i = 0
        while not self.stop.is_set():
            agent_id = rng.choice(list(agents))
            task_input = {"tasker": n, "i": i}
            reply = await self.send(
                subjects.AGENT_EXECUTE, {"agent_id": agent_id, "input": task_input}
            )
            if reply is not None:
                self.tasks[str(reply["task_id"])] = (agent_id, task_input)
            i += 1
            await asyncio.sleep(pause_s)

    def acked(self, subject: str) -> int:
        """How many commands on ``subject`` were acknowledged."""
        if subject == subjects.AGENT_SEND:
            return len(self.messages)
        if subject == subjects.AGENT_EXECUTE:
            return len(self.tasks)
        return sum(1 for a in self.acks if a.subject == subject)

    def outcomes_between(self, start: float, end: float) -> Counter[str]:
        """Outcomes of the calls sent in [start, end) (monotonic times), by outcome."""
        return Counter(c.outcome for c in self.calls if start <= c.sent < end)

    def first_success_after(self, moment: float, subject_set: Sequence[str] = MUTATING) -> float:
        """Seconds from ``moment`` to the first success reply of a call sent after it on one
        of ``subject_set`` (inf if none)."""
        done = [
            c.done
            for c in self.calls
            if c.sent >= moment and c.outcome == OK and c.subject in subject_set
        ]
        return min(done, default=float("inf")) - moment


# --------------------------------------------------------------------------- the checks


async def check_acknowledged_commands(db: asyncpg.Connection, acks: Sequence[Ack]) -> None:
    """Every acknowledged create and transition is stored, at the version its reply claimed."""
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


async def outbox_events(db: asyncpg.Connection) -> list[asyncpg.Record]:
    """Outbox rows of events (not jobs, messages or task assignments), in id order."""
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


async def event_order_problems(db: asyncpg.Connection, stream: list[StreamEvent]) -> list[str]:
    """Per agent, compare the stream with the agent's row and its transition history.

    In stream order, an agent's events never go back in version; its lifecycle events
    (``LIFECYCLE_KINDS``) are versions 1..N, one each, N being the agent's version; and its
    status events (with ``created``) are, version by version, its ``agent_transitions``.
    """
    events: dict[str, list[StreamEvent]] = defaultdict(list)
    for e in stream:
        events[str(e.envelope["agent_id"])].append(e)
    final = {
        str(r["agent_id"]): int(r["version"])
        for r in await db.fetch("SELECT agent_id, version FROM agents")
    }
    history: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for r in await db.fetch(
        "SELECT agent_id, version, to_status FROM agent_transitions ORDER BY agent_id, version"
    ):
        history[str(r["agent_id"])].append((int(r["version"]), str(r["to_status"]).lower()))
    problems = []
    if set(events) != set(final):
        problems.append(
            f"agents with events but no row: {sorted(set(events) - set(final))[:5]}; "
            f"agents with a row but no event: {sorted(set(final) - set(events))[:5]}"
        )
    backwards, gaps, not_history = {}, {}, {}
    for agent_id, agent_events in events.items():
        versions = [int(e.envelope["version"]) for e in agent_events]
        if versions != sorted(versions):
            backwards[agent_id] = [
                (e.envelope["type"], e.envelope["version"]) for e in agent_events
            ]
        lifecycle = [
            (int(e.envelope["version"]), str(e.envelope["type"]))
            for e in agent_events
            if e.envelope["type"] in LIFECYCLE_KINDS
        ]
        if [v for v, _ in lifecycle] != list(range(1, final.get(agent_id, 0) + 1)):
            gaps[agent_id] = (lifecycle, final.get(agent_id))
        statuses = [(v, kind) for v, kind in lifecycle if kind != "updated"]
        if statuses != history[agent_id]:
            not_history[agent_id] = (statuses, history[agent_id])
    if backwards:
        problems.append(
            f"{len(backwards)} agents whose events go back in version in stream order: "
            f"{list(backwards.items())[:3]}"
        )
    if gaps:
        problems.append(
            f"{len(gaps)} agents whose lifecycle events are not versions 1..N in stream order "
            f"(seen, N): {list(gaps.items())[:3]}"
        )
    if not_history:
        problems.append(
            f"{len(not_history)} agents whose status events differ from agent_transitions "
            f"(events, transitions): {list(not_history.items())[:3]}"
        )
    return problems


# --------------------------------------------------------------------------- agent programs


@dataclass
class Talkers:
    """ACTIVE agents whose programs (in-process ``AgentWorker``s, each on a NATS connection of
    its own that reconnects forever) record every message and task they are handed.

    Use ``talkers_running``; hand ``agents`` to ``Load.messenger`` and ``Load.tasker``.
    """

    agents: list[str] = field(default_factory=list)
    #: communication_id -> the agents whose handler received it (once per delivery)
    received: defaultdict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    #: (task_id, attempt) -> how often a handler ran it, and by which agent
    runs: Counter[tuple[str, int]] = field(default_factory=Counter)
    ran_by: dict[str, str] = field(default_factory=dict)

    def worker(self, nc: nats.aio.client.Client, agent_id: str) -> AgentWorker:
        """The program of one agent: tasks return their input, messages are recorded."""
        worker = AgentWorker(nc, agent_id, poll_s=0.5)

        @worker.task
        async def run_task(run: TaskRun) -> JsonValue:
            self.runs[(str(run.task_id), run.attempt)] += 1
            self.ran_by[str(run.task_id)] = agent_id
            value: JsonValue = run.input
            return value

        @worker.message
        async def receive(message: InboxMessage) -> None:
            self.received[str(message.communication_id)].append(agent_id)

        return worker


@asynccontextmanager
async def talkers_running(
    nats_url: str, client: OrchestratorClient, *, count: int, project: str
) -> AsyncIterator[Talkers]:
    """``count`` new ACTIVE agents of ``project``, each with its program running; the programs
    are stopped (running tasks cancelled) and their connections closed on exit."""
    talkers = Talkers()
    for n in range(count):
        talkers.agents.append(
            await sdk_agent(client, project, name=f"talker-{n}", type="fault-test")
        )
    async with contextlib.AsyncExitStack() as stack:
        for agent_id in talkers.agents:
            nc = await nats.connect(nats_url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
            stack.push_async_callback(nc.close)
            worker = talkers.worker(nc, agent_id)
            running = asyncio.create_task(worker.run())
            stack.push_async_callback(_stop_worker, worker, running)
        yield talkers


async def _stop_worker(worker: AgentWorker, running: asyncio.Task[None]) -> None:
    worker.stop(cancel_running=True)
    try:
        await asyncio.wait_for(running, 15)
    except TimeoutError:
        pytest.fail(f"the program of agent {worker.agent_id} did not stop within 15 s")
