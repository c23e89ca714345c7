"""The HTTP bridge's cost: agent.get over NATS directly next to GET /api/agents/{id} through
`agent-orchestrator bridge`, in one run.

    python bench/bridge.py [--seconds 5] [--warmup 1] [--inflight 50] [--json out.json] [--keep]

Uses the harness of commands.py: its own nats-server and PostgreSQL in a temp folder,
`agent-orchestrator serve` as a subprocess, and here also `agent-orchestrator bridge` as a
subprocess of its own (NATS_URL set, a free port, ready once /readyz answers 200). 100 agents
are created, then with --inflight requests in flight for --seconds each (after --warmup):
  agent.get            nats-py requests on one connection, round-robin over the agents
  GET /api/agents/{id} one httpx.AsyncClient (HTTP/1.1 keep-alive, up to --inflight
                       connections) through the bridge, round-robin over the same agents
Every reply is checked (no error reply / status 200, the right agent_id). Target from the
issue: HTTP req/s >= 0.5x NATS req/s. Exit code 1 when any reply was an error or wrong;
a missed target does not change the exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import importlib.util
import json
import os
import platform
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
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
    bench_servers,
    child_env,
    cpu_table,
    create_agents,
    encode,
    error_lines,
    get_call,
    measure,
    name_width,
    own_cpu_s,
    postgres_settings,
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


# --- the bridge as a child process -----------------------------------------------------------


def bridge_child(nats_url: str, folder: Path, port: int) -> Child:
    """`agent-orchestrator bridge` on HOST:port against nats_url, default settings otherwise."""
    script = Path(sys.executable).parent / "agent-orchestrator"
    if script.is_file():
        argv = [str(script)]
    else:
        argv = [sys.executable, "-c", "from agent_orchestrator.cli import main; main()"]
    argv += ["bridge", "--host", HOST, "--port", str(port)]
    env = child_env(NATS_URL=nats_url)
    return Child("agent-orchestrator bridge", argv, env, folder / "bridge.log")


async def wait_ready(http: httpx.AsyncClient, child: Child) -> None:
    """Wait until GET /readyz answers 200 (NATS connected, the service answers its ping)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    last = "no answer"
    while True:
        if child.exited():
            raise BenchError(f"{child.name} exited early; log:\n{child.log_tail()}")
        try:
            response = await http.get("/readyz")
            if response.status_code == 200:
                return
            last = f"/readyz answered {response.status_code}: {response.text[:200]}"
        except httpx.TransportError as exc:
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() > deadline:
            raise BenchError(
                f"{child.name} not ready after {READY_TIMEOUT_S:g} s ({last}); log:\n"
                f"{child.log_tail()}"
            )
        await asyncio.sleep(0.1)


# --- the HTTP calls --------------------------------------------------------------------------


def http_error(response: httpx.Response) -> ReplyError:
    """A ReplyError for a non-200 answer, keyed by status and problem code when there is one."""
    try:
        problem = response.json()
        return ReplyError(
            f"HTTP {response.status_code} {problem['code']}", str(problem.get("detail"))[:300]
        )
    except (ValueError, KeyError, TypeError):
        return ReplyError(f"HTTP {response.status_code}", response.text[:300])


def http_get_call(http: httpx.AsyncClient, agent_ids: Sequence[str], start: int) -> Call:
    """GET /api/agents/{id} round-robin over the pre-created agents."""
    position = start

    async def call() -> None:
        nonlocal position
        agent_id = agent_ids[position % len(agent_ids)]
        position += 1
        try:
            response = await http.get(f"/api/agents/{agent_id}")
        except httpx.TimeoutException as exc:
            raise ReplyError("timeout", f"no answer within {REQUEST_TIMEOUT_S} s") from exc
        except httpx.TransportError as exc:
            raise ReplyError(type(exc).__name__, str(exc)[:300]) from exc
        if response.status_code != 200:
            raise http_error(response)
        try:
            got = response.json().get("agent_id")
        except (ValueError, AttributeError) as exc:
            raise ReplyError("bad reply", response.text[:300]) from exc
        if got != agent_id:
            raise ReplyError("wrong agent_id", f"expected {agent_id!r}, got {got!r}")

    return call


# --- the run ---------------------------------------------------------------------------------


def probes_for(servers: Servers, service: Child, bridge: Child) -> CpuProbes:
    """CPU probes: service, bridge, PostgreSQL, nats-server, the load generator."""

    def pid(child: Child) -> int | None:
        return child.proc.pid if child.proc is not None else None

    service_pid, bridge_pid = pid(service), pid(bridge)
    return {
        "service": lambda: tree_cpu_s(service_pid),
        "bridge": lambda: tree_cpu_s(bridge_pid),
        "postgres": lambda: tree_cpu_s(servers.postgres_pid),
        "nats-server": lambda: tree_cpu_s(servers.nats_pid),
        "load-gen": own_cpu_s,
    }


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

    @property
    def ratio(self) -> float:
        """HTTP req/s / NATS req/s."""
        rates = {r.scenario: r.req_per_s for r in self.results}
        return rates[HTTP_GET] / rates[NATS_GET]


def describe(config: Config, nats_version: str, postgres: str, port: int) -> dict[str, Any]:
    """The settings of this run, printed and written with the figures."""

    def installed(name: str) -> str:
        return "yes" if importlib.util.find_spec(name) is not None else "no"

    return {
        "machine": (
            f"{os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}"
        ),
        "load": (
            f"{config.inflight} requests in flight, {config.warmup:g} s warm-up + "
            f"{config.seconds:g} s per scenario, round-robin over {GET_POOL} agents, "
            f"timeout {REQUEST_TIMEOUT_S:g} s, both clients in this one process"
        ),
        "NATS client": f"1 nats-py {importlib.metadata.version('nats-py')} connection",
        "HTTP client": (
            f"1 httpx {importlib.metadata.version('httpx')} AsyncClient, HTTP/1.1 keep-alive, "
            f"max {config.inflight} connections"
        ),
        "nats-server": f"{nats_version}, JetStream file store in a temp folder, default options",
        "postgres": postgres,
        "service": "agent-orchestrator serve, AO_LOG_LEVEL=WARNING, otherwise defaults",
        "bridge": (
            f"agent-orchestrator bridge --host {HOST} --port {port}, default settings: "
            f"uvicorn {importlib.metadata.version('uvicorn')} (uvloop installed: "
            f"{installed('uvloop')}, httptools installed: {installed('httptools')}), "
            "access log on, 1 worker"
        ),
    }


async def run_all(config: Config, servers: Servers) -> Report:
    """Service, bridge, set-up, then agent.get over NATS and the same through the bridge."""
    nc: Client = await nats.connect(servers.nats_url, name="bench-load")
    port = free_port(HOST)
    service = service_child(servers.nats_url, servers.database_url, servers.folder)
    bridge = bridge_child(servers.nats_url, servers.folder, port)
    limits = httpx.Limits(
        max_connections=config.inflight, max_keepalive_connections=config.inflight
    )
    http = httpx.AsyncClient(
        base_url=f"http://{HOST}:{port}", limits=limits, timeout=REQUEST_TIMEOUT_S
    )
    notes: list[str] = []
    try:
        settings = describe(
            config,
            str(nc.connected_server_version).strip("<>"),
            await postgres_settings(servers.database_url),
            port,
        )
        async with running(service), running(bridge):
            probe = encode({"agent_id": str(uuid.uuid4())})
            await wait_answering(nc, service, subjects.AGENT_GET, probe)
            await wait_ready(http, bridge)
            print(f"  set-up: {GET_POOL} agents to read", flush=True)
            ids = await create_agents(nc, GET_POOL, "bench-bridge", config.inflight)
            probes = probes_for(servers, service, bridge)
            over_nats = [get_call(nc, ids, slot) for slot in range(config.inflight)]
            over_http = [http_get_call(http, ids, slot) for slot in range(config.inflight)]
            results = [
                await measure(NATS_GET, over_nats, config, probes),
                await measure(HTTP_GET, over_http, config, probes),
            ]
        notes += [*service.notes, *bridge.notes, service.log_summary(), bridge.log_summary()]
    finally:
        await http.aclose()
        await nc.close()
    return Report(settings, results, notes)


# --- the report ------------------------------------------------------------------------------


def verdict(report: Report, result: Result) -> tuple[str, str, str]:
    """(x NATS, target, verdict) cells of a row."""
    if result.scenario != HTTP_GET:
        return "1.00", "-", "(ERRORS)" if result.errors else "-"
    text = "met" if report.ratio >= TARGET else "MISSED"
    if result.errors:
        text += " (ERRORS)"
    return f"{report.ratio:.2f}", f">= {TARGET:.1f}x NATS", text


def table(report: Report) -> str:
    """The main table, in commands.py's style."""
    w = name_width(report.results)
    header = (
        f"{'scenario':<{w}}{'requests':>9}{'req/s':>9}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'x NATS':>8}{'errors':>7}  {'target':<14}verdict"
    )
    lines = [header, "-" * len(header)]
    for r in report.results:
        ratio, target, text = verdict(report, r)
        lines.append(
            f"{r.scenario:<{w}}{r.requests:>9}{r.req_per_s:>9.0f}{r.p50_ms:>8.2f}{r.p99_ms:>8.2f}"
            f"{ratio:>8}{r.errors:>7}  {target:<14}{text}"
        )
    return "\n".join(lines)


def print_report(report: Report) -> None:
    """Settings, main table, CPU table, process notes, errors."""
    print("\nsettings:")
    for key, value in report.settings.items():
        print(f"  {key}: {value}")
    print()
    print(table(report))
    print()
    print(cpu_table(report.results))
    print()
    for line in report.notes + error_lines(report.results):
        print(line)
    if report.flagged:
        print("\nFLAGGED: some replies were errors or wrong; those scenarios' figures are suspect.")


def write_json(path: Path, report: Report) -> None:
    """The same figures as the tables, as JSON."""
    document = {
        "settings": report.settings,
        "target": f"{HTTP_GET} >= {TARGET}x {NATS_GET} req/s",
        "ratio_http_to_nats": round(report.ratio, 3),
        "target_met": report.ratio >= TARGET,
        "results": [asdict(r) for r in report.results],
        "notes": report.notes,
        "flagged": report.flagged,
    }
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def parse_args(argv: Sequence[str] | None) -> Config:
    """The command line (the same options as commands.py)."""
    parser = argparse.ArgumentParser(
        description="agent.get over NATS next to GET /api/agents/{id} through the bridge."
    )
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


def main(argv: Sequence[str] | None = None) -> int:
    """Start the servers, measure both ways in, print the report, stop everything."""
    config = parse_args(argv)
    with bench_servers("ao-bench-bridge-", keep=config.keep) as servers:
        try:
            report = asyncio.run(run_all(config, servers))
        except BenchError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    print_report(report)
    if config.json_path is not None:
        write_json(config.json_path, report)
        print(f"\nwrote {config.json_path}")
    return 1 if report.flagged else 0


if __name__ == "__main__":
    sys.exit(main())
