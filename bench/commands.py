"""Throughput and latency of the command subjects, next to floors measured in the same run.

    python bench/commands.py [--seconds 5] [--warmup 1] [--inflight 50] [--json out.json]

Starts its own nats-server (JetStream) and PostgreSQL in a temp folder with default settings,
then runs each server under test in its own process: the floors (a raw nats-py echo, a
FastStream echo, F_read: a bare FastStream subscriber reading one row by primary key with
asyncpg, F_write: the same inserting one row per request) and `agent-orchestrator serve`. One
nats-py connection keeps exactly --inflight requests in flight for --seconds per scenario (after
--warmup), checks every reply and records its latency. Every scenario is reported as a ratio to
each floor; the issue's targets are judged on those ratios.
Exit code 1 when any reply was an error or wrong; missed targets do not change the exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import importlib.metadata
import json
import os
import platform
import random
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import asyncpg
import nats
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from profiling import profile_service, profiled

from agent_orchestrator.contracts import subjects
from agent_orchestrator.runtime import EmbeddedNats, EmbeddedPostgres
from agent_orchestrator.settings import Settings

BENCH_DIR = Path(__file__).resolve().parent
RAW_SUBJECT = "bench.echo.raw"
FASTSTREAM_SUBJECT = "bench.echo.faststream"
FLOOR_SUBJECTS = {"read": "bench.floor.read", "write": "bench.floor.write"}
RAW = "raw nats-py echo"
FASTSTREAM = "FastStream echo"
F_READ, F_WRITE = "F_read", "F_write"
#: The floors, in the order they run and appear, with their short labels (column headings).
FLOORS = {RAW: "raw", FASTSTREAM: "FS", F_READ: "F_read", F_WRITE: "F_write"}
#: Rows in F_read's table (bench/floor_servers.py); each request reads a random one.
FLOOR_READ_ROWS = 1000
SERVICE_CHILD_NAME = "agent-orchestrator serve"
GET, CREATE, TRANSITION = "agent.get", "agent.create", "pause/activate"
GET_POOL = 100
MIN_TRANSITION_POOL = 200
REQUEST_TIMEOUT_S = 5.0
READY_TIMEOUT_S = 60.0
DRAIN_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0
Targets = dict[str, tuple[tuple[str, float], ...]]
#: Scenario -> (floor, minimum ratio of the scenario's req/s to the floor's), from the issue.
TARGETS: Targets = {
    GET: ((F_READ, 1.0),),
    CREATE: ((FASTSTREAM, 0.3), (F_WRITE, 2.0)),
    TRANSITION: ((FASTSTREAM, 0.3),),
}

T = TypeVar("T")
R = TypeVar("R")
Call = Callable[[], Awaitable[None]]
"""One request of a scenario; raises ReplyError when the reply is not the expected success."""


class BenchError(RuntimeError):
    """The benchmark cannot go on (a server did not start, set-up failed)."""


class ReplyError(Exception):
    """A request that did not get the expected successful reply."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


# --- payloads and requests -------------------------------------------------------------------


def agent_body(name: str) -> dict[str, Any]:
    """A ~200-byte agent.create body; also the echo payload."""
    return {
        "name": name,
        "type": "researcher",
        "description": "Benchmark agent: reads sources, summarises them and reports back.",
        "metadata": {"team": "bench", "purpose": "throughput", "owner": "bench/commands.py"},
    }


def encode(body: dict[str, Any]) -> bytes:
    """Compact JSON, the way pydantic writes it."""
    return json.dumps(body, separators=(",", ":")).encode()


async def request(nc: Client, subject: str, payload: bytes) -> bytes:
    """Send one request; return the reply body or raise ReplyError for anything but success."""
    try:
        msg = await nc.request(subject, payload, timeout=REQUEST_TIMEOUT_S)
    except NatsTimeoutError as exc:
        raise ReplyError("timeout", f"no reply within {REQUEST_TIMEOUT_S} s") from exc
    except NoRespondersError as exc:
        raise ReplyError("no responders", subject) from exc
    status = (msg.headers or {}).get(subjects.SERVICE_ERROR_CODE_HEADER)
    if status:
        raise error_reply(status, msg.data)
    return msg.data


def error_reply(status: str, data: bytes) -> ReplyError:
    """A ReplyError for an error reply, keyed by status and contract error code."""
    try:
        error = json.loads(data)["error"]
        return ReplyError(f"{status} {error['code']}", str(error["message"])[:300])
    except (ValueError, KeyError, TypeError):
        return ReplyError(status, data[:300].decode(errors="replace"))


async def request_json(nc: Client, subject: str, body: dict[str, Any]) -> dict[str, Any]:
    """`request` with JSON in and out."""
    data = await request(nc, subject, encode(body))
    try:
        reply: dict[str, Any] = json.loads(data)
    except ValueError as exc:
        raise ReplyError("bad reply", data[:300].decode(errors="replace")) from exc
    return reply


def expect(reply: dict[str, Any], key: str, wanted: Any) -> None:
    """Raise ReplyError unless reply[key] == wanted."""
    if reply.get(key) != wanted:
        raise ReplyError(f"wrong {key}", f"expected {wanted!r}, got {reply.get(key)!r}")


async def bounded_map(fn: Callable[[T], Awaitable[R]], items: Sequence[T], limit: int) -> list[R]:
    """`fn` over `items`, at most `limit` at a time, results in order."""
    gate = asyncio.Semaphore(limit)

    async def one(item: T) -> R:
        async with gate:
            return await fn(item)

    return list(await asyncio.gather(*(one(item) for item in items)))


# --- the calls of each scenario --------------------------------------------------------------


def echo_call(nc: Client, subject: str) -> Call:
    """Echo the agent body; the reply must be the same JSON."""
    body = agent_body("bench-echo-0000000")
    payload = encode(body)

    async def call() -> None:
        data = await request(nc, subject, payload)
        if data != payload and json.loads(data) != body:
            raise ReplyError("wrong echo", data[:300].decode(errors="replace"))

    return call


def get_call(nc: Client, agent_ids: Sequence[str], start: int) -> Call:
    """agent.get round-robin over the pre-created agents."""
    position = start

    async def call() -> None:
        nonlocal position
        agent_id = agent_ids[position % len(agent_ids)]
        position += 1
        expect(
            await request_json(nc, subjects.AGENT_GET, {"agent_id": agent_id}), "agent_id", agent_id
        )

    return call


def create_call(nc: Client, worker: int, subject: str = subjects.AGENT_CREATE) -> Call:
    """agent.create (or F_write's subject) with a fresh name each time."""
    count = 0

    async def call() -> None:
        nonlocal count
        count += 1
        reply = await request_json(nc, subject, agent_body(f"bench-{worker:03d}-{count:07d}"))
        expect(reply, "status", "CREATED")

    return call


def floor_read_call(nc: Client, agent_ids: Sequence[str], slot: int) -> Call:
    """F_read: a random row of its table each time; the reply must be that row's agent."""
    rng = random.Random(slot)
    subject = FLOOR_SUBJECTS["read"]

    async def call() -> None:
        agent_id = rng.choice(agent_ids)
        expect(await request_json(nc, subject, {"agent_id": agent_id}), "agent_id", agent_id)

    return call


class Flipper:
    """Pauses and re-activates its own agents in turn: never two requests on one agent."""

    def __init__(self, nc: Client, agent_ids: Sequence[str]) -> None:
        self.nc = nc
        self.agent_ids = list(agent_ids)
        self.status = dict.fromkeys(self.agent_ids, "ACTIVE")
        self.position = 0

    async def __call__(self) -> None:
        agent_id = self.agent_ids[self.position % len(self.agent_ids)]
        self.position += 1
        pause = self.status[agent_id] == "ACTIVE"
        subject, target = (
            (subjects.AGENT_PAUSE, "PAUSED") if pause else (subjects.AGENT_ACTIVATE, "ACTIVE")
        )
        try:
            reply = await request_json(self.nc, subject, {"agent_id": agent_id})
            expect(reply, "status", target)
        except ReplyError:
            await self.resync(agent_id)
            raise
        self.status[agent_id] = target

    async def resync(self, agent_id: str) -> None:
        """After a failed request, learn where the agent really is."""
        with contextlib.suppress(ReplyError):
            reply = await request_json(self.nc, subjects.AGENT_GET, {"agent_id": agent_id})
            self.status[agent_id] = str(reply.get("status"))


def transition_calls(nc: Client, agent_ids: Sequence[str], inflight: int) -> list[Call]:
    """One Flipper per slot, each with a disjoint share of the agents."""
    return [Flipper(nc, agent_ids[slot::inflight]) for slot in range(inflight)]


# --- running a scenario ----------------------------------------------------------------------


@dataclass
class Recorder:
    """Latencies of successful requests and counts of failed ones."""

    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    samples: dict[str, str] = field(default_factory=dict)
    elapsed: float = 0.0

    def fail(self, exc: ReplyError) -> None:
        """Count a failure and keep the first message of its kind."""
        self.errors[exc.kind] += 1
        self.samples.setdefault(exc.kind, exc.detail)


async def worker(call: Call, until: float, recorder: Recorder) -> None:
    """Keep one request in flight until `until`."""
    while (start := time.perf_counter()) < until:
        try:
            await call()
        except ReplyError as exc:
            recorder.fail(exc)
        else:
            recorder.latencies.append(time.perf_counter() - start)


async def run_phase(calls: Sequence[Call], seconds: float) -> Recorder:
    """All calls at once for `seconds`; elapsed includes the last replies."""
    recorder = Recorder()
    began = time.perf_counter()
    await asyncio.gather(*(worker(call, began + seconds, recorder) for call in calls))
    recorder.elapsed = time.perf_counter() - began
    return recorder


# --- CPU accounting from /proc ---------------------------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()  # index 0 is field 3 (state)


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def tree_cpu_s(root: int | None) -> float:
    """CPU seconds (user+system, reaped children included) of a process and its descendants."""
    if root is None:
        return 0.0
    total = 0
    for pid in [root, *_descendants(root)]:
        if (fields := _stat(pid)) is not None:
            total += sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return total / _TICKS


def own_cpu_s() -> float:
    """CPU seconds of this process (the load generator), children excluded."""
    times = os.times()
    return times.user + times.system


CpuProbes = dict[str, Callable[[], float]]


def cpu_snapshot(probes: CpuProbes) -> dict[str, float]:
    """CPU seconds so far of each probed component."""
    return {name: probe() for name, probe in probes.items()}


# --- results ---------------------------------------------------------------------------------


@dataclass
class Target:
    """One target of a scenario: its req/s at least `minimum` times the `floor`'s."""

    floor: str
    minimum: float
    ratio: float
    met: bool

    def text(self) -> str:
        """`>= 0.3x FS`."""
        return f">= {self.minimum:g}x {FLOORS.get(self.floor, self.floor)}"


@dataclass
class Result:
    """The figures of one scenario. `target_met`: every one of its `targets` is met."""

    scenario: str
    requests: int
    seconds: float
    req_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    error_samples: dict[str, str]
    cpu_us_per_request: dict[str, float]
    cpu_busy_pct: float
    ratio_to_raw: float | None = None
    ratio_to_faststream: float | None = None
    ratio_to_f_read: float | None = None
    ratio_to_f_write: float | None = None
    targets: list[Target] = field(default_factory=list)
    target_met: bool | None = None
    outbox_backlog: int | None = None
    outbox_drain_s: float | None = None


def percentile_ms(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted seconds, in ms."""
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def cpu_figures(
    cpu_before: dict[str, float], cpu_after: dict[str, float], count: int, elapsed: float
) -> tuple[dict[str, float], float]:
    """CPU µs per request of each probed process (rounded), and how busy all CPUs were (%)."""
    cpu = {name: cpu_after[name] - cpu_before[name] for name in cpu_before}
    per_request = {name: round(s * 1e6 / max(count, 1), 1) for name, s in cpu.items()}
    busy = sum(cpu.values()) / (elapsed * (os.cpu_count() or 1)) * 100
    return per_request, round(busy, 1)


def summarize(
    scenario: str, recorder: Recorder, cpu_before: dict[str, float], cpu_after: dict[str, float]
) -> Result:
    """Turn a measured phase into a Result."""
    ordered = sorted(recorder.latencies)
    count = len(ordered)
    per_request, busy = cpu_figures(cpu_before, cpu_after, count, recorder.elapsed)
    errors = sum(recorder.errors.values())
    samples = {
        f"{kind} (x{recorder.errors[kind]})": text for kind, text in recorder.samples.items()
    }
    return Result(
        scenario=scenario,
        requests=count,
        seconds=round(recorder.elapsed, 3),
        req_per_s=count / recorder.elapsed,
        p50_ms=percentile_ms(ordered, 0.50),
        p99_ms=percentile_ms(ordered, 0.99),
        max_ms=percentile_ms(ordered, 1.0),
        errors=errors,
        error_samples=samples,
        cpu_us_per_request=per_request,
        cpu_busy_pct=busy,
    )


@dataclass(frozen=True)
class Config:
    """What the command line asked for."""

    seconds: float
    warmup: float
    inflight: int
    json_path: Path | None
    keep: bool = False


async def measure(name: str, calls: Sequence[Call], config: Config, probes: CpuProbes) -> Result:
    """Warm up, then measure the same calls; print one progress line."""
    print(f"  {name}: {config.warmup:g} s warm-up + {config.seconds:g} s ...", flush=True)
    await run_phase(calls, config.warmup)
    before = cpu_snapshot(probes)
    async with profiled(name, config.seconds):
        recorder = await run_phase(calls, config.seconds)
    return summarize(name, recorder, before, cpu_snapshot(probes))


# --- child processes -------------------------------------------------------------------------


def _die_with_parent() -> Callable[[], None] | None:
    """preexec_fn: SIGTERM the child when this thread dies (Linux), so none is orphaned."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def setup() -> None:
        prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG

    return setup


@dataclass
class Child:
    """A server under test, run as its own process with its output in a log file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: asyncio.subprocess.Process | None = None
    notes: list[str] = field(default_factory=list)

    def log_tail(self, lines: int = 30) -> str:
        """The end of its log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"

    def exited(self) -> bool:
        """True when the process has ended."""
        return self.proc is not None and self.proc.returncode is not None

    def log_summary(self) -> str:
        """Size of its log, and how many INFO lines it holds."""
        try:
            lines = self.log_path.read_bytes().splitlines()
        except OSError:
            return f"{self.name}: no log"
        info = sum(1 for line in lines if b"INFO" in line)
        size = sum(len(line) + 1 for line in lines)
        return f"{self.name} wrote {len(lines)} log lines ({size / 1024:.0f} KiB), {info} at INFO"


async def start_child(child: Child) -> None:
    """Start the process in its own session, output to its log file, cwd = the log's folder."""
    with child.log_path.open("ab") as log:
        child.proc = await asyncio.create_subprocess_exec(
            *child.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            env=child.env,
            cwd=child.log_path.parent,
            start_new_session=True,
            preexec_fn=_die_with_parent(),
        )


async def stop_child(child: Child) -> None:
    """SIGTERM, wait; SIGKILL its process group if it takes longer than STOP_TIMEOUT_S."""
    proc = child.proc
    if proc is None or proc.returncode is not None:
        return
    began = time.monotonic()
    proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        child.notes.append(f"{child.name} ignored SIGTERM for {STOP_TIMEOUT_S:g} s: killed")
        return
    took = time.monotonic() - began
    child.notes.append(
        f"{child.name} stopped {took:.1f} s after SIGTERM, exit code {proc.returncode}"
    )


@contextlib.asynccontextmanager
async def running(child: Child) -> AsyncIterator[Child]:
    """Run `child` for the duration of the block."""
    await start_child(child)
    if child.name == SERVICE_CHILD_NAME and child.proc is not None:
        profile_service(child.proc.pid)
    try:
        yield child
    finally:
        profile_service(None)
        await stop_child(child)


async def wait_answering(nc: Client, child: Child, subject: str, payload: bytes) -> None:
    """Wait until `subject` gets any reply (an error reply counts: somebody answered)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if child.exited():
            raise BenchError(f"{child.name} exited early; log:\n{child.log_tail()}")
        try:
            await nc.request(subject, payload, timeout=1.0)
            return
        except (NoRespondersError, NatsTimeoutError):
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{child.name} not answering after {READY_TIMEOUT_S:g} s; log:\n"
                    f"{child.log_tail()}"
                ) from None
            await asyncio.sleep(0.1)


def child_env(**extra: str) -> dict[str, str]:
    """This environment without AO_* / NATS_URL / DATABASE_URL, plus `extra`."""
    dropped = ("NATS_URL", "DATABASE_URL")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AO_") and k not in dropped}
    return env | extra


def echo_child(kind: str, nats_url: str, subject: str, folder: Path) -> Child:
    """The echo responder of `kind` (raw | faststream)."""
    script = str(BENCH_DIR / "echo_servers.py")
    return Child(
        f"{kind} echo",
        [sys.executable, script, kind, nats_url, subject],
        child_env(),
        folder / f"echo-{kind}.log",
    )


def floor_child(kind: str, servers: Servers) -> Child:
    """The floor server of `kind` (read | write), on the run's nats-server and PostgreSQL."""
    argv = [
        sys.executable,
        str(BENCH_DIR / "floor_servers.py"),
        kind,
        servers.nats_url,
        servers.database_url,
        FLOOR_SUBJECTS[kind],
    ]
    if kind == "read":
        argv.append(str(FLOOR_READ_ROWS))
    return Child(f"floor {kind}", argv, child_env(), servers.folder / f"floor-{kind}.log")


def service_child(nats_url: str, database_url: str, folder: Path) -> Child:
    """`agent-orchestrator serve`, from the venv's console script or the same entry point."""
    script = Path(sys.executable).parent / "agent-orchestrator"
    if script.is_file():
        argv = [str(script), "serve"]
    else:
        argv = [sys.executable, "-c", "from agent_orchestrator.cli import main; main()", "serve"]
    env = child_env(NATS_URL=nats_url, DATABASE_URL=database_url, AO_LOG_LEVEL="WARNING")
    return Child(SERVICE_CHILD_NAME, argv, env, folder / "service.log")


# --- scenarios -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Servers:
    """The shared infrastructure of the run."""

    nats_url: str
    database_url: str
    nats_pid: int | None
    postgres_pid: int | None
    folder: Path


def probes_for(servers: Servers, child: Child) -> CpuProbes:
    """CPU probes: the server under test, PostgreSQL, nats-server, the load generator."""
    pid = child.proc.pid if child.proc is not None else None
    return {
        "server": lambda: tree_cpu_s(pid),
        "postgres": lambda: tree_cpu_s(servers.postgres_pid),
        "nats-server": lambda: tree_cpu_s(servers.nats_pid),
        "load-gen": own_cpu_s,
    }


async def bench_echo(
    nc: Client, servers: Servers, config: Config, kind: str, notes: list[str]
) -> Result:
    """Run one echo responder and measure it."""
    subject = RAW_SUBJECT if kind == "raw" else FASTSTREAM_SUBJECT
    name = RAW if kind == "raw" else FASTSTREAM
    child = echo_child(kind, servers.nats_url, subject, servers.folder)
    try:
        async with running(child):
            await wait_answering(nc, child, subject, encode(agent_body("ping")))
            calls = [echo_call(nc, subject) for _ in range(config.inflight)]
            return await measure(name, calls, config, probes_for(servers, child))
    finally:
        notes += child.notes


async def bench_floor(
    nc: Client, servers: Servers, config: Config, kind: str, notes: list[str]
) -> Result:
    """Run one floor server (read | write) and measure it."""
    subject = FLOOR_SUBJECTS[kind]
    child = floor_child(kind, servers)
    try:
        async with running(child):
            if kind == "read":
                probe = encode({"agent_id": str(uuid.uuid4())})
                await wait_answering(nc, child, subject, probe)
                agent_ids = await floor_read_ids(servers.database_url)
                reply = await request(nc, subject, encode({"agent_id": agent_ids[0]}))
                notes.append(f"{F_READ} reply: {len(reply)} bytes")
                calls = [floor_read_call(nc, agent_ids, slot) for slot in range(config.inflight)]
            else:
                await wait_answering(nc, child, subject, encode(agent_body("bench-floor-ping")))
                calls = [create_call(nc, slot, subject) for slot in range(config.inflight)]
            name = F_READ if kind == "read" else F_WRITE
            return await measure(name, calls, config, probes_for(servers, child))
    finally:
        notes += [*child.notes, child.log_summary()]


async def floor_read_ids(database_url: str) -> list[str]:
    """The ids of F_read's rows."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT agent_id FROM floor_read ORDER BY agent_id")
    finally:
        await conn.close()
    if not rows:
        raise BenchError("F_read's table is empty")
    return [str(row["agent_id"]) for row in rows]


async def bench_floors(
    nc: Client, servers: Servers, config: Config, notes: list[str]
) -> list[Result]:
    """Every floor, one after the other, in the order of FLOORS."""
    return [
        await bench_echo(nc, servers, config, "raw", notes),
        await bench_echo(nc, servers, config, "faststream", notes),
        await bench_floor(nc, servers, config, "read", notes),
        await bench_floor(nc, servers, config, "write", notes),
    ]


async def create_agents(nc: Client, count: int, prefix: str, limit: int) -> list[str]:
    """Create `count` agents; return their ids."""

    async def create(n: int) -> str:
        reply = await request_json(nc, subjects.AGENT_CREATE, agent_body(f"{prefix}-{n:05d}"))
        return str(reply["agent_id"])

    return await bounded_map(create, range(count), limit)


async def wait_status(nc: Client, agent_ids: Sequence[str], status: str, limit: int) -> None:
    """Poll agent.get until every agent has `status`."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    waiting = list(agent_ids)

    async def current(agent_id: str) -> str:
        reply = await request_json(nc, subjects.AGENT_GET, {"agent_id": agent_id})
        return str(reply["status"])

    while waiting:
        statuses = await bounded_map(current, waiting, limit)
        if "ERROR" in statuses:
            raise BenchError("an agent went to ERROR during initialization")
        waiting = [a for a, s in zip(waiting, statuses, strict=True) if s != status]
        if waiting and time.monotonic() > deadline:
            raise BenchError(f"{len(waiting)} agents not {status} after {READY_TIMEOUT_S:g} s")
        if waiting:
            await asyncio.sleep(0.2)


async def activate(nc: Client, ids: Sequence[str], limit: int) -> None:
    """Initialize, wait for READY, activate: the CREATED agents ``ids`` become ACTIVE."""

    async def command(subject: str) -> None:
        async def one(agent_id: str) -> None:
            await request_json(nc, subject, {"agent_id": agent_id})

        await bounded_map(one, ids, limit)

    await command(subjects.AGENT_INITIALIZE)
    await wait_status(nc, ids, "READY", limit)
    await command(subjects.AGENT_ACTIVATE)


async def active_agents(nc: Client, count: int, limit: int) -> list[str]:
    """Create, initialize, wait for READY, activate: `count` ACTIVE agents."""
    ids = await create_agents(nc, count, "bench-lifecycle", limit)
    await activate(nc, ids, limit)
    return ids


class Outbox:
    """Reads the service's outbox backlog, so that scenarios start with the relay idle."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def backlog(self) -> int:
        """Rows committed but not yet published to JetStream."""
        count = await self.conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        return int(count)

    async def drain(self) -> float:
        """Wait until the backlog is empty; return how long that took."""
        began = time.monotonic()
        while await self.backlog():
            if time.monotonic() - began > DRAIN_TIMEOUT_S:
                raise BenchError(f"outbox not drained after {DRAIN_TIMEOUT_S:g} s")
            await asyncio.sleep(0.05)
        return round(time.monotonic() - began, 2)


async def measure_service(
    name: str, calls: Sequence[Call], config: Config, probes: CpuProbes, outbox: Outbox
) -> Result:
    """Measure with an idle relay, then record the backlog left and how long it took to clear."""
    await outbox.drain()
    result = await measure(name, calls, config, probes)
    result.outbox_backlog = await outbox.backlog()
    result.outbox_drain_s = await outbox.drain()
    return result


async def bench_service(
    nc: Client, servers: Servers, config: Config, notes: list[str]
) -> list[Result]:
    """Run agent-orchestrator serve; measure agent.get, agent.create and pause/activate."""
    child = service_child(servers.nats_url, servers.database_url, servers.folder)
    probe = encode({"agent_id": str(uuid.uuid4())})
    conn = await asyncpg.connect(servers.database_url)
    try:
        async with running(child):
            await wait_answering(nc, child, subjects.AGENT_GET, probe)
            outbox = Outbox(conn)
            probes = probes_for(servers, child)
            limit = config.inflight
            pool_size = max(MIN_TRANSITION_POOL, 4 * config.inflight)
            print(f"  set-up: {GET_POOL} agents to read, {pool_size} ACTIVE agents", flush=True)
            get_ids = await create_agents(nc, GET_POOL, "bench-get", limit)
            reply = await request(nc, subjects.AGENT_GET, encode({"agent_id": get_ids[0]}))
            notes.append(f"{GET} reply: {len(reply)} bytes")
            active_ids = await active_agents(nc, pool_size, limit)
            gets = [get_call(nc, get_ids, slot) for slot in range(config.inflight)]
            creates = [create_call(nc, slot) for slot in range(config.inflight)]
            flips = transition_calls(nc, active_ids, config.inflight)
            return [
                await measure_service(GET, gets, config, probes, outbox),
                await measure_service(CREATE, creates, config, probes, outbox),
                await measure_service(TRANSITION, flips, config, probes, outbox),
            ]
    finally:
        await conn.close()
        notes += [*child.notes, child.log_summary()]


# --- the report ------------------------------------------------------------------------------


def apply_ratios(results: Sequence[Result], targets: Targets = TARGETS) -> None:
    """Fill the ratios to every floor measured among `results`, and the target verdicts."""
    rates = {r.scenario: r.req_per_s for r in results if r.scenario in FLOORS}
    for result in results:
        ratios = {
            floor: result.req_per_s / rate if rate else float("nan")
            for floor, rate in rates.items()
        }
        result.ratio_to_raw = ratios.get(RAW)
        result.ratio_to_faststream = ratios.get(FASTSTREAM)
        result.ratio_to_f_read = ratios.get(F_READ)
        result.ratio_to_f_write = ratios.get(F_WRITE)
        result.targets = [
            Target(floor, minimum, round(ratios[floor], 3), ratios[floor] >= minimum)
            for floor, minimum in targets.get(result.scenario, ())
            if floor in ratios
        ]
        if result.targets:
            result.target_met = all(t.met for t in result.targets)


def floor_ratios(result: Result) -> dict[str, float | None]:
    """Its req/s over each floor's, by floor (None: that floor was not measured)."""
    return {
        RAW: result.ratio_to_raw,
        FASTSTREAM: result.ratio_to_faststream,
        F_READ: result.ratio_to_f_read,
        F_WRITE: result.ratio_to_f_write,
    }


def verdict(result: Result) -> str:
    """`met` / `MISSED` (with the floors missed) / `-`, with a flag when replies failed."""
    missed = [FLOORS.get(t.floor, t.floor) for t in result.targets if not t.met]
    text = f"MISSED ({', '.join(missed)})" if missed else "met"
    if not result.targets:
        text = "-"
    return f"{text} (ERRORS)" if result.errors else text


def target_text(result: Result) -> str:
    """`>= 0.3x FS, >= 2x F_write`, or `-`."""
    return ", ".join(t.text() for t in result.targets) or "-"


def name_width(results: Sequence[Result]) -> int:
    """Width of the scenario column: at least 17, room for the longest name."""
    return max([17, *(len(r.scenario) + 2 for r in results)])


def table(results: Sequence[Result]) -> str:
    """The main table: figures, the ratio to every floor, targets and verdicts."""
    w = name_width(results)
    t = max([8, *(len(target_text(r)) + 2 for r in results)])
    ratios = "".join(f"{'x ' + label:>10}" for label in FLOORS.values())
    header = (
        f"{'scenario':<{w}}{'requests':>9}{'req/s':>9}{'p50 ms':>8}{'p99 ms':>8}"
        f"{ratios}{'errors':>7}  {'target':<{t}}verdict"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        cells = "".join(
            f"{'-' if x is None else format(x, '.2f'):>10}" for x in floor_ratios(r).values()
        )
        lines.append(
            f"{r.scenario:<{w}}{r.requests:>9}{r.req_per_s:>9.0f}{r.p50_ms:>8.2f}{r.p99_ms:>8.2f}"
            f"{cells}{r.errors:>7}  {target_text(r):<{t}}{verdict(r)}"
        )
    return "\n".join(lines)


def cpu_table(results: Sequence[Result], label: str = "CPU us/request") -> str:
    """Where the CPU went: µs per request (or whatever `label` says) of each process, and how
    busy the machine was."""
    names = list(results[0].cpu_us_per_request)
    w = name_width(results)
    header = f"{label:<{w}}" + "".join(f"{n:>12}" for n in names) + f"{'busy %':>9}"
    lines = [header, "-" * len(header)]
    for r in results:
        cells = "".join(f"{r.cpu_us_per_request[n]:>12.0f}" for n in names)
        lines.append(f"{r.scenario:<{w}}{cells}{r.cpu_busy_pct:>9.0f}")
    return "\n".join(lines)


def outbox_lines(results: Sequence[Result]) -> list[str]:
    """The relay's lag after each service scenario."""
    return [
        f"outbox after {r.scenario}: {r.outbox_backlog} rows unpublished, "
        f"drained in {r.outbox_drain_s:.2f} s"
        for r in results
        if r.outbox_backlog is not None
    ]


def error_lines(results: Sequence[Result]) -> list[str]:
    """Every kind of failed reply, with its first message."""
    lines = []
    for r in results:
        for kind, sample in r.error_samples.items():
            lines.append(f"ERROR in {r.scenario}: {kind}: {sample}")
    return lines


@dataclass
class Report:
    """Everything a run found."""

    settings: dict[str, Any]
    results: list[Result]
    notes: list[str]

    @property
    def flagged(self) -> bool:
        """True when any reply was an error or wrong."""
        return any(r.errors for r in self.results)


def print_report(report: Report) -> None:
    """Settings, main table, CPU table, relay lag, process notes, errors."""
    print("\nsettings:")
    for key, value in report.settings.items():
        print(f"  {key}: {value}")
    print()
    print(table(report.results))
    print()
    print(cpu_table(report.results))
    print()
    for line in outbox_lines(report.results) + report.notes + error_lines(report.results):
        print(line)
    if report.flagged:
        print("\nFLAGGED: some replies were errors or wrong; those scenarios' figures are suspect.")


def target_descriptions(targets: Targets) -> dict[str, list[str]]:
    """Scenario -> its targets in words, for the JSON document."""
    return {
        name: [f">= {minimum:g}x {floor}" for floor, minimum in pairs]
        for name, pairs in targets.items()
    }


def write_json(path: Path, report: Report) -> None:
    """The same figures as the tables, as JSON."""
    document = {
        "settings": report.settings,
        "targets": target_descriptions(TARGETS),
        "results": [asdict(r) for r in report.results],
        "notes": report.notes,
        "flagged": report.flagged,
    }
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


async def postgres_settings(database_url: str) -> str:
    """PostgreSQL's version and the settings that matter for commit latency, read back."""
    conn = await asyncpg.connect(database_url)
    try:
        names = ("server_version", "fsync", "synchronous_commit", "shared_buffers")
        values = [await conn.fetchval(f"SHOW {name}") for name in names]
    finally:
        await conn.close()
    return "defaults, no extra args: " + ", ".join(
        f"{n}={v}" for n, v in zip(names, values, strict=True)
    )


def describe(config: Config, nats_version: str, postgres: str) -> dict[str, Any]:
    """The settings of this run, printed and written with the figures."""
    fields = Settings.model_fields
    return {
        "machine": (
            f"{os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}"
        ),
        "load": (
            f"1 nats-py {importlib.metadata.version('nats-py')} connection, "
            f"{config.inflight} requests in flight, {config.warmup:g} s warm-up + "
            f"{config.seconds:g} s per scenario, {len(encode(agent_body('bench-000-0000000')))}"
            f"-byte JSON body, timeout {REQUEST_TIMEOUT_S:g} s"
        ),
        "nats-server": f"{nats_version}, JetStream file store in a temp folder, default options",
        "postgres": postgres,
        "service": (
            "agent-orchestrator serve, AO_LOG_LEVEL=WARNING, otherwise defaults: "
            f"handler_max_workers={fields['handler_max_workers'].default}, "
            f"db_pool {fields['db_pool_min'].default}-{fields['db_pool_max'].default}"
        ),
        "faststream echo": (
            f"faststream {importlib.metadata.version('faststream')}, one subscriber in a queue "
            "group, pydantic body, one message at a time, access log at DEBUG (off)"
        ),
        "floors F_read / F_write": (
            "bench/floor_servers.py: one FastStream subscriber each in a queue group, pydantic "
            f"body, max_workers={fields['handler_max_workers'].default} and an asyncpg pool "
            f"{fields['db_pool_min'].default}-{fields['db_pool_max'].default} (the service's "
            "defaults), access log off; F_read: SELECT a jsonb agent document by primary key "
            f"(random of {FLOOR_READ_ROWS} rows), replied as read; F_write: one INSERT of an "
            "agents-shaped row per request, autocommit"
        ),
        "transitions": (
            f"{max(MIN_TRANSITION_POOL, 4 * config.inflight)} ACTIVE agents, each slot owns "
            "its own, pause/activate alternating"
        ),
        "scenario start": "service scenarios start with the outbox drained",
    }


async def run_all(config: Config, servers: Servers) -> Report:
    """Every scenario in order; the floors first."""
    nc = await nats.connect(servers.nats_url, name="bench-load")
    notes: list[str] = []
    try:
        settings = describe(
            config,
            str(nc.connected_server_version).strip("<>"),
            await postgres_settings(servers.database_url),
        )
        results = [
            *await bench_floors(nc, servers, config, notes),
            *await bench_service(nc, servers, config, notes),
        ]
    finally:
        await nc.close()
    apply_ratios(results)
    return Report(settings, results, notes)


# --- entry point -----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> Config:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds a scenario")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds a scenario")
    parser.add_argument("--inflight", type=int, default=50, help="requests in flight")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temp folder (server logs, data) afterwards"
    )
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.warmup < 0 or args.inflight < 1:
        parser.error("--seconds must be > 0, --warmup >= 0, --inflight >= 1")
    return Config(args.seconds, args.warmup, args.inflight, args.json, args.keep)


@contextlib.contextmanager
def bench_servers(prefix: str, *, keep: bool) -> Iterator[Servers]:
    """nats-server and PostgreSQL in a fresh temp folder, stopped (and the folder removed
    unless ``keep``) on exit."""
    with contextlib.ExitStack() as stack:
        folder = Path(tempfile.mkdtemp(prefix=prefix))
        if keep:
            stack.callback(print, f"kept {folder} (server logs and data)")
        else:
            stack.callback(shutil.rmtree, folder, ignore_errors=True)
        print(f"starting nats-server and PostgreSQL in {folder} ...", flush=True)
        nats_server = EmbeddedNats(folder)
        stack.callback(nats_server.stop)
        postgres = EmbeddedPostgres(folder)
        stack.callback(postgres.stop)
        yield Servers(nats_server.start(), postgres.start(), nats_server.pid, postgres.pid, folder)


class FlaggableReport(Protocol):
    """What ``run_bench`` needs of a benchmark's report."""

    @property
    def flagged(self) -> bool:
        """Whether the run is not to be trusted (a wrong answer, a noisy phase)."""
        ...


Rep = TypeVar("Rep", bound=FlaggableReport)


def run_bench(
    prefix: str,
    *,
    keep: bool,
    json_path: Path | None,
    measure: Callable[[Servers], Coroutine[Any, Any, Rep]],
    print_report: Callable[[Rep], None],
    write_json: Callable[[Path, Rep], None],
    setup_errors: tuple[type[BaseException], ...] = (BenchError,),
) -> int:
    """Every benchmark's ``main``: start the servers, ``measure``, print the report (and
    write it to ``json_path``), stop everything. Exit code 2 when set-up failed, 1 when the
    run is flagged."""
    with bench_servers(prefix, keep=keep) as servers:
        try:
            report = asyncio.run(measure(servers))
        except setup_errors as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    print_report(report)
    if json_path is not None:
        write_json(json_path, report)
        print(f"\nwrote {json_path}")
    return 1 if report.flagged else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Start the servers, run every scenario, print the report, stop everything."""
    config = parse_args(argv)
    return run_bench(
        "ao-bench-",
        keep=config.keep,
        json_path=config.json_path,
        measure=lambda servers: run_all(config, servers),
        print_report=print_report,
        write_json=write_json,
    )


if __name__ == "__main__":
    sys.exit(main())
