"""The HTTP bridge's cost: agent.get over NATS directly next to GET /api/agents/{id} through
`agent-orchestrator bridge`, in one run.

    python bench/bridge.py [--seconds 5] [--warmup 1] [--inflight 50] [--client auto|wrk|python]
        [--variant 'LABEL=UVICORN OPTIONS' ...] [--variant-path DIR] [--profile] [--retries 2]
        [--json out.json] [--keep]

Uses the harness of commands.py: its own nats-server and PostgreSQL in a temp folder,
`agent-orchestrator serve` as a subprocess, and here also `agent-orchestrator bridge` as a
subprocess of its own (NATS_URL set, a free port, its default settings; ready once /readyz
answers 200). 100 agents are created. Both sides then keep exactly --inflight requests in
flight for --warmup seconds (unmeasured) and then --seconds (measured), round-robin over the
same agents, with the same 5 s timeout:

  agent.get (NATS)      nats-py requests on one connection from this process (as commands.py),
                        every reply checked (no error reply, the right agent_id).
  GET /api/agents/{id}  through the bridge, --inflight HTTP/1.1 keep-alive connections with
                        one request at a time each, from a load generator that costs little
                        CPU next to the bridge:
                        - wrk (--client wrk, or auto when `wrk` is on PATH): one wrk thread, a
                          Lua script that round-robins over the agents; wrk counts answers
                          with a status >= 400 and socket errors / timeouts. It takes whole
                          seconds only. Every agent is read once through the bridge with full
                          checks (200, the right agent_id) before the measurement.
                        - python (--client python, or auto without wrk): a minimal HTTP/1.1
                          client on asyncio protocols in this process (no HTTP library), one
                          connection per slot, every answer checked (200, the right agent_id).

Each bridge runs alone with the service: the NATS side is measured first, then the default
bridge, then each --variant: the same app served by `python -m uvicorn --factory
agent_orchestrator.bridge.app:create_app` with the given uvicorn options (uvicorn's CLI
defaults otherwise, access log ON; pass --no-access-log to compare like with like), with
--variant-path prepended to its PYTHONPATH (e.g. a `pip install --target DIR uvloop httptools`
that the default bridge should not see). --profile also runs py-spy on each bridge during an
extra, unmeasured load phase and prints where its time went (py-spy must be installed).

Reported: req/s, p50/p99 latency, HTTP / NATS for each (target from the issue: HTTP req/s >=
0.5x NATS req/s, judged on the default bridge), and the CPU µs per request of the service, the
bridge, PostgreSQL, nats-server, the load generator (this process plus wrk) and other processes
(the machine's busy time minus theirs). A measurement during which other processes kept more
than 5% of the machine busy is taken again (up to --retries times) and, if still so, marked
NOISY. About 20 s with the defaults, 8 s more per variant. Exit code 1 when any answer was an
error or wrong; a missed target does not change the exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nats
from commands import (
    GET_POOL,
    READY_TIMEOUT_S,
    REQUEST_TIMEOUT_S,
    BenchError,
    Call,
    Child,
    Config,
    CpuProbes,
    ReplyError,
    Result,
    Servers,
    child_env,
    cpu_figures,
    cpu_snapshot,
    cpu_table,
    create_agents,
    encode,
    error_lines,
    get_call,
    measure,
    name_width,
    postgres_settings,
    run_bench,
    run_phase,
    running,
    service_child,
    tree_cpu_s,
    wait_answering,
)
from nats.aio.client import Client

from agent_orchestrator.contracts import subjects
from agent_orchestrator.runtime.process import free_port

NATS_GET = "agent.get (NATS)"
HTTP_GET = "GET /api/agents/{id}"
#: Minimum ratio of the bridge's req/s to agent.get over NATS (from the issue).
TARGET = 0.5
HOST = "127.0.0.1"
APP_FACTORY = "agent_orchestrator.bridge.app:create_app"
WRK_MARK = "WRK-RESULT "
#: Above this share of the machine (%) taken by other processes, a measurement is noisy.
NOISY_PCT = 5.0
#: py-spy samples per second in --profile runs.
PROFILE_RATE = 200


# --- the bridges -----------------------------------------------------------------------------


@dataclass(frozen=True)
class BridgeSpec:
    """One way to serve the bridge: the default command, or uvicorn's CLI with options."""

    label: str = ""
    options: tuple[str, ...] | None = None

    @property
    def scenario(self) -> str:
        """Its row in the tables."""
        return f"{HTTP_GET} [{self.label}]" if self.label else HTTP_GET

    def argv(self, port: int) -> list[str]:
        """The command that serves it on HOST:port."""
        if self.options is not None:
            uvicorn = [sys.executable, "-m", "uvicorn", "--factory", APP_FACTORY]
            return [*uvicorn, "--host", HOST, "--port", str(port), *self.options]
        script = Path(sys.executable).parent / "agent-orchestrator"
        if script.is_file():
            argv = [str(script)]
        else:
            argv = [sys.executable, "-c", "from agent_orchestrator.cli import main; main()"]
        return [*argv, "bridge", "--host", HOST, "--port", str(port)]


def bridge_child(spec: BridgeSpec, nats_url: str, folder: Path, port: int, path: str) -> Child:
    """The bridge of `spec` against nats_url; `path` goes first on a variant's PYTHONPATH."""
    env = child_env(NATS_URL=nats_url)
    if spec.options is None:
        return Child("agent-orchestrator bridge", spec.argv(port), env, folder / "bridge.log")
    if path:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [path, env.get("PYTHONPATH")]))
    slug = "".join(c if c.isalnum() else "-" for c in spec.label)
    return Child(f"bridge [{spec.label}]", spec.argv(port), env, folder / f"bridge-{slug}.log")


async def wait_ready(port: int, child: Child) -> None:
    """Wait until GET /readyz answers 200 (NATS connected, the service answers its ping)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    request = f"GET /readyz HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
    last = "no answer"
    while True:
        if child.exited():
            raise BenchError(f"{child.name} exited early; log:\n{child.log_tail()}")
        client = LightHttp(HOST, port)
        try:
            status, body = await client.send(request)
            if status == 200:
                return
            last = f"/readyz answered {status}: {body[:200].decode(errors='replace')}"
        except (OSError, ValueError, TimeoutError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        finally:
            client.close()
        if time.monotonic() > deadline:
            raise BenchError(
                f"{child.name} not ready after {READY_TIMEOUT_S:g} s ({last}); log:\n"
                f"{child.log_tail()}"
            )
        await asyncio.sleep(0.1)


# --- a light HTTP/1.1 client (the fallback load generator, and the checks) -------------------


class HttpConnection(asyncio.Protocol):
    """One keep-alive connection, one request at a time, answers with a Content-Length only."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("the bridge closed the connection"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        try:
            answer = self.parse()
        except ValueError as exc:
            waiter.set_exception(exc)
            return
        if answer is not None:
            self.waiter = None
            waiter.set_result(answer)

    def parse(self) -> tuple[int, bytes] | None:
        """(status, body) once the whole answer is in the buffer, else None."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        status_line, *header_lines = bytes(self.buffer[:end]).split(b"\r\n")
        status = int(status_line.split(b" ", 2)[1])
        length = None
        for line in header_lines:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            raise ValueError("an answer without Content-Length")
        total = end + 4 + length
        if len(self.buffer) < total:
            return None
        body = bytes(self.buffer[end + 4 : total])
        del self.buffer[:total]
        return status, body


class LightHttp:
    """A client of one connection (opened on first use, reopened after a failure)."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.conn: HttpConnection | None = None

    async def send(self, request: bytes) -> tuple[int, bytes]:
        """Send one pre-encoded request; return (status, body)."""
        loop = asyncio.get_running_loop()
        conn = self.conn
        if conn is None or conn.closed:
            _, conn = await loop.create_connection(HttpConnection, self.host, self.port)
            self.conn = conn
        assert conn.transport is not None
        waiter: asyncio.Future[tuple[int, bytes]] = loop.create_future()
        conn.waiter = waiter
        conn.transport.write(request)
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                return await waiter
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Drop the connection."""
        if self.conn is not None and self.conn.transport is not None:
            self.conn.transport.close()
        self.conn = None


def get_request(agent_id: str) -> bytes:
    """GET /api/agents/{agent_id} as bytes on the wire."""
    return (
        f"GET /api/agents/{agent_id} HTTP/1.1\r\nHost: {HOST}\r\nAccept: application/json\r\n\r\n"
    ).encode()


def http_error(status: int, body: bytes) -> ReplyError:
    """A ReplyError for a non-200 answer, keyed by status and problem code when there is one."""
    try:
        problem = json.loads(body)
        return ReplyError(f"HTTP {status} {problem['code']}", str(problem.get("detail"))[:300])
    except (ValueError, KeyError, TypeError):
        return ReplyError(f"HTTP {status}", body[:300].decode(errors="replace"))


def http_get_call(client: LightHttp, agent_ids: Sequence[str], start: int) -> Call:
    """GET /api/agents/{id} round-robin over the pre-created agents, every answer checked."""
    requests = [get_request(agent_id) for agent_id in agent_ids]
    position = start

    async def call() -> None:
        nonlocal position
        index = position % len(agent_ids)
        position += 1
        try:
            status, body = await client.send(requests[index])
        except TimeoutError as exc:
            raise ReplyError("timeout", f"no answer within {REQUEST_TIMEOUT_S} s") from exc
        except (OSError, ValueError) as exc:
            raise ReplyError(type(exc).__name__, str(exc)[:300]) from exc
        if status != 200:
            raise http_error(status, body)
        try:
            got = json.loads(body).get("agent_id")
        except (ValueError, AttributeError) as exc:
            raise ReplyError("bad reply", body[:300].decode(errors="replace")) from exc
        if got != agent_ids[index]:
            raise ReplyError("wrong agent_id", f"expected {agent_ids[index]!r}, got {got!r}")

    return call


async def check_every_agent(port: int, agent_ids: Sequence[str], limit: int) -> None:
    """Read each agent once through the bridge; BenchError at the first wrong answer."""
    slots = min(limit, len(agent_ids))

    async def check(slot: int) -> None:
        client = LightHttp(HOST, port)
        share = agent_ids[slot::slots]
        call = http_get_call(client, share, 0)
        try:
            for _ in share:
                await call()
        finally:
            client.close()

    try:
        await asyncio.gather(*(check(slot) for slot in range(slots)))
    except ReplyError as exc:
        raise BenchError(f"the bridge answered wrongly before the measurement: {exc}") from exc


# --- wrk -------------------------------------------------------------------------------------

WRK_SCRIPT = """\
-- GET /api/agents/{id} round-robin over the benchmark's agents (written by bench/bridge.py).
local ids = {%(ids)s}
local requests = {}
local position = 0

function init(args)
  for i, id in ipairs(ids) do
    requests[i] = wrk.format("GET", "/api/agents/" .. id)
  end
end

function request()
  position = position + 1
  return requests[(position %% #requests) + 1]
end

function done(summary, latency, requests_)
  local e = summary.errors
  io.write(string.format(
    '%(mark)s{"requests":%%d,"duration_us":%%d,"status":%%d,"connect":%%d,"read":%%d,' ..
    '"write":%%d,"timeout":%%d,"p50_us":%%d,"p99_us":%%d,"max_us":%%d,"mean_us":%%.1f}\\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max, latency.mean))
end
"""


@dataclass
class WrkRun:
    """What one wrk run reported (its own figures, from the Lua done() hook)."""

    requests: int
    duration_us: int
    status: int
    connect: int
    read: int
    write: int
    timeout: int
    p50_us: int
    p99_us: int
    max_us: int
    mean_us: float

    @property
    def errors(self) -> Counter[str]:
        """Failed requests by kind, as wrk counts them."""
        kinds = {
            "HTTP status >= 400": self.status,
            "connect error": self.connect,
            "read error": self.read,
            "write error": self.write,
            "timeout": self.timeout,
        }
        return Counter({kind: n for kind, n in kinds.items() if n})


@dataclass
class Wrk:
    """wrk with the round-robin script, one thread by default."""

    path: str
    script: Path
    threads: int
    version: str

    @classmethod
    def find(cls, folder: Path, agent_ids: Sequence[str], threads: int) -> Wrk | None:
        """wrk from PATH with its script written to `folder`, or None when there is no wrk."""
        path = shutil.which("wrk")
        if path is None:
            return None
        script = folder / "wrk-agents.lua"
        ids = ", ".join(json.dumps(agent_id) for agent_id in agent_ids)
        script.write_text(WRK_SCRIPT % {"ids": ids, "mark": WRK_MARK}, encoding="utf-8")
        probe = subprocess.run([path, "-v"], capture_output=True, text=True, check=False)
        version = (probe.stdout + probe.stderr).split("[", 1)[0].strip() or "wrk"
        return cls(path, script, threads, version)

    async def run(self, url: str, seconds: float, inflight: int) -> WrkRun:
        """One run of `seconds` (whole seconds) with `inflight` connections; wrk's own output
        goes to wrk.log next to the script."""
        argv = [
            self.path,
            "-t",
            str(min(self.threads, inflight)),
            "-c",
            str(inflight),
            "-d",
            f"{round(seconds)}s",
            "--timeout",
            f"{math.ceil(REQUEST_TIMEOUT_S)}s",
            "--latency",
            "-s",
            str(self.script),
            url,
        ]
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        out, _ = await proc.communicate()
        text = out.decode(errors="replace")
        with (self.script.parent / "wrk.log").open("a", encoding="utf-8") as log:
            log.write(f"$ {shlex.join(argv)}\n{text}\n")
        for line in text.splitlines():
            if line.startswith(WRK_MARK):
                return WrkRun(**json.loads(line[len(WRK_MARK) :]))
        raise BenchError(f"wrk exited {proc.returncode} without its figures:\n{text[-2000:]}")


def wrk_result(name: str, run: WrkRun, before: dict[str, float], after: dict[str, float]) -> Result:
    """A Result from wrk's own figures (its latency percentiles cover every answer it got)."""
    errors = run.errors
    ok = run.requests - run.status
    elapsed = run.duration_us / 1e6
    per_request, busy = cpu_figures(before, after, ok, elapsed)
    return Result(
        scenario=name,
        requests=ok,
        seconds=round(elapsed, 3),
        req_per_s=ok / elapsed,
        p50_ms=run.p50_us / 1000,
        p99_ms=run.p99_us / 1000,
        max_ms=run.max_us / 1000,
        errors=sum(errors.values()),
        error_samples={f"{kind} (x{n})": "counted by wrk" for kind, n in errors.items()},
        cpu_us_per_request=per_request,
        cpu_busy_pct=busy,
    )


# --- the HTTP load, either way ---------------------------------------------------------------


@dataclass
class HttpLoad:
    """The HTTP side's load generator: wrk when given, else the light client in-process."""

    wrk: Wrk | None
    agent_ids: Sequence[str]
    config: Config

    @property
    def name(self) -> str:
        """For the tables."""
        return "wrk" if self.wrk is not None else "python"

    async def measure(self, name: str, port: int, probes: CpuProbes) -> Result:
        """Warm up, then measure, as commands.measure does for the NATS side."""
        config = self.config
        print(
            f"  {name} ({self.name}): {config.warmup:g} s warm-up + {config.seconds:g} s ...",
            flush=True,
        )
        if self.wrk is None:
            clients = [LightHttp(HOST, port) for _ in range(config.inflight)]
            calls = [http_get_call(c, self.agent_ids, slot) for slot, c in enumerate(clients)]
            try:
                return await measure(name, calls, config, probes)
            finally:
                for client in clients:
                    client.close()
        url = f"http://{HOST}:{port}"
        if config.warmup > 0:
            await self.wrk.run(url, config.warmup, config.inflight)
        before = cpu_snapshot(probes)
        run = await self.wrk.run(url, config.seconds, config.inflight)
        return wrk_result(name, run, before, cpu_snapshot(probes))

    async def load(self, port: int, seconds: float) -> int:
        """Unmeasured load for `seconds` (for the profile); return the answers counted."""
        if self.wrk is not None:
            run = await self.wrk.run(f"http://{HOST}:{port}", seconds, self.config.inflight)
            return run.requests
        clients = [LightHttp(HOST, port) for _ in range(self.config.inflight)]
        calls = [http_get_call(c, self.agent_ids, slot) for slot, c in enumerate(clients)]
        try:
            return len((await run_phase(calls, seconds)).latencies)
        finally:
            for client in clients:
                client.close()


# --- the profile (py-spy) --------------------------------------------------------------------


#: Packages whose time counts for whoever called them (the first other frame up the stack).
RUNTIME = (
    "asyncio", "selectors", "json", "random", "secrets", "contextlib", "typing", "uuid", "urllib",
    "enum", "abc", "re", "functools", "inspect", "collections", "copy", "dataclasses", "weakref",
    "_weakrefset", "logging", "http", "email", "socket", "threading", "pydantic", "pydantic_core",
    "annotated_types", "typing_extensions", "<frozen",
)  # fmt: skip
#: Leaf frames whose own time is a system call on a socket or the poller.
SYSCALL_LEAVES = (
    "_SelectorSocketTransport.write ",
    "_SelectorSocketTransport._read_ready__data_received ",
    "_SelectorSocketTransport._read_ready__get_buffer ",
    "EpollSelector.select ",
)
#: Layer of the first frame (from the leaf up) outside RUNTIME, by its package.
LAYERS = {
    "uvicorn": "HTTP server (uvicorn, h11 / httptools)",
    "h11": "HTTP server (uvicorn, h11 / httptools)",
    "httptools": "HTTP server (uvicorn, h11 / httptools)",
    "fastapi": "FastAPI + Starlette (middleware, routing, validation, responses)",
    "starlette": "FastAPI + Starlette (middleware, routing, validation, responses)",
    "agent_orchestrator": "the bridge's own code (agent_orchestrator.bridge)",
    "nats": "nats-py (request, inbox, parser, flusher)",
}
SYSCALLS = "socket send/recv and epoll system calls"
EVENT_LOOP = "event loop and the rest (uvloop's C code shows here)"


@dataclass
class Profile:
    """py-spy samples of the bridge's process (busy only: py-spy leaves out a thread waiting
    for I/O) during an unmeasured load phase."""

    scenario: str
    samples: int
    requests: int
    seconds: float
    cpu_us_per_request: float
    by_layer: list[tuple[str, int]]
    by_self: list[tuple[str, int]]
    by_total: list[tuple[str, int]]
    raw_path: str


def package_of(frame: str) -> str:
    """The package (or stdlib module) of a py-spy frame `function (path/file.py)`."""
    where = frame.rsplit("(", 1)[-1].rstrip(")")
    return where.split("/", 1)[0].removesuffix(".py") or where


def layer_of(frames: Sequence[str]) -> str:
    """Who a sample's time is for: a socket system call, or the first frame from the leaf up
    that is not runtime (asyncio, json, pydantic, ...)."""
    if frames[-1].startswith(SYSCALL_LEAVES):
        return SYSCALLS
    for frame in reversed(frames):
        package = package_of(frame)
        if not package.startswith(RUNTIME):
            return LAYERS.get(package, EVENT_LOOP)
    return EVENT_LOOP


def read_profile(
    scenario: str, raw: Path, requests: int, seconds: float, cpu_s: float, top: int = 12
) -> Profile:
    """Time by layer, self time by function and inclusive time by function, from py-spy's raw
    (collapsed-stack) output. The inclusive list leaves out frames on nearly every stack (the
    event loop, uvicorn's entry) and folds chains of wrappers (a frame within 3% of the one
    listed before it)."""
    samples = 0
    layers: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        samples += count
        layers[layer_of(frames)] += count
        leaves[frames[-1]] += count
        for frame in set(frames):
            totals[frame] += count
    inclusive: list[tuple[str, int]] = []
    for frame, n in totals.most_common():
        if n < 0.9 * samples and not (inclusive and n >= 0.97 * inclusive[-1][1]):
            inclusive.append((frame, n))
    return Profile(
        scenario,
        samples,
        requests,
        seconds,
        cpu_s * 1e6 / max(requests, 1),
        layers.most_common(),
        leaves.most_common(top),
        inclusive[:top],
        str(raw),
    )


def py_spy_path() -> str | None:
    """py-spy next to this Python, or on PATH."""
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.is_file() else shutil.which("py-spy")


async def profile_bridge(
    name: str, pid: int, load: HttpLoad, port: int, seconds: float, folder: Path
) -> Profile:
    """py-spy record of `pid` while `load` runs for `seconds` (not measured). py-spy samples
    from half a second before the load until half a second after."""
    py_spy = py_spy_path()
    if py_spy is None:
        raise BenchError("--profile needs py-spy: pip install py-spy")
    slug = "".join(c if c.isalnum() else "-" for c in name)
    raw = folder / f"profile-{slug}.txt"
    whole = math.ceil(seconds)
    argv = [py_spy, "record", "--pid", str(pid), "--duration", str(whole + 1)]
    argv += ["--rate", str(PROFILE_RATE), "--format", "raw", "--nolineno", "--output", str(raw)]
    print(f"  {name}: profiling with py-spy for {whole} s ...", flush=True)
    spy = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    await asyncio.sleep(0.5)
    cpu_before = tree_cpu_s(pid)
    requests = await load.load(port, whole)
    cpu_s = tree_cpu_s(pid) - cpu_before
    out, _ = await spy.communicate()
    if spy.returncode != 0 or not raw.is_file():
        raise BenchError(f"py-spy failed ({spy.returncode}): {out.decode(errors='replace')}")
    return read_profile(name, raw, requests, whole, cpu_s)


def profile_lines(profile: Profile) -> list[str]:
    """Where the bridge's time went: shares of the samples, and those shares of the bridge's
    CPU per answer during the profile. py-spy samples wall time while the thread runs or waits
    for a CPU, and pauses it for each sample: the shares are what to go by."""
    busy = max(profile.samples, 1)

    def rows(title: str, counted: list[tuple[str, int]]) -> list[str]:
        lines = [f"  {title}:"]
        for what, n in counted:
            us = n / busy * profile.cpu_us_per_request
            lines.append(f"    {n / busy * 100:5.1f}%  {us:6.0f} us/req  {what}")
        return lines

    head = (
        f"profile of {profile.scenario}: {profile.samples} samples at {PROFILE_RATE}/s over "
        f"{profile.seconds:g} s of load, {profile.requests} answers, bridge CPU "
        f"{profile.cpu_us_per_request:.0f} us per answer; raw stacks: {profile.raw_path}"
    )
    return [
        head,
        *rows("by layer (runtime time counted for its caller)", profile.by_layer),
        *rows("self time by function", profile.by_self),
        *rows("inclusive time by function (wrapper chains folded)", profile.by_total),
    ]


# --- the run ---------------------------------------------------------------------------------


def load_gen_cpu_s() -> float:
    """CPU seconds of this process plus its finished children: wrk, once it has exited (the
    servers under test are reaped only after the last measurement)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def machine_cpu_s() -> float:
    """CPU seconds all CPUs of the machine have been busy (/proc/stat: all but idle, iowait)."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(v) for v in stat.readline().split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def probes_for(servers: Servers, service: Child, bridge: Child | None) -> CpuProbes:
    """CPU probes: service, bridge, PostgreSQL, nats-server, the load generator, and `other`:
    the machine's busy time minus theirs (another job on the machine shows here)."""

    def pid(child: Child | None) -> int | None:
        return child.proc.pid if child is not None and child.proc is not None else None

    service_pid, bridge_pid = pid(service), pid(bridge)
    probes: CpuProbes = {
        "service": lambda: tree_cpu_s(service_pid),
        "bridge": lambda: tree_cpu_s(bridge_pid),
        "postgres": lambda: tree_cpu_s(servers.postgres_pid),
        "nats-server": lambda: tree_cpu_s(servers.nats_pid),
        "load-gen": load_gen_cpu_s,
    }
    ours = list(probes.values())
    probes["other"] = lambda: machine_cpu_s() - sum(probe() for probe in ours)
    return probes


@dataclass(frozen=True)
class Options:
    """The command line: commands.py's options plus this bench's own."""

    config: Config
    client: str
    wrk_threads: int
    variants: tuple[BridgeSpec, ...]
    variant_path: str
    profile: bool
    retries: int


@dataclass
class Report:
    """Everything a run found."""

    settings: dict[str, Any]
    results: list[Result]
    notes: list[str]
    load_gens: dict[str, str]
    profiles: list[Profile] = field(default_factory=list)

    @property
    def flagged(self) -> bool:
        """True when any answer was an error or wrong."""
        return any(r.errors for r in self.results)

    def ratios(self, result: Result) -> tuple[float, float, float]:
        """req/s, p50 and p99 of `result` relative to agent.get over NATS."""
        nats_row = next(r for r in self.results if r.scenario == NATS_GET)
        return (
            result.req_per_s / nats_row.req_per_s,
            result.p50_ms / nats_row.p50_ms,
            result.p99_ms / nats_row.p99_ms,
        )

    @property
    def ratio(self) -> float:
        """HTTP req/s / NATS req/s for the default bridge."""
        return self.ratios(next(r for r in self.results if r.scenario == HTTP_GET))[0]


def describe(options: Options, nats_version: str, postgres: str, wrk: Wrk | None) -> dict[str, Any]:
    """The settings of this run, printed and written with the figures."""
    config = options.config

    def installed(name: str) -> str:
        return "installed" if importlib.util.find_spec(name) is not None else "not installed"

    if wrk is not None:
        http_client = (
            f"{wrk.version}, {min(options.wrk_threads, config.inflight)} thread(s), "
            f"{config.inflight} keep-alive connections with one request each, Lua round-robin, "
            f"--latency; answers >= 400 and socket errors counted by wrk, every agent read and "
            "checked once beforehand"
        )
    else:
        why = " (no wrk on PATH)" if options.client == "auto" else ""
        http_client = (
            f"python{why}: {config.inflight} HTTP/1.1 keep-alive connections on asyncio "
            "protocols in this process, one request each at a time, every answer checked"
        )
    uvloop, httptools = installed("uvloop"), installed("httptools")
    settings: dict[str, Any] = {
        "machine": (
            f"{os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}"
        ),
        "load": (
            f"{config.inflight} requests in flight, {config.warmup:g} s warm-up + "
            f"{config.seconds:g} s per scenario, round-robin over {GET_POOL} agents, "
            f"timeout {REQUEST_TIMEOUT_S:g} s"
        ),
        "NATS side": (
            f"nats-py {importlib.metadata.version('nats-py')}, 1 connection in this process, "
            "every reply checked"
        ),
        "HTTP side": http_client,
        "nats-server": f"{nats_version}, JetStream file store in a temp folder, default options",
        "postgres": postgres,
        "service": "agent-orchestrator serve, AO_LOG_LEVEL=WARNING, otherwise defaults",
        "bridge": (
            f"agent-orchestrator bridge, default settings: uvicorn "
            f"{importlib.metadata.version('uvicorn')}, 1 worker, access log off, loop and "
            f"HTTP parser 'auto' (uvloop {uvloop} -> "
            f"{'uvloop' if uvloop == 'installed' else 'asyncio'}, httptools {httptools} -> "
            f"{'httptools' if httptools == 'installed' else 'h11'}), fastapi "
            f"{importlib.metadata.version('fastapi')}, starlette "
            f"{importlib.metadata.version('starlette')}"
        ),
        "order": "each bridge runs alone with the service; NATS side first, then the bridges",
    }
    for spec in options.variants:
        path = f" (PYTHONPATH {options.variant_path} first)" if options.variant_path else ""
        argv = ["python", *spec.argv(0)[1:]]
        settings[f"variant {spec.label}"] = shlex.join(argv).replace(" --port 0", "") + path
    return settings


async def unless_noisy(
    measure_once: Callable[[], Awaitable[Result]], retries: int, report: Report
) -> Result:
    """Measure; again, up to `retries` times, while other processes took more than NOISY_PCT
    of the machine. Keeps the quietest measurement."""
    results = [await measure_once()]
    while (other := other_pct(results[-1])) > NOISY_PCT and len(results) <= retries:
        print(f"  other processes took {other:.0f}% of the machine: measuring again", flush=True)
        results.append(await measure_once())
    best = min(results, key=other_pct)
    if len(results) > 1:
        report.notes.append(
            f"{best.scenario}: measured {len(results)} times as other processes were busy, "
            f"kept the quietest (others at {other_pct(best):.0f}%)"
        )
    return best


async def bench_bridge(
    spec: BridgeSpec,
    options: Options,
    servers: Servers,
    service: Child,
    load: HttpLoad,
    ids: Sequence[str],
    report: Report,
) -> None:
    """Start one bridge, check it, measure it (and profile it), stop it."""
    port = free_port(HOST)
    bridge = bridge_child(spec, servers.nats_url, servers.folder, port, options.variant_path)
    try:
        async with running(bridge):
            await wait_ready(port, bridge)
            await check_every_agent(port, ids, options.config.inflight)
            probes = probes_for(servers, service, bridge)
            report.results.append(
                await unless_noisy(
                    lambda: load.measure(spec.scenario, port, probes), options.retries, report
                )
            )
            report.load_gens[spec.scenario] = load.name
            if options.profile and bridge.proc is not None:
                report.profiles.append(
                    await profile_bridge(
                        spec.scenario,
                        bridge.proc.pid,
                        load,
                        port,
                        options.config.seconds,
                        servers.folder,
                    )
                )
    finally:
        report.notes += [*bridge.notes, bridge.log_summary()]


async def run_all(options: Options, servers: Servers) -> Report:
    """Service, set-up, agent.get over NATS, then each bridge through HTTP."""
    config = options.config
    nc: Client = await nats.connect(servers.nats_url, name="bench-load")
    service = service_child(servers.nats_url, servers.database_url, servers.folder)
    try:
        async with running(service):
            probe = encode({"agent_id": str(uuid.uuid4())})
            await wait_answering(nc, service, subjects.AGENT_GET, probe)
            print(f"  set-up: {GET_POOL} agents to read", flush=True)
            ids = await create_agents(nc, GET_POOL, "bench-bridge", config.inflight)
            wrk = None
            if options.client != "python":
                wrk = Wrk.find(servers.folder, ids, options.wrk_threads)
            load = HttpLoad(wrk, ids, config)
            settings = describe(
                options,
                str(nc.connected_server_version).strip("<>"),
                await postgres_settings(servers.database_url),
                wrk,
            )
            report = Report(settings, [], [], {})
            over_nats = [get_call(nc, ids, slot) for slot in range(config.inflight)]
            probes = probes_for(servers, service, None)
            report.results.append(
                await unless_noisy(
                    lambda: measure(NATS_GET, over_nats, config, probes), options.retries, report
                )
            )
            report.load_gens[NATS_GET] = "nats-py"
            for spec in (BridgeSpec(), *options.variants):
                await bench_bridge(spec, options, servers, service, load, ids, report)
        report.notes[:0] = [*service.notes, service.log_summary()]
    finally:
        await nc.close()
    return report


# --- the report ------------------------------------------------------------------------------


def verdict(report: Report, result: Result) -> tuple[str, str]:
    """(target, verdict) cells of a row: the target is judged on the default bridge."""
    flag = " (ERRORS)" if result.errors else ""
    if result.scenario == HTTP_GET:
        met = report.ratios(result)[0] >= TARGET
        return f">= {TARGET:.1f}x NATS", ("met" if met else "MISSED") + flag
    if result.scenario == NATS_GET:
        return "-", "-" + flag
    return "(variant)", ("would meet" if report.ratios(result)[0] >= TARGET else "short") + flag


def table(report: Report) -> str:
    """The main table: figures, load generator, ratios to the NATS side, verdict."""
    w = name_width(report.results)
    header = (
        f"{'scenario':<{w}}{'load-gen':>9}{'requests':>9}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'x req/s':>8}{'x p50':>7}{'x p99':>7}{'errors':>7}  {'target':<14}verdict"
    )
    lines = [header, "-" * len(header)]
    for r in report.results:
        rate, p50, p99 = report.ratios(r)
        target, text = verdict(report, r)
        lines.append(
            f"{r.scenario:<{w}}{report.load_gens[r.scenario]:>9}{r.requests:>9}"
            f"{r.req_per_s:>8.0f}{r.p50_ms:>8.2f}{r.p99_ms:>8.2f}{rate:>8.2f}{p50:>7.2f}"
            f"{p99:>7.2f}{r.errors:>7}  {target:<14}{text}"
        )
    return "\n".join(lines)


def other_pct(result: Result) -> float:
    """How busy other processes kept the machine during the measurement, in % of all CPUs."""
    other = result.cpu_us_per_request.get("other", 0.0)
    return other * result.req_per_s / ((os.cpu_count() or 1) * 1e4)


def cpu_total_lines(report: Report) -> list[str]:
    """Our processes' CPU per request next to what the machine has, and a warning when other
    processes took more than NOISY_PCT of the machine during a measurement."""
    cpus = os.cpu_count() or 1
    lines = []
    for r in report.results:
        ours = sum(us for name, us in r.cpu_us_per_request.items() if name != "other")
        lines.append(
            f"CPU per request of the processes above, {r.scenario}: {ours:.0f} us "
            f"(at most {cpus * 1e6 / max(ours, 1):.0f} req/s on {cpus} CPUs)"
        )
        if (other := other_pct(r)) > NOISY_PCT:
            lines.append(
                f"  NOISY: other processes kept {other:.0f}% of the machine busy during "
                f"{r.scenario}; run again on an idle machine"
            )
    return lines


def print_report(report: Report) -> None:
    """Settings, main table, CPU table, profiles, process notes, errors."""
    print("\nsettings:")
    for key, value in report.settings.items():
        print(f"  {key}: {value}")
    print()
    print(table(report))
    print("x req/s, x p50, x p99: HTTP / NATS (for latency above 1 is slower)")
    print()
    print(cpu_table(report.results))
    print()
    for line in cpu_total_lines(report):
        print(line)
    for profile in report.profiles:
        print()
        for line in profile_lines(profile):
            print(line)
    print()
    for line in report.notes + error_lines(report.results):
        print(line)
    if report.flagged:
        print("\nFLAGGED: some answers were errors or wrong; those scenarios' figures are suspect.")


def write_json(path: Path, report: Report) -> None:
    """The same figures as the tables, as JSON."""
    document = {
        "settings": report.settings,
        "target": f"{HTTP_GET} >= {TARGET}x {NATS_GET} req/s",
        "ratio_http_to_nats": round(report.ratio, 3),
        "target_met": report.ratio >= TARGET,
        "results": [
            asdict(r)
            | {
                "load_gen": report.load_gens[r.scenario],
                "other_busy_pct": round(other_pct(r), 1),
                "ratios_to_nats": dict(
                    zip(("req_per_s", "p50", "p99"), report.ratios(r), strict=True)
                ),
            }
            for r in report.results
        ],
        "profiles": [asdict(p) for p in report.profiles],
        "notes": report.notes,
        "flagged": report.flagged,
    }
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def parse_variant(text: str) -> BridgeSpec:
    """`LABEL=uvicorn options` -> BridgeSpec."""
    label, sep, options = text.partition("=")
    if not sep or not label.strip():
        raise argparse.ArgumentTypeError("expected LABEL=UVICORN OPTIONS")
    return BridgeSpec(label.strip(), tuple(shlex.split(options)))


def parse_args(argv: Sequence[str] | None) -> Options:
    """The command line (commands.py's options and this bench's own)."""
    parser = argparse.ArgumentParser(
        description="agent.get over NATS next to GET /api/agents/{id} through the bridge."
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds a scenario")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds a scenario")
    parser.add_argument("--inflight", type=int, default=50, help="requests in flight")
    parser.add_argument(
        "--client",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="HTTP load generator: wrk, the light in-process client, or wrk when on PATH",
    )
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument(
        "--variant",
        type=parse_variant,
        action="append",
        default=[],
        metavar="LABEL=OPTIONS",
        help="also measure the app under `python -m uvicorn --factory` with these options",
    )
    parser.add_argument("--variant-path", default="", help="prepended to the variants' PYTHONPATH")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy each bridge in an extra, unmeasured phase"
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=2,
        help=f"measure a scenario again while other processes take > {NOISY_PCT:g}%% of the CPUs",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temp folder (server logs, data) afterwards"
    )
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.warmup < 0 or args.inflight < 1 or args.wrk_threads < 1:
        parser.error("--seconds must be > 0, --warmup >= 0, --inflight and --wrk-threads >= 1")
    if args.retries < 0:
        parser.error("--retries must be >= 0")
    if args.client == "wrk" and shutil.which("wrk") is None:
        parser.error("--client wrk: no wrk on PATH (Debian: apt-get install wrk)")
    uses_wrk = args.client != "python" and shutil.which("wrk") is not None
    if uses_wrk and not (args.seconds.is_integer() and args.warmup.is_integer()):
        parser.error("wrk takes whole seconds: --seconds and --warmup must be whole numbers")
    config = Config(args.seconds, args.warmup, args.inflight, args.json, args.keep)
    return Options(
        config,
        args.client,
        args.wrk_threads,
        tuple(args.variant),
        args.variant_path,
        args.profile,
        args.retries,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Start the servers, measure both ways in, print the report, stop everything."""
    options = parse_args(argv)
    return run_bench(
        "ao-bench-bridge-",
        keep=options.config.keep,
        json_path=options.config.json_path,
        measure=lambda servers: run_all(options, servers),
        print_report=print_report,
        write_json=write_json,
    )


if __name__ == "__main__":
    sys.exit(main())
