"""Tasks, execute -> complete, run by the example agent program: throughput and latency next to
a raw JetStream publish/consume of the same payload, measured in the same run.

    python bench/tasks.py [--tasks 3000] [--raw-tasks 15000] [--warmup 300] [--agents 4]
                          [--inflight 2x agents] [--raw-batch 1] [--worker-concurrency 1]
                          [--json out.json] [--keep]

Uses the harness of commands.py and messages.py: its own nats-server and PostgreSQL in a temp
folder (default settings), `agent-orchestrator serve` as a subprocess, one nats-py connection
in this process (the load generator). Both paths run messages.py's closed loop: --inflight
slots, each with exactly one task between "execute started" and "seen done" (slot i hands its
tasks to agent i % A), --warmup tasks first, unmeasured, then the measured ones (--raw-tasks for
raw JetStream, by default 5x --tasks as it is that much faster), every one followed from its
start to its end; the clock runs from the first start to the last end.

  raw JetStream  a stream with the configuration of AGENT_TASKS under other subjects and, per
                 agent, a durable pull consumer configured like the service's task consumer
                 (ack wait task_ack_wait_s, unlimited deliveries); a task is `js.publish` of
                 the agent.execute body (with a Nats-Msg-Id) awaiting the PubAck; per agent
                 one loop in this process `fetch`es up to --raw-batch (1 by default, as the
                 worker SDK does) and `ack`s each. Its end: the ack is done.
  tasks          --agents agents, created and started (ACTIVE), each served by its own
                 `python examples/word_count_agent.py --agent-id ID --no-total` process
                 (AgentWorker, --worker-concurrency tasks at a time, 1 by default):
                 task.start, ack of the assignment, task.complete (the SDK's task path: two
                 requests, no state round trip). A task is
                 `OrchestratorClient.execute` (agent.execute: PostgreSQL, then the handler
                 publishes the TaskAssignment to agent.task.<agent_id>, the outbox relay
                 being its safety net). Its end: this
                 process receives its `task_succeeded` event.

How the end of a task is seen: core NATS subscriptions on agent.event.*.task_succeeded,
.task_failed and .task_cancelled. The outbox relay publishes every event to AGENT_EVENTS once
task.complete has committed; a core subscriber gets it as it is published, so "seen done" is
the moment a client waiting on events learns the outcome, and includes the relay's lag (shown as
its own stage). Polling task.get would learn of the commit a little earlier but only at its
poll interval, and would add its own load; one event per task costs the load generator
almost nothing. An event that arrives before the reply of its agent.execute is matched when
the reply comes, stamped with its arrival time.

Reported per path: tasks/s, latency p50/p99 (execute start -> seen done), the ratios tasks /
raw (no target in the issue), the stages of a task, the CPU µs per task of the service,
PostgreSQL, nats-server, this load generator and the worker processes summed, and the outbox
backlog sampled during the measured phase. The stages of a task (see STAGES) split its
latency at the service's timestamps started_at and finished_at (when its handlers of task.start
and task.complete began), so they are wall-clock differences. Afterwards every task must be
SUCCEEDED at its first attempt with its word count as its result ({"words": N}), and
AGENT_TASKS empty. About 35 s with the defaults. Exit code 1 when a task failed, was
not seen done within 30 s, or a check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import os
import platform
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import nats
import nats.errors
import nats.js.errors
from commands import (
    BenchError,
    Child,
    CpuProbes,
    Outbox,
    ReplyError,
    Servers,
    child_env,
    cpu_table,
    encode,
    error_lines,
    outbox_lines,
    percentile_ms,
    postgres_settings,
    run_bench,
    running,
    service_child,
    tree_cpu_s,
    wait_answering,
)
from messages import (
    FILLER,
    BacklogSampler,
    Loop,
    PathResult,
    RawQueues,
    Report,
    Send,
    Tracker,
    backlog_lines,
    bench_raw,
    measure,
    probes_for,
    stage_table,
    start_agents,
    stream_messages,
    table,
)
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.client import JetStreamContext

from agent_orchestrator.client import OrchestratorClient, RequestFailed
from agent_orchestrator.contracts import subjects
from agent_orchestrator.contracts.events import EventKind
from agent_orchestrator.contracts.queues import QueueSettings
from agent_orchestrator.contracts.tasks import ExecuteTask
from agent_orchestrator.settings import Settings

TASKS = "word-count tasks"
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "word_count_agent.py"
#: The outcomes a client waits for; task_failed also covers TIMED_OUT.
FINAL_EVENTS = (EventKind.TASK_SUCCEEDED, EventKind.TASK_FAILED, EventKind.TASK_CANCELLED)
WORDS = len(FILLER.split())
READY_TIMEOUT_S = 60.0
#: How long the workers get to leave after their agents are terminated.
EXIT_TIMEOUT_S = 15.0
WATCH_S = 0.5
_FIELDS = Settings.model_fields

RAW_TASK_QUEUES = RawQueues(
    subjects.TASKS_STREAM,
    "BENCH_RAW_TASKS",
    "bench.task",
    subjects.task_consumer,
    QueueSettings(ack_wait_s=_FIELDS["task_ack_wait_s"].default, max_deliveries=-1),
    "task queue",
)
"""Task queues like the service's (see Service: default task_ack_wait_s, no delivery limit)."""


# --- payloads --------------------------------------------------------------------------------


def task_input(seq: int) -> dict[str, Any]:
    """What a task works on: the text whose words the example agent counts, and its number."""
    return {"seq": seq, "text": FILLER}


def execute_body(_sender: str, agent_id: str, seq: int) -> dict[str, Any]:
    """The agent.execute body the SDK sends; also what the raw path publishes."""
    return {"agent_id": agent_id, "input": task_input(seq), "parameters": {}}


def raw_input(data: bytes) -> Any:
    """The input of a raw message (an agent.execute body); None if it is not one."""
    try:
        return json.loads(data)["input"]
    except (ValueError, KeyError, TypeError):
        return None


# --- the task path ---------------------------------------------------------------------------


@dataclass
class Outcomes:
    """Matches the final events of tasks with the tracker's sequence numbers."""

    tracker: Tracker
    seqs: dict[str, int] = field(default_factory=dict)
    task_ids: dict[int, str] = field(default_factory=dict)
    early: dict[str, tuple[str, float, Any]] = field(default_factory=dict)
    per_agent: Counter[str] = field(default_factory=Counter)
    matched_early: int = 0

    def executed(self, seq: int, task_id: str, agent_id: str) -> None:
        """agent.execute answered: task `seq` is `task_id`."""
        self.seqs[task_id] = seq
        self.task_ids[seq] = task_id
        self.per_agent[agent_id] += 1
        if (early := self.early.pop(task_id, None)) is not None:
            self.matched_early += 1
            self._settle(seq, *early)

    async def on_event(self, msg: Msg) -> None:
        """A final task event (subscription callback)."""
        at = time.perf_counter()
        try:
            envelope = json.loads(msg.data)
            kind, data = str(envelope["type"]), envelope["data"]
            task_id = str(data["task_id"])
        except (ValueError, KeyError, TypeError) as exc:
            self.tracker.recorder.fail(ReplyError("bad event", repr(exc)[:300]))
            return
        seq = self.seqs.get(task_id)
        if seq is None:
            self.early[task_id] = (kind, at, data)
        else:
            self._settle(seq, kind, at, data)

    def _settle(self, seq: int, kind: str, at: float, data: Any) -> None:
        if kind != EventKind.TASK_SUCCEEDED:
            reason = f"task {self.task_ids[seq]}: {data.get('status')} ({data.get('reason')})"
            self.tracker.ack_failed(seq, ReplyError(f"task {kind}", reason[:300]))
            return
        stamps = self.tracker.stamps.get(seq)
        self.tracker.acked(seq)
        if stamps is not None:
            stamps.acked = min(stamps.acked, at)  # when the event came, not when it was matched


def execute_send(client: OrchestratorClient, agents: Sequence[str], outcomes: Outcomes) -> Send:
    """OrchestratorClient.execute (agent.execute) of task `seq` to agent n % A."""

    async def send(n: int, seq: int) -> None:
        agent_id = agents[n % len(agents)]
        try:
            task = await client.execute(agent_id, task_input(seq))
        except RequestFailed as exc:
            raise ReplyError(f"agent.execute {exc.code}", exc.message[:300]) from exc
        outcomes.executed(seq, str(task.task_id), agent_id)

    return send


def worker_child(nats_url: str, agent_id: str, n: int, folder: Path, concurrency: int = 1) -> Child:
    """examples/word_count_agent.py serving `agent_id`, `concurrency` tasks at once."""
    return Child(
        f"word-count agent {n}",
        [
            sys.executable,
            str(EXAMPLE),
            *("--nats", nats_url, "--agent-id", agent_id),
            *("--no-total", "--concurrency", str(concurrency)),
        ],
        child_env(),
        folder / f"agent-{n}.log",
    )


async def waiting_pulls(js: JetStreamContext, consumer: str) -> int:
    """Pull requests waiting on ``consumer`` (0 until its worker has created it)."""
    try:
        return (await js.consumer_info(subjects.TASKS_STREAM, consumer)).num_waiting
    except nats.js.errors.NotFoundError:
        return 0


async def wait_fetching(
    js: JetStreamContext, workers: Sequence[Child], agents: Sequence[str]
) -> None:
    """Wait until every worker has a pull request waiting on its agent's task consumer."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    for child, agent_id in zip(workers, agents, strict=True):
        consumer = subjects.task_consumer(agent_id)
        while await waiting_pulls(js, consumer) < 1:
            if child.exited():
                raise BenchError(f"{child.name} exited early; log:\n{child.log_tail()}")
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{child.name} not fetching after {READY_TIMEOUT_S:g} s; log:\n"
                    f"{child.log_tail()}"
                )
            await asyncio.sleep(0.1)


async def watch(workers: Sequence[Child]) -> None:
    """Raise BenchError as soon as a worker process ends (measure's receivers only end so)."""
    while True:
        for child in workers:
            if child.exited():
                raise BenchError(f"{child.name} exited; log:\n{child.log_tail()}")
        await asyncio.sleep(WATCH_S)


def workers_cpu_s(workers: Sequence[Child]) -> float:
    """CPU seconds of every worker process so far."""
    return sum(tree_cpu_s(c.proc.pid if c.proc else None) for c in workers)


STAGES = ("execute", "-> started", "running", "-> seen done")
"""Per task: agent.execute until its reply; execute start until the service began task.start
(the insert's commit, the relay publishing the assignment, delivery, the worker's fetch, and any
wait for the agent's previous task); task.start began until task.complete began (start's write
and reply, the ack, the handler); task.complete began until this
process had the task_succeeded event (complete's write, the relay, delivery)."""


async def task_stages(
    conn: asyncpg.Connection, tracker: Tracker, outcomes: Outcomes
) -> dict[str, dict[str, float]]:
    """p50/p99 ms of every stage of the measured tasks, from the service's timestamps."""
    seq_of = {id(stamps): seq for seq, stamps in tracker.stamps.items()}
    ids = [uuid.UUID(outcomes.task_ids[seq_of[id(s)]]) for s in tracker.finished]
    rows = await conn.fetch(
        "SELECT task_id, started_at, finished_at FROM tasks WHERE task_id = ANY($1::uuid[])", ids
    )
    at: dict[uuid.UUID, tuple[datetime, datetime]] = {
        r["task_id"]: (r["started_at"], r["finished_at"]) for r in rows
    }
    spans: dict[str, list[float]] = {name: [] for name in STAGES}
    for task_id, s in zip(ids, tracker.finished, strict=True):
        started, finished = (t.timestamp() for t in at[task_id])
        seen_wall = s.sent_wall + (s.acked - s.sent)
        for name, span in zip(
            STAGES,
            (s.stored - s.sent, started - s.sent_wall, finished - started, seen_wall - finished),
            strict=True,
        ):
            spans[name].append(span)
    out = {}
    for name, values in spans.items():
        ordered = sorted(values)
        out[name] = {
            "p50": round(percentile_ms(ordered, 0.5), 3),
            "p99": round(percentile_ms(ordered, 0.99), 3),
        }
    return out


async def check_tasks(
    conn: asyncpg.Connection,
    client: OrchestratorClient,
    outcomes: Outcomes,
    expected: int,
    path: PathResult,
) -> list[str]:
    """Every task SUCCEEDED at its first attempt with its word count, AGENT_TASKS empty."""
    rows = await conn.fetch("SELECT status, count(*) AS n FROM tasks GROUP BY status")
    statuses = {row["status"]: int(row["n"]) for row in rows}
    retried = int(await conn.fetchval("SELECT count(*) FROM tasks WHERE attempts <> 1"))
    left = await stream_messages(client.nc.jetstream(), subjects.TASKS_STREAM)
    wrong = int(
        await conn.fetchval(
            "SELECT count(*) FROM tasks WHERE result IS DISTINCT FROM $1::jsonb",
            json.dumps({"words": WORDS}),
        )
    )
    problems = []
    if statuses.get("SUCCEEDED", 0) != expected or len(statuses) != 1:
        problems.append(f"tasks by status {statuses}, expected {{'SUCCEEDED': {expected}}}")
    if retried:
        problems.append(f"{retried} tasks took more than one attempt")
    if left:
        problems.append(f"{left} assignments left in {subjects.TASKS_STREAM}")
    if wrong:
        problems.append(f"{wrong} tasks without the right word count as their result")
    for problem in problems:
        path.result.errors += 1
        path.result.error_samples[problem] = "after the run"
    return [
        f"{TASKS}: tasks by status {statuses}, {retried} retried; {left} assignments left in "
        f"{subjects.TASKS_STREAM} (expected 0); {wrong} results without the right word count; "
        f"{outcomes.matched_early} events came before their execute reply",
    ]


async def stop_workers(
    client: OrchestratorClient, agents: Sequence[str], workers: Sequence[Child]
) -> str:
    """Terminate the agents; the example program returns once its agent is terminated."""
    for agent_id in agents:
        await client.change(subjects.AGENT_TERMINATE, agent_id)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(EXIT_TIMEOUT_S):
            await asyncio.gather(*(c.proc.wait() for c in workers if c.proc is not None))
    codes = Counter(c.proc.returncode if c.proc else None for c in workers)
    return (
        f"word-count agents after agent.terminate (within {EXIT_TIMEOUT_S:g} s): "
        + ", ".join(f"{n} exited {code}" for code, n in codes.items() if code is not None)
        + (f", {codes[None]} still running" if codes[None] else "")
    )


async def bench_tasks(
    nc: Client, servers: Servers, config: Config, checks: list[str], notes: list[str]
) -> PathResult:
    """agent-orchestrator serve, the agents and their example-agent processes, then the
    measurement."""
    service = service_child(servers.nats_url, servers.database_url, servers.folder)
    conn = await asyncpg.connect(servers.database_url)
    client = OrchestratorClient(nc)
    tracker = Tracker()
    outcomes = Outcomes(tracker)
    workers: list[Child] = []
    subscriptions = []
    try:
        async with running(service), contextlib.AsyncExitStack() as stack:
            probe = encode({"agent_id": str(uuid.uuid4())})
            await wait_answering(nc, service, subjects.AGENT_GET, probe)
            print(f"  set-up: {config.agents} ACTIVE agents, each served by {EXAMPLE.name}",
                  flush=True)  # fmt: skip
            agents = await start_agents(nc, client, "bench-tasks", config.agents)
            for n, agent_id in enumerate(agents):
                workers.append(
                    worker_child(
                        servers.nats_url, agent_id, n, servers.folder, config.worker_concurrency
                    )
                )
                await stack.enter_async_context(running(workers[-1]))
            await wait_fetching(nc.jetstream(), workers, agents)
            for kind in FINAL_EVENTS:
                subject = subjects.event_subject("*", kind)
                subscriptions.append(await nc.subscribe(subject, cb=outcomes.on_event))
            outbox = Outbox(conn)
            await outbox.drain()
            sampler = BacklogSampler(outbox)
            probes: CpuProbes = probes_for(servers, service) | {
                "workers": lambda: workers_cpu_s(workers)
            }
            path = await measure(
                TASKS,
                config.loop(config.tasks),
                execute_send(client, agents, outcomes),
                [watch(workers)],
                probes,
                tracker,
                before_measuring=outbox.drain,
                during=sampler.running,
            )
            path.stages = await task_stages(conn, tracker, outcomes)
            path.backlog = sampler.summary()
            path.result.outbox_backlog = await outbox.backlog()
            path.result.outbox_drain_s = await outbox.drain()
            checks += await check_tasks(conn, client, outcomes, config.warmup + config.tasks, path)
            notes.append(await stop_workers(client, agents, workers))
    finally:
        for sub in subscriptions:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
        await conn.close()
        for child in [service, *workers]:
            notes += child.notes
        notes.append(service.log_summary())
    return path


# --- running both paths ----------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """What the command line asked for."""

    tasks: int
    raw_tasks: int
    warmup: int
    agents: int
    inflight: int
    raw_batch: int
    json_path: Path | None
    keep: bool = False
    worker_concurrency: int = 1

    def loop(self, count: int) -> Loop:
        """The closed loop of a path measuring `count` tasks (fetch batch: raw_batch; the
        worker's is 1)."""
        return Loop(count, self.warmup, self.inflight, 1, self.agents, self.raw_batch, "tasks")


def describe(config: Config, nats_version: str, postgres: str) -> dict[str, Any]:
    """The settings of this run, printed and written with the figures."""
    agent_id = str(uuid.uuid4())
    body = encode(execute_body("", agent_id, 10**6))
    sdk = ExecuteTask.model_validate(execute_body("", agent_id, 10**6))
    sdk_body = sdk.model_dump_json(exclude_unset=True).encode()
    return {
        "machine": (
            f"{os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}"
        ),
        "load": (
            f"1 nats-py {importlib.metadata.version('nats-py')} connection; {config.inflight} "
            f"tasks in flight (execute start -> seen done) over {config.agents} agents (slot i "
            f"-> agent i % {config.agents}), {config.warmup} warm-up tasks per path, then "
            f"{config.raw_tasks} measured (raw) / {config.tasks} measured ({TASKS})"
        ),
        "payload": (
            f"the agent.execute body, {len(body)} bytes of JSON ({len(sdk_body)} as the SDK "
            f"writes it): input {{seq, text}} with {WORDS} words; raw publishes it, the service "
            "publishes a TaskAssignment"
        ),
        "workers": (
            f"{config.agents} processes of examples/{EXAMPLE.name} --no-total --concurrency "
            f"{config.worker_concurrency} (AgentWorker: {config.worker_concurrency} task(s) at "
            "a time, fetch batch 1, poll 1 s), each its own nats-py connection"
        ),
        "raw receive": (
            f"one loop per agent in the load generator: fetch batch {config.raw_batch}, poll "
            "1 s, every message acked as soon as it is in hand"
        ),
        "seen done": (
            "core NATS subscriptions on agent.event.*.task_succeeded|task_failed|task_cancelled "
            "(published by the outbox relay)"
        ),
        "nats-server": f"{nats_version}, JetStream file store in a temp folder, default options",
        "postgres": postgres,
        "service": (
            "agent-orchestrator serve, AO_LOG_LEVEL=WARNING, otherwise defaults: "
            f"handler_max_workers={_FIELDS['handler_max_workers'].default}, "
            f"db_pool {_FIELDS['db_pool_min'].default}-{_FIELDS['db_pool_max'].default}, "
            f"task_heartbeat_s={_FIELDS['task_heartbeat_s'].default:g}, "
            f"sweep_s={_FIELDS['sweep_s'].default:g}"
        ),
    }


def print_report(report: Report) -> None:
    """Settings, main table, stages of each path, CPU table, checks, relay lag, notes, errors."""
    print("\nsettings:")
    for key, value in report.settings.items():
        print(f"  {key}: {value}")
    print()
    print(table(report, "tasks", "tasks/s", None))
    for path in report.paths:
        print()
        print(stage_table([path]))
    print()
    print(cpu_table(report.results, "CPU us/task"))
    print()
    lines = report.checks + backlog_lines(report) + outbox_lines(report.results) + report.notes
    for line in lines + error_lines(report.results):
        print(line)
    if report.flagged:
        print("\nFLAGGED: some tasks failed, were not seen done, or a check failed.")


def write_json(path: Path, report: Report) -> None:
    """The same figures as the tables, as JSON."""
    document = {
        "settings": report.settings,
        "ratios_to_raw": {k: round(v, 3) for k, v in report.ratios().items()},
        "results": [
            asdict(p.result) | {"stages_ms": p.stages, "outbox_backlog": p.backlog}
            for p in report.paths
        ],
        "checks": report.checks,
        "notes": report.notes,
        "flagged": report.flagged,
    }
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


async def run_all(config: Config, servers: Servers) -> Report:
    """Raw JetStream first (the service not yet running), then the tasks."""
    nc = await nats.connect(servers.nats_url, name="bench-load")
    checks: list[str] = []
    notes: list[str] = []
    try:
        settings = describe(
            config,
            str(nc.connected_server_version).strip("<>"),
            await postgres_settings(servers.database_url),
        )
        raw = await bench_raw(
            nc,
            servers,
            config.loop(config.raw_tasks),
            checks,
            queues=RAW_TASK_QUEUES,
            body=execute_body,
            content=raw_input,
            probes=probes_for(servers, None) | {"workers": lambda: 0.0},
        )
        paths = [raw, await bench_tasks(nc, servers, config, checks, notes)]
    finally:
        await nc.close()
    for path in paths:
        path.result.ratio_to_raw = path.result.req_per_s / paths[0].result.req_per_s
    return Report(settings, paths, checks, notes)


# --- entry point -----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> Config:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tasks", type=int, default=3000, help="measured tasks")
    parser.add_argument(
        "--raw-tasks",
        type=int,
        default=None,
        help="measured messages of raw JetStream (default: 5x --tasks, as it is that much "
        "faster: a window under a second would be noisy)",
    )
    parser.add_argument("--warmup", type=int, default=300, help="warm-up tasks a path")
    parser.add_argument(
        "--agents", type=int, default=4, help="agents, each with its example-agent process"
    )
    parser.add_argument(
        "--inflight", "--in-flight", type=int, default=None, help="tasks in flight (default: "
        "2x --agents, so that each worker finds its next task waiting)"
    )  # fmt: skip
    parser.add_argument(
        "--raw-batch", type=int, default=1, help="messages a raw fetch asks for (the worker: 1)"
    )
    parser.add_argument(
        "--worker-concurrency",
        type=int,
        default=1,
        help="tasks each worker runs at once (AgentWorker's concurrency; default 1)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temp folder (server logs, data) afterwards"
    )
    args = parser.parse_args(argv)
    if args.raw_tasks is None:
        args.raw_tasks = 5 * args.tasks
    if args.inflight is None:
        args.inflight = 2 * args.agents
    counts = (args.tasks, args.raw_tasks, args.agents, args.inflight, args.raw_batch)
    if min(*counts, args.worker_concurrency) < 1:
        parser.error(
            "--tasks, --raw-tasks, --agents, --inflight, --raw-batch, --worker-concurrency "
            "must be >= 1"
        )
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    return Config(
        args.tasks,
        args.raw_tasks,
        args.warmup,
        args.agents,
        args.inflight,
        args.raw_batch,
        args.json,
        args.keep,
        args.worker_concurrency,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Start the servers, measure both paths, print the report, stop everything."""
    config = parse_args(argv)
    return run_bench(
        "ao-bench-tasks-",
        keep=config.keep,
        json_path=config.json_path,
        measure=lambda servers: run_all(config, servers),
        print_report=print_report,
        write_json=write_json,
        setup_errors=(BenchError, ReplyError, RequestFailed, TimeoutError),
    )


if __name__ == "__main__":
    sys.exit(main())
