"""Per-operation cost as the number of agents grows to 100,000, and the service's memory.

    python bench/scale.py [--max 100000] [--levels 1000,10000,100000] [--quick]
        [--seconds 5] [--warmup 1] [--inflight 50] [--grow-inflight 256] [--workers 50]
        [--retries 1] [--json out.json] [--keep]
    python bench/scale.py --report out.json     (print a saved run's report again)

Starts its own nats-server and PostgreSQL and `agent-orchestrator serve` (the harness of
commands.py), then grows the population level by level. Every agent is made through the service:
agent.create, then agent.state.update (a ~200-byte state). At each level it measures, with
--inflight requests in flight for --seconds (after --warmup): agent.get and agent.state.update
(merge) on random agents of the whole population, agent.list pages from a random keyset cursor
(all agents, and filtered by type), pause + activate, agent.send and agent.execute on random
agents of the whole population, and agent.create. Each level's figures are given as ratios to the
first level's, with a verdict against +-20%, next to the service's RSS, nats-server's RSS and the
number of JetStream consumers.

Every agent of the population is initialized and ACTIVE (no JetStream consumer is made per
agent any more), and --workers of them run an SDK AgentWorker (in this process, on a connection
of their own) that receives their messages and runs their tasks: the consumer count stays at
two per running worker, whatever the population. Exit code 1 when a reply was an error or
wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import os
import platform
import random
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import asyncpg
import nats
from bridge import NOISY_PCT, machine_cpu_s, other_pct
from commands import (
    DRAIN_TIMEOUT_S,
    FASTSTREAM,
    FASTSTREAM_SUBJECT,
    BenchError,
    Call,
    Child,
    Config,
    CpuProbes,
    Outbox,
    ReplyError,
    Result,
    Servers,
    _descendants,
    echo_call,
    echo_child,
    encode,
    error_lines,
    expect,
    measure,
    postgres_settings,
    request_json,
    run_bench,
    running,
    service_child,
    tree_cpu_s,
    wait_answering,
)
from nats.aio.client import Client
from pydantic import JsonValue
from scale_explain import explain_hot_queries, explain_lines
from scale_population import TYPES, Growth, Population, activate_all, agent_body, grow
from state_checkpoints import MergeLedger, small_state, state_update_call

from agent_orchestrator.client import AgentWorker, InboxMessage, TaskRun
from agent_orchestrator.contracts import subjects
from agent_orchestrator.domain.cursor import encode_cursor
from agent_orchestrator.storage.state import STATE_EVENTS_CONSUMER, STATE_STREAM

ECHO = FASTSTREAM
GET, LIST, LIST_TYPE = "agent.get", "agent.list page", "agent.list by type"
STATE, TRANSITION, CREATE = "agent.state.update", "pause + activate", "agent.create"
SEND, EXECUTE = "agent.send", "agent.execute"
#: In the order they are measured at each level; agent.create last, since it adds agents. The
#: FastStream echo (a process of its own) is each level's floor: the other scenarios' req/s are
#: judged as ratios to it, so that what the rest of the machine does cancels out.
SCENARIOS = (ECHO, GET, LIST, LIST_TYPE, STATE, TRANSITION, SEND, EXECUTE, CREATE)
PAGE = 50
#: Cursors are taken from this position on (creation order), so that every page is full.
MIN_CURSOR_POSITION = 600
MIN_LEVEL = 1000
#: A level's figure within this factor of the first level's is flat (from the issue).
TOLERANCE = 0.20
#: Service RSS at any level at most this many times the first level's (memory does not grow).
MEMORY_TOLERANCE = 1.20
#: --quick: levels, measured s, warm-up s and quiet wait s per scenario.
QUICK_LEVELS, QUICK_SECONDS, QUICK_WARMUP, QUICK_QUIET_WAIT = (1000, 5000), 2.0, 0.5, 10.0


async def start_workers(nc: Client, agent_ids: Sequence[str]) -> list[asyncio.Task[None]]:
    """An SDK AgentWorker per agent (acks every message, answers every task at once)."""
    running = []
    for agent_id in agent_ids:
        worker = AgentWorker(nc, agent_id, heartbeat=False)

        @worker.task
        async def answer(run: TaskRun) -> JsonValue:
            return {"ok": True}

        @worker.message
        async def receive(message: InboxMessage) -> None:
            return None

        running.append(asyncio.create_task(worker.run()))
    return running


async def consumer_counts(nc: Client) -> dict[str, int]:
    """JetStream consumers on AGENT_MESSAGES, on AGENT_TASKS, and in the whole account."""
    js = nc.jetstream()
    counts = {}
    for stream in (subjects.MESSAGES_STREAM, subjects.TASKS_STREAM):
        counts[stream] = (await js.stream_info(stream)).state.consumer_count
    counts["account"] = (await js.account_info()).consumers
    return counts


# --- the calls of each scenario --------------------------------------------------------------


def random_get_call(nc: Client, population: Population, slot: int) -> Call:
    """agent.get of a random agent of the whole population."""
    rng = random.Random(slot)

    async def call() -> None:
        agent_id = rng.choice(population.ids)
        reply = await request_json(nc, subjects.AGENT_GET, {"agent_id": agent_id})
        expect(reply, "agent_id", agent_id)

    return call


def list_call(nc: Client, population: Population, slot: int, *, by_type: bool) -> Call:
    """One agent.list page of PAGE agents older than a random agent (a keyset cursor), all
    types or one; the page must be full, ordered, older than the cursor and of that type."""
    rng = random.Random(1000 + slot)

    async def call() -> None:
        before = population.ids[rng.randrange(MIN_CURSOR_POSITION, len(population))]
        body: dict[str, Any] = {"limit": PAGE, "cursor": encode_cursor("before", before)}
        if by_type:
            body["type"] = rng.choice(TYPES)
        reply = await request_json(nc, subjects.AGENT_LIST, body)
        ids = [str(item["agent_id"]) for item in reply.get("items", [])]
        if len(ids) != PAGE:
            raise ReplyError("short page", f"{len(ids)} agents before {before}, not {PAGE}")
        if ids != sorted(ids, reverse=True) or ids[0] >= before:
            raise ReplyError("wrong page", f"not newest first below {before}: {ids[:3]}")
        if by_type and any(item["type"] != body["type"] for item in reply["items"]):
            raise ReplyError("wrong page", f"an agent of another type than {body['type']}")

    return call


def flip_call(nc: Client, population: Population, slot: int, inflight: int) -> Call:
    """agent.pause then agent.activate of a random agent of the whole population (from this
    slot's share, so that no two slots move one agent at once)."""
    rng = random.Random(2000 + slot)

    async def call() -> None:
        agent_id = population.ids[slot + inflight * rng.randrange(len(population) // inflight)]
        reply = await request_json(nc, subjects.AGENT_PAUSE, {"agent_id": agent_id})
        expect(reply, "status", "PAUSED")
        reply = await request_json(nc, subjects.AGENT_ACTIVATE, {"agent_id": agent_id})
        expect(reply, "status", "ACTIVE")

    return call


def send_call(nc: Client, population: Population, slot: int) -> Call:
    """agent.send between two random agents of the whole population."""
    rng = random.Random(3000 + slot)

    async def call() -> None:
        body = {
            "from_agent_id": rng.choice(population.ids),
            "to_agent_id": rng.choice(population.ids),
            "type": "bench",
            "content": {"n": rng.randrange(1_000_000)},
        }
        reply = await request_json(nc, subjects.AGENT_SEND, body)
        expect(reply, "status", "SENT")

    return call


def execute_call(nc: Client, population: Population, slot: int) -> Call:
    """agent.execute on a random agent of the whole population."""
    rng = random.Random(4000 + slot)

    async def call() -> None:
        agent_id = rng.choice(population.ids)
        body = {"agent_id": agent_id, "input": {"text": "scale"}}
        reply = await request_json(nc, subjects.AGENT_EXECUTE, body)
        expect(reply, "status", "QUEUED")

    return call


def create_call(nc: Client, population: Population, created: list[str]) -> Call:
    """agent.create; the new agent gets its state after the measurement."""

    async def call() -> None:
        reply = await request_json(nc, subjects.AGENT_CREATE, population.next_body()[1])
        expect(reply, "status", "CREATED")
        created.append(str(reply["agent_id"]))

    return call


# --- one level -------------------------------------------------------------------------------


def rss_kib(pid: int | None, field_name: str = "VmRSS") -> int:
    """A process's resident memory (or VmHWM, its peak), KiB, from /proc/<pid>/status."""
    if pid is None:
        return 0
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field_name}:"):
                return int(line.split()[1])
    return 0


def pss_kib(pids: Sequence[int]) -> int:
    """Proportional set size of processes together (shared memory counted once), KiB."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
    return total


def descendants(root: int | None) -> list[int]:
    """A process and its children, grandchildren, ... (PostgreSQL's backends)."""
    if root is None:
        return []
    return [root, *_descendants(root)]


@dataclass
class Level:
    """Everything measured at one population size."""

    level: int
    agents: int
    growth: dict[str, Any]
    results: list[Result]
    noisy: dict[str, float]
    memory_mib: dict[str, float]
    data: dict[str, Any]
    #: scenario -> the FastStream echo measured right before it (its floor)
    floors: dict[str, Result]
    lost_updates: list[str]
    created_during_measurement: int
    background_after: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Options:
    """The command line."""

    config: Config
    levels: tuple[int, ...]
    grow_inflight: int
    workers: int
    retries: int
    quiet_wait: float
    quick: bool


def probes_for(servers: Servers, service: Child, echo: Child | None = None) -> CpuProbes:
    """CPU probes: the service, PostgreSQL, nats-server, this process, the echo, and `other`:
    the machine's busy time minus theirs (another job on the machine shows there)."""
    pid = service.proc.pid if service.proc is not None else None
    echo_pid = echo.proc.pid if echo is not None and echo.proc is not None else None

    def load_gen() -> float:
        t = os.times()
        return t.user + t.system

    probes: CpuProbes = {
        "service": lambda: tree_cpu_s(pid),
        "postgres": lambda: tree_cpu_s(servers.postgres_pid),
        "nats-server": lambda: tree_cpu_s(servers.nats_pid),
        "load-gen": load_gen,
        "echo": lambda: tree_cpu_s(echo_pid),
    }
    ours = list(probes.values())
    probes["other"] = lambda: machine_cpu_s() - sum(probe() for probe in ours)
    return probes


class Background:
    """The service's asynchronous work after a command: the outbox relay (events of PostgreSQL
    changes) and the state-events consumer (one event per state revision, one at a time)."""

    def __init__(self, nc: Client, conn: asyncpg.Connection) -> None:
        self.outbox = Outbox(conn)
        self.js = nc.jetstream()

    async def state_events(self) -> int:
        """State revisions whose event is not published yet."""
        info = await self.js.consumer_info(STATE_STREAM, STATE_EVENTS_CONSUMER)
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)

    async def backlog(self) -> dict[str, int]:
        """What is left of both."""
        return {"outbox": await self.outbox.backlog(), "state_events": await self.state_events()}

    async def drain(self) -> float:
        """Wait until both are idle; return how long that took."""
        began = time.monotonic()
        await self.outbox.drain()
        while await self.state_events():
            if time.monotonic() - began > DRAIN_TIMEOUT_S:
                raise BenchError(f"state events not published after {DRAIN_TIMEOUT_S:g} s")
            await asyncio.sleep(0.05)
        return round(time.monotonic() - began, 2)


async def other_busy_pct(probes: CpuProbes, seconds: float = 1.0) -> float:
    """How busy other processes keep the machine right now, % of all CPUs."""
    before = probes["other"]()
    await asyncio.sleep(seconds)
    return (probes["other"]() - before) / (seconds * (os.cpu_count() or 1)) * 100


async def wait_quiet(probes: CpuProbes, patience_s: float) -> float:
    """Wait (up to `patience_s`) until other processes leave the machine alone; return the
    seconds waited."""
    began = time.monotonic()
    while time.monotonic() - began < patience_s:
        if await other_busy_pct(probes) <= NOISY_PCT:
            break
    return time.monotonic() - began


async def measure_scenario(
    name: str,
    make_calls: Callable[[], Sequence[Call]],
    options: Options,
    probes: CpuProbes,
    background: Background,
    floor: Callable[[], Sequence[Call]],
) -> tuple[Result, dict[str, Any], Result]:
    """Drain the background work, wait for a quiet machine, measure the floor (the FastStream
    echo, for half as long) and right after it the scenario, and record the background work
    left and how long it took to finish; again (up to --retries times) while other processes
    kept the machine busy, keeping the quietest measurement."""
    best: tuple[Result, dict[str, Any], Result] | None = None
    floor_config = replace(options.config, seconds=max(1.0, options.config.seconds / 2))
    for attempt in range(options.retries + 1):
        await background.drain()
        waited = await wait_quiet(probes, options.quiet_wait)
        echo = await measure(ECHO, floor(), floor_config, probes)
        result = await measure(name, make_calls(), options.config, probes)
        lag: dict[str, Any] = await background.backlog()
        lag["drain_s"] = await background.drain()
        result.outbox_backlog, result.outbox_drain_s = lag["outbox"], lag["drain_s"]
        lag["waited_for_quiet_s"] = round(waited, 1)
        if best is None or other_pct(result) < other_pct(best[0]):
            best = result, lag, echo
        if other_pct(result) <= NOISY_PCT or result.errors:
            break
        if attempt < options.retries:
            print(f"    other processes took {other_pct(result):.0f}% of the machine: again")
    assert best is not None
    return best


async def data_figures(nc: Client, conn: asyncpg.Connection) -> dict[str, Any]:
    """How big the stores are: PostgreSQL's database, the state bucket, the event stream."""
    js = nc.jetstream()
    figures: dict[str, Any] = {
        "postgres_db_mib": round(
            int(await conn.fetchval("SELECT pg_database_size(current_database())")) / 2**20, 1
        ),
        "agents_rows": int(await conn.fetchval("SELECT count(*) FROM agents")),
    }
    for stream in (f"KV_{subjects.STATE_BUCKET}", "AGENT_EVENTS"):
        with contextlib.suppress(Exception):
            info = await js.stream_info(stream)
            figures[f"{stream}_msgs"] = info.state.messages
            figures[f"{stream}_mib"] = round(info.state.bytes / 2**20, 1)
    return figures


async def measure_level(
    nc: Client,
    conn: asyncpg.Connection,
    population: Population,
    growth: Growth,
    options: Options,
    probes: CpuProbes,
    servers: Servers,
    service: Child,
) -> Level:
    """Every scenario at the current population; then the created agents get their state."""
    inflight = options.config.inflight
    background = Background(nc, conn)
    agents = len(population)
    ledger = MergeLedger()
    created: list[str] = []
    makers: dict[str, Callable[[], Sequence[Call]]] = {
        ECHO: lambda: [echo_call(nc, FASTSTREAM_SUBJECT) for _ in range(inflight)],
        GET: lambda: [random_get_call(nc, population, s) for s in range(inflight)],
        LIST: lambda: [list_call(nc, population, s, by_type=False) for s in range(inflight)],
        LIST_TYPE: lambda: [list_call(nc, population, s, by_type=True) for s in range(inflight)],
        STATE: lambda: [state_update_call(nc, population.ids, s, ledger) for s in range(inflight)],
        TRANSITION: lambda: [flip_call(nc, population, s, inflight) for s in range(inflight)],
        SEND: lambda: [send_call(nc, population, s) for s in range(inflight)],
        EXECUTE: lambda: [execute_call(nc, population, s) for s in range(inflight)],
        CREATE: lambda: [create_call(nc, population, created) for _ in range(inflight)],
    }
    results, lags, floors = [], {}, {}
    for name in SCENARIOS[1:]:
        result, lags[name], floors[name] = await measure_scenario(
            name, makers[name], options, probes, background, makers[ECHO]
        )
        results.append(result)
    results.insert(0, floors[SCENARIOS[1]])
    lost = await ledger.lost_updates(nc, inflight)
    service_pid = service.proc.pid if service.proc is not None else None
    memory = {
        "service_rss": rss_kib(service_pid) / 1024,
        "service_peak_rss": rss_kib(service_pid, "VmHWM") / 1024,
        "nats_rss": rss_kib(servers.nats_pid) / 1024,
        "postgres_pss": pss_kib(descendants(servers.postgres_pid)) / 1024,
    }
    data = await data_figures(nc, conn)
    data["consumers"] = await consumer_counts(nc)
    data["plans"] = await explain_hot_queries(conn, population.ids)

    began = time.perf_counter()
    await activate_all(nc, created, len(population), options.grow_inflight)
    population.ids += created
    backfill_s = time.perf_counter() - began
    return Level(
        level=growth.level,
        agents=agents,
        growth={
            "added": growth.added,
            "seconds": round(growth.seconds, 1),
            "agents_per_s": round(growth.per_s, 1),
            "errors": dict(growth.errors),
            "error_samples": growth.samples,
            "cpu_us_per_agent": growth.cpu_us_per_agent,
            "states_given_to_measured_creates": len(created),  # and activated
            "states_given_s": round(backfill_s, 1),
        },
        results=results,
        noisy={r.scenario: round(other_pct(r), 1) for r in results if other_pct(r) > NOISY_PCT},
        memory_mib={k: round(v, 1) for k, v in memory.items()},
        data=data,
        floors=floors,
        lost_updates=lost,
        created_during_measurement=len(created),
        background_after=lags,
    )


# --- ratios and verdicts ---------------------------------------------------------------------


def cost_us(result: Result) -> float:
    """CPU µs per operation of the service, PostgreSQL and nats-server together."""
    cpu = result.cpu_us_per_request
    return cpu["service"] + cpu["postgres"] + cpu["nats-server"]


def over(a: float, b: float) -> float:
    """a / b, rounded; NaN when b is 0."""
    return round(a / b, 3) if b else float("nan")


def ratios(result: Result, base: Result, echo: Result, base_echo: Result) -> dict[str, float]:
    """This level's figures over the first level's; `per_echo`: req/s as a share of the
    FastStream echo's at this level; `vs_echo`: that share over the first level's."""
    return {
        "per_echo": over(result.req_per_s, echo.req_per_s),
        "vs_echo": over(
            over(result.req_per_s, echo.req_per_s), over(base.req_per_s, base_echo.req_per_s)
        ),
        "req_per_s": over(result.req_per_s, base.req_per_s),
        "p50": over(result.p50_ms, base.p50_ms),
        "p99": over(result.p99_ms, base.p99_ms),
        "cpu_per_op": over(cost_us(result), cost_us(base)),
        "service_cpu_per_op": over(
            result.cpu_us_per_request["service"], base.cpu_us_per_request["service"]
        ),
    }


def judge(r: dict[str, float]) -> dict[str, str]:
    """Two verdicts, each flat (within +-20%), WORSE (beyond it the bad way) or better:
    `cost`, the CPU per operation of the service, PostgreSQL and nats-server together; `speed`,
    throughput as a share of the FastStream echo's at the same level (absolute req/s, p50 and
    p99 are shown, not judged: they follow whatever else runs on the machine). `verdict` is
    WORSE when either is, better when one is better and none WORSE."""
    low, high = 1 - TOLERANCE, 1 + TOLERANCE

    def verdict(worse: bool, better: bool) -> str:
        return "WORSE" if worse else ("better" if better else "flat")

    cost = verdict(r["cpu_per_op"] > high, r["cpu_per_op"] < low)
    speed = verdict(r["vs_echo"] < low, r["vs_echo"] > high)
    both = {cost, speed}
    overall = "WORSE" if "WORSE" in both else ("better" if "better" in both else "flat")
    return {"cost": cost, "speed": speed, "verdict": overall}


@dataclass
class Report:
    """Everything a run found."""

    settings: dict[str, Any]
    levels: list[Level]
    notes: list[str]
    seconds: float = 0.0

    def rows(self) -> list[dict[str, Any]]:
        """Per scenario and level: ratios to the first level and the verdict."""
        base = {r.scenario: r for r in self.levels[0].results}
        out = []
        for level in self.levels:
            for r in level.results:
                if r.scenario == ECHO:
                    continue
                echo, base_echo = level.floors[r.scenario], self.levels[0].floors[r.scenario]
                rr = ratios(r, base[r.scenario], echo, base_echo)
                noisy = r.scenario in level.noisy or r.scenario in self.levels[0].noisy
                out.append(
                    {"scenario": r.scenario, "level": level.level, "ratios": rr}
                    | judge(rr)
                    | {"noisy": noisy}
                )
        return out

    def memory_ratio(self) -> float:
        """The largest service RSS over the first level's."""
        first = self.levels[0].memory_mib["service_rss"] or float("nan")
        return max(level.memory_mib["service_rss"] for level in self.levels) / first

    @property
    def flat(self) -> bool:
        """No scenario got worse than the tolerance at any level."""
        return all(row["verdict"] != "WORSE" for row in self.rows())

    @property
    def memory_flat(self) -> bool:
        """The service's RSS stayed within MEMORY_TOLERANCE of the first level's."""
        return self.memory_ratio() <= MEMORY_TOLERANCE

    @property
    def flagged(self) -> bool:
        """True when any reply was an error or wrong (while growing too), or a merge was
        lost."""
        return (
            any(r.errors for level in self.levels for r in level.results)
            or any(level.lost_updates for level in self.levels)
            or any(level.growth["errors"] for level in self.levels)
        )


def level_table(report: Report) -> str:
    """Absolute figures of every scenario at every level."""
    header = (
        f"{'scenario':<20}{'level':>8}{'requests':>9}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'svc us':>8}{'pg us':>7}{'nats us':>8}{'other%':>7}{'errors':>7}"
    )
    lines = [header, "-" * len(header)]
    for name in SCENARIOS:
        for level in report.levels:
            r = next(x for x in level.results if x.scenario == name)
            cpu = r.cpu_us_per_request
            lines.append(
                f"{name:<20}{level.level:>8}{r.requests:>9}{r.req_per_s:>8.0f}{r.p50_ms:>8.2f}"
                f"{r.p99_ms:>8.2f}{cpu['service']:>8.0f}{cpu['postgres']:>7.0f}"
                f"{cpu['nats-server']:>8.0f}{other_pct(r):>7.0f}{r.errors:>7}"
            )
    return "\n".join(lines)


def ratio_table(report: Report) -> str:
    """Each level over the first, per scenario, with the verdict."""
    base = report.levels[0].level
    header = (
        f"{'scenario':<20}{'level':>8}{'x echo':>8}{'x req/s':>9}{'x vs echo':>10}{'x p50':>7}"
        f"{'x p99':>7}{'x CPU/op':>9}{'x svc CPU':>10}  {'cost':<8}{'speed':<8}"
        f"(+-{TOLERANCE:.0%} of {base:,})"
    )
    lines = [header, "-" * len(header)]
    for name in SCENARIOS:
        for row in (row for row in report.rows() if row["scenario"] == name):
            r = row["ratios"]
            if row["level"] == base:
                lines.append(f"{name:<20}{row['level']:>8}{r['per_echo']:>8.3f}")
                continue
            lines.append(
                f"{name:<20}{row['level']:>8}{r['per_echo']:>8.3f}{r['req_per_s']:>9.2f}"
                f"{r['vs_echo']:>10.2f}{r['p50']:>7.2f}{r['p99']:>7.2f}{r['cpu_per_op']:>9.2f}"
                f"{r['service_cpu_per_op']:>10.2f}  "
                f"{row['cost']:<8}{row['speed']:<8}{'NOISY' if row['noisy'] else ''}"
            )
    return "\n".join(lines)


def flatness(report: Report) -> list[dict[str, Any]]:
    """Per scenario, across all levels: the largest over the smallest of its req/s as a share
    of the echo's, and of its CPU per operation; flat when every level is within the
    tolerance of the first level's (the issue's +-20% from 1k to 100k)."""
    rows = report.rows()
    out = []
    for name in SCENARIOS[1:]:
        mine = [row for row in rows if row["scenario"] == name]
        shares = [row["ratios"]["per_echo"] for row in mine]
        costs = [
            cost_us(next(r for r in level.results if r.scenario == name)) for level in report.levels
        ]
        out.append(
            {
                "scenario": name,
                "per_echo": shares,
                "per_echo_max_over_min": over(max(shares), min(shares)),
                "cpu_us_per_op": [round(c) for c in costs],
                "cpu_max_over_min": over(max(costs), min(costs)),
                "cost": "MISSED" if any(row["cost"] == "WORSE" for row in mine) else "met",
                "speed": "MISSED" if any(row["speed"] == "WORSE" for row in mine) else "met",
                "flat": all(row["verdict"] != "WORSE" for row in mine),
            }
        )
    return out


def flatness_table(report: Report) -> str:
    """Flatness of each scenario across the levels."""
    levels = "/".join(f"{level.level // 1000}k" for level in report.levels)
    header = (
        f"{'scenario':<20}{'x echo at ' + levels:<42}{'max/min':>8}{'CPU us/op':>26}"
        f"{'max/min':>8}  {'cost':<7}{'speed':<7}(+-{TOLERANCE:.0%} of the first)"
    )
    lines = [header, "-" * len(header)]
    for row in flatness(report):
        shares = " ".join(f"{v:.3f}" for v in row["per_echo"])
        costs = " ".join(f"{v:,}" for v in row["cpu_us_per_op"])
        lines.append(
            f"{row['scenario']:<20}{shares:<42}{row['per_echo_max_over_min']:>8.2f}"
            f"{costs:>26}{row['cpu_max_over_min']:>8.2f}  {row['cost']:<7}{row['speed']}"
        )
    return "\n".join(lines)


def memory_table(report: Report) -> str:
    """Population, how long it took to make (and the service's CPU µs per agent made), memory
    of each process, store sizes, JetStream consumers."""
    first = report.levels[0].memory_mib["service_rss"] or float("nan")
    header = (
        f"{'level':>8}{'agents':>9}{'grow s':>8}{'agents/s':>9}{'svc us/ag':>10}{'svc RSS':>9}"
        f"{'x first':>8}"
        f"{'svc peak':>9}{'nats RSS':>9}{'pg PSS':>8}{'pg db':>8}{'KV msgs':>9}"
        f"{'consumers':>10}"
    )
    lines = [header, "-" * len(header) + "  (MiB)"]
    for level in report.levels:
        m, g, d = level.memory_mib, level.growth, level.data
        lines.append(
            f"{level.level:>8}{level.agents:>9}{g['seconds']:>8.0f}{g['agents_per_s']:>9.0f}"
            f"{g['cpu_us_per_agent'].get('service', 0):>10,.0f}{m['service_rss']:>9.0f}"
            f"{m['service_rss'] / first:>8.2f}"
            f"{m['service_peak_rss']:>9.0f}{m['nats_rss']:>9.0f}{m['postgres_pss']:>8.0f}"
            f"{d.get('postgres_db_mib', 0):>8.0f}{d.get(f'KV_{subjects.STATE_BUCKET}_msgs', 0):>9}"
            f"{d.get('consumers', {}).get('account', 0):>10}"
        )
    return "\n".join(lines)


def verdict_lines(report: Report) -> list[str]:
    """The two answers: per-operation cost flat? memory flat?"""
    rows = report.rows()
    base = f"{report.levels[0].level:,}"

    def missed(key: str) -> str:
        worse = [f"{r['scenario']} at {r['level']:,}" for r in rows if r[key] == "WORSE"]
        return f"MISSED ({', '.join(worse)})" if worse else "met"

    lines = [
        f"cost (CPU per op) within +-{TOLERANCE:.0%} of the {base} level: {missed('cost')}",
        f"speed (req/s, p50) within +-{TOLERANCE:.0%} of the {base} level: {missed('speed')}",
        f"service memory: largest RSS {report.memory_ratio():.2f}x the first level's "
        f"(limit {MEMORY_TOLERANCE:.2f}x): " + ("met" if report.memory_flat else "MISSED"),
    ]
    for level in report.levels:
        for name, lag in level.background_after.items():
            if lag["outbox"] or lag["state_events"]:
                lines.append(
                    f"after {name} at {level.level:,}: {lag['outbox']} outbox rows and "
                    f"{lag['state_events']} state events unpublished, done {lag['drain_s']:.2f} s "
                    "later"
                )
        for name, pct in level.noisy.items():
            lines.append(
                f"NOISY: other processes kept {pct:.0f}% of the machine busy during {name} at "
                f"{level.level:,}; its absolute figures are suspect"
            )
        for lost in level.lost_updates[:5]:
            lines.append(f"LOST UPDATE at {level.level:,}: {lost}")
    return lines


def print_report(report: Report) -> None:
    """Settings, the tables, verdicts, notes, errors."""
    print("\nsettings:")
    for key, value in report.settings.items():
        print(f"  {key}: {value}")
    print()
    print(level_table(report))
    print("svc/pg/nats us: CPU microseconds per operation of the service, PostgreSQL, nats-server")
    print()
    print(ratio_table(report))
    print(
        "x echo: req/s over the FastStream echo's at the same level; x vs echo: that over the "
        "first level's (judged as speed)\nx CPU/op: service + PostgreSQL + nats-server CPU per "
        "operation over the first level's (judged as cost)"
    )
    print()
    print(flatness_table(report))
    print()
    print(memory_table(report))
    print()
    for line in verdict_lines(report):
        print(line)
    print("\nhot queries (EXPLAIN ANALYZE; the generic plan when a prepared statement's differs):")
    for line in explain_lines([(level.level, level.data["plans"]) for level in report.levels]):
        print(f"  {line}")
    grown = sum(level.growth["added"] for level in report.levels)
    growth_s = sum(level.growth["seconds"] for level in report.levels)
    created = sum(level.growth["states_given_to_measured_creates"] for level in report.levels)
    backfill_s = sum(level.growth["states_given_s"] for level in report.levels)
    print(
        f"growing: {grown:,} agents (create + state + initialize + activate) in "
        f"{growth_s:.0f} s; the agent.create scenarios made {created:,} more, given their state "
        f"and activated in {backfill_s:.0f} s; the whole "
        f"run took {report.seconds:.0f} s"
    )
    results = [r for level in report.levels for r in level.results]
    for line in report.notes + error_lines(results):
        print(line)
    for level in report.levels:
        if level.growth["errors"]:
            print(
                f"growing to {level.level:,}: {level.growth['errors']} (made others instead), "
                f"e.g. {level.growth['error_samples']}"
            )
    if report.flagged:
        print("\nFLAGGED: some replies were errors or wrong; those figures are suspect.")


def write_json(path: Path, report: Report) -> None:
    """The same figures as the tables, as JSON."""
    document = {
        "settings": report.settings,
        "target": f"every scenario's req/s, p50 and CPU per op within +-{TOLERANCE:.0%} of the "
        f"first level's; service RSS <= {MEMORY_TOLERANCE}x the first level's",
        "levels": [
            asdict(level)
            | {
                "results": [asdict(r) for r in level.results],
                "floors": {name: asdict(r) for name, r in level.floors.items()},
            }
            for level in report.levels
        ],
        "ratios": report.rows(),
        "flatness": flatness(report),
        "memory_ratio": round(report.memory_ratio(), 3),
        "target_met": report.flat,
        "memory_target_met": report.memory_flat,
        "seconds": round(report.seconds, 1),
        "notes": report.notes,
        "flagged": report.flagged,
    }
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def describe(options: Options, nats_version: str, postgres: str) -> dict[str, Any]:
    """The settings of this run, printed and written with the figures."""
    config = options.config
    return {
        "machine": (
            f"{os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}"
        ),
        "levels": ", ".join(f"{level:,}" for level in options.levels)
        + (" (--quick)" if options.quick else ""),
        "population": (
            f"every agent made through the service: agent.create ({len(encode(agent_body(0)))}"
            f"-byte body, {len(TYPES)} types in turn) + agent.state.update (replace, "
            f"{len(encode(small_state(0)))}-byte state), then agent.initialize and "
            f"agent.activate: every agent ACTIVE; {options.grow_inflight} in flight"
        ),
        "load": (
            f"1 nats-py {importlib.metadata.version('nats-py')} connection, {config.inflight} "
            f"requests in flight, {config.warmup:g} s warm-up + {config.seconds:g} s per "
            f"scenario, up to {options.retries} retries while other processes keep more than "
            f"{NOISY_PCT:g}% of the machine busy"
        ),
        "scenarios": (
            "agent.get and agent.state.update (merge of one key) on random agents of the whole "
            f"population; agent.list pages of {PAGE} from a random keyset cursor, all and "
            "filtered by type; pause + activate (one call), agent.send and agent.execute on "
            "random agents of the whole population; agent.create (its agents get their state "
            "afterwards and count from the next level on)"
        ),
        "workers": (
            f"{options.workers} SDK AgentWorkers (this process, a connection of their own) "
            "on the first agents: each creates 2 consumers; no other agent has any"
        ),
        "nats-server": f"{nats_version}, JetStream file store in a temp folder, default options",
        "postgres": postgres,
        "service": "agent-orchestrator serve, AO_LOG_LEVEL=WARNING, otherwise defaults",
        "scenario start": (
            "every scenario starts with the outbox and the state-events consumer drained, after "
            f"waiting up to {options.quiet_wait:g} s for other processes to keep under "
            f"{NOISY_PCT:g}% of the machine busy"
        ),
    }


async def run_all(options: Options, servers: Servers) -> Report:
    """Start the service, make the working set, then grow and measure level by level."""
    began = time.perf_counter()
    nc = await nats.connect(servers.nats_url, name="bench-scale")
    worker_nc = await nats.connect(servers.nats_url, name="bench-scale workers")
    conn = await asyncpg.connect(servers.database_url)
    child = service_child(servers.nats_url, servers.database_url, servers.folder)
    echo = echo_child("faststream", servers.nats_url, FASTSTREAM_SUBJECT, servers.folder)
    notes: list[str] = []
    levels: list[Level] = []
    try:
        settings = describe(
            options,
            str(nc.connected_server_version).strip("<>"),
            await postgres_settings(servers.database_url),
        )
        async with running(child), running(echo):
            probe = encode({"agent_id": str(uuid.uuid4())})
            await wait_answering(nc, child, subjects.AGENT_GET, probe)
            await wait_answering(nc, echo, FASTSTREAM_SUBJECT, encode(agent_body(0)))
            probes = probes_for(servers, child, echo)
            population = Population()
            workers: list[asyncio.Task[None]] = []
            try:
                for level in options.levels:
                    growth = await grow(nc, population, level, options.grow_inflight, probes)
                    if not workers:
                        wanted = population.ids[: options.workers]
                        workers = await start_workers(worker_nc, wanted)
                        print(f"  {len(workers)} workers running", flush=True)
                    print(f"level {level:,}: {len(population):,} agents", flush=True)
                    levels.append(
                        await measure_level(
                            nc, conn, population, growth, options, probes, servers, child
                        )
                    )
            finally:
                for task in workers:
                    task.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
        notes += [*child.notes, *echo.notes, child.log_summary()]
    finally:
        await conn.close()
        await worker_nc.close()
        await nc.close()
    return Report(settings, levels, notes, time.perf_counter() - began)


# --- entry point -----------------------------------------------------------------------------


def levels_up_to(maximum: int) -> tuple[int, ...]:
    """1,000, 10,000, ... below `maximum`, then `maximum`."""
    levels, level = [], MIN_LEVEL
    while level < maximum:
        levels.append(level)
        level *= 10
    return (*levels, maximum)


def parse_args(argv: Sequence[str] | None) -> Options:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--max", type=int, default=None, help="largest population (100000)")
    parser.add_argument(
        "--levels", default=None, help="comma-separated populations (default 1000,10000,...,max)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: levels 1000,5000, 2 s per scenario"
    )
    parser.add_argument("--seconds", type=float, default=None, help="measured s a scenario (5)")
    parser.add_argument("--warmup", type=float, default=None, help="warm-up s a scenario (1)")
    parser.add_argument("--inflight", type=int, default=50, help="requests in flight")
    parser.add_argument(
        "--grow-inflight", type=int, default=256, help="agents being made at once while growing"
    )
    parser.add_argument("--workers", type=int, default=50, help="agents with a running SDK worker")
    parser.add_argument(
        "--retries", type=int, default=1, help="re-measure a scenario while the machine is busy"
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=None,
        help="before a scenario, wait up to this many s for other processes to calm down "
        "(30; 10 with --quick)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temp folder (server logs, data) afterwards"
    )
    args = parser.parse_args(argv)
    maximum = args.max or (QUICK_LEVELS[-1] if args.quick else 100_000)
    if args.levels:
        levels = tuple(sorted({int(v.replace("_", "")) for v in args.levels.split(",")}))
    elif args.quick and args.max is None:
        levels = QUICK_LEVELS
    else:
        levels = levels_up_to(maximum)
    seconds = args.seconds or (QUICK_SECONDS if args.quick else 5.0)
    warmup = args.warmup if args.warmup is not None else (QUICK_WARMUP if args.quick else 1.0)
    quiet_wait = args.quiet_wait
    if quiet_wait is None:
        quiet_wait = QUICK_QUIET_WAIT if args.quick else 30.0
    if len(levels) < 2 or levels[0] < MIN_LEVEL:
        parser.error(f"give at least two levels, the first >= {MIN_LEVEL}")
    if not 0 <= args.workers < levels[0] or levels[0] < 2 * args.inflight:
        parser.error("--workers must be below the first level, the first level >= 2x --inflight")
    if seconds <= 0 or warmup < 0 or args.inflight < 1 or args.grow_inflight < 1:
        parser.error("--seconds must be > 0, --warmup >= 0, --inflight, --grow-inflight >= 1")
    config = Config(float(seconds), float(warmup), args.inflight, args.json, args.keep)
    return Options(
        config,
        levels,
        args.grow_inflight,
        args.workers,
        args.retries,
        float(quiet_wait),
        args.quick,
    )


def load_report(path: Path) -> Report:
    """A report written with --json, to print again."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    levels = [
        Level(
            **(
                level
                | {
                    "results": [Result(**r) for r in level["results"]],
                    "floors": {name: Result(**r) for name, r in level["floors"].items()},
                }
            )
        )
        for level in doc["levels"]
    ]
    return Report(doc["settings"], levels, doc["notes"], doc["seconds"])


def main(argv: Sequence[str] | None = None) -> int:
    """Start the servers, grow and measure, print the report, stop everything (or, with
    --report, print a saved run's report again)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) == 2 and args[0] == "--report":
        report = load_report(Path(args[1]))
        print_report(report)
        return 1 if report.flagged else 0
    options = parse_args(argv)
    return run_bench(
        "ao-scale-",
        keep=options.config.keep,
        json_path=options.config.json_path,
        measure=lambda servers: run_all(options, servers),
        print_report=print_report,
        write_json=write_json,
    )


if __name__ == "__main__":
    sys.exit(main())
