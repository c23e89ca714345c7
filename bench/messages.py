"""Inter-agent messaging, send -> receive -> ack: throughput and latency of the orchestrator next
to a raw JetStream publish/consume of the same payload, measured in the same run.

    python bench/messages.py [--messages 6000] [--raw-messages 30000] [--warmup 500]
                             [--inflight 50] [--senders 4] [--recipients 4] [--batch 20]
                             [--json out.json] [--keep]

Uses the harness of commands.py: its own nats-server and PostgreSQL in a temp folder (default
settings), `agent-orchestrator serve` as a subprocess, one nats-py connection in this process
for every sender and recipient. Both paths run the same closed loop: --inflight slots, each with
exactly one message between "send started" and "ack done" (slot i sends from sender i % S to
recipient i % R, so every recipient always has its share in flight); a recipient acknowledges
each message as soon as it has it in hand (the orchestrator's acks, being requests, each in a
task of their own, so they overlap). --warmup messages first, unmeasured, then the measured
ones (--raw-messages for raw JetStream, by default 5x --messages as it is that much faster),
numbered so that every send is matched with its ack: the clock runs from the first send to the
last ack and stops only once every measured send has been acknowledged (or failed and been
counted as an error).

  raw JetStream  a stream with the configuration of AGENT_MESSAGES (work queue, file store,
                 duplicate window, message TTLs allowed) under other subjects, and per recipient
                 a durable pull consumer configured like an inbox consumer; a send is
                 `js.publish` of the agent.send body (with a Nats-Msg-Id, as the relay sets),
                 waiting for the PubAck; a recipient `fetch`es up to --batch messages (1 s
                 poll, as the SDK's Inbox) and `ack`s each.
  orchestrator   --senders and --recipients agents, started with OrchestratorClient.start_agent
                 (ACTIVE); a send is `OrchestratorClient.send` (agent.send: PostgreSQL, then the
                 handler publishes to agent.inbox.<id>, the outbox relay its safety net); a
                 recipient reads its SDK `Inbox(batch=--batch)` and calls
                 `InboxMessage.ack()` (batched into communication.handover, then the JetStream
                 ack).
  orchestrator direct
                 the same agents and inboxes; a send is `OrchestratorClient.send_direct` (a
                 publish to agent.outgoing.<sender> until its PubAck; the service's ingest
                 records it and publishes it to agent.inbox.<id>); received as above.

Reported per path: messages/s, latency p50/p99 (send start -> ack done), the ratios
orchestrator / raw (target from the issue: throughput >= 0.3x raw), the stages of a message
(send request; send start -> stored in the inbox stream; stream -> recipient's hands; ack), the
CPU µs per message of the service, PostgreSQL, nats-server and this load generator, and the
outbox backlog sampled during the orchestrator's measured phase. Afterwards the log must hold
every message DELIVERED and both streams must be empty. About 30 s with the defaults.
Exit code 1 when a message failed, was not acknowledged or came twice; a missed target does
not change the exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib.metadata
import json
import math
import os
import platform
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass, field
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
    Recorder,
    ReplyError,
    Result,
    Servers,
    Target,
    bounded_map,
    cpu_snapshot,
    cpu_table,
    create_agents,
    encode,
    error_lines,
    name_width,
    outbox_lines,
    own_cpu_s,
    percentile_ms,
    postgres_settings,
    run_bench,
    running,
    service_child,
    summarize,
    tree_cpu_s,
    wait_answering,
)
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import StreamConfig
from nats.js.client import JetStreamContext

from agent_orchestrator.client import Inbox, InboxMessage, OrchestratorClient, RequestFailed
from agent_orchestrator.client.pull_queue import worker_consumer
from agent_orchestrator.contracts import subjects
from agent_orchestrator.contracts.queues import QueueSettings
from agent_orchestrator.settings import Settings
from agent_orchestrator.storage.jetstream import JetStreamLayout

RAW, ORCHESTRATOR, DIRECT = "raw JetStream", "orchestrator", "orchestrator direct"
#: Minimum ratio of the orchestrator's messages/s to raw JetStream's (from the issue).
TARGET = 0.3
RAW_STREAM = "BENCH_RAW_MESSAGES"
RAW_PREFIX = "bench.inbox"
#: A message not acknowledged this long after its send started counts as not delivered.
ACK_TIMEOUT_S = 30.0
#: How long one fetch waits when the inbox is empty (the SDK Inbox's default poll_s).
POLL_S = 1.0
#: How long the streams may take to drop acknowledged messages after the last ack.
SETTLE_S = 5.0
SETUP_LIMIT = 20
#: How often the outbox backlog is sampled during the orchestrator's measured phase.
SAMPLE_S = 0.1
FILLER = (
    "Summarise the three sources on the retrieval pipeline, list the open questions and send "
    "the draft to the reviewer by noon."
)

Send = Callable[[int, int], Awaitable[None]]
"""Send message `seq` (second argument) from slot `n` (first); raises ReplyError on failure."""
Body = Callable[[str, str, int], dict[str, Any]]
"""The JSON a raw send publishes: from sender (first argument) to recipient, message `seq`."""
Content = Callable[[bytes], Any]
"""What carries the sequence number in a raw message (None if it is not one)."""


# --- payloads --------------------------------------------------------------------------------


def content(seq: int) -> dict[str, Any]:
    """The message content: about 200 bytes of JSON carrying its sequence number."""
    return {"seq": seq, "task": "summarise", "priority": "normal", "text": FILLER}


def send_body(from_agent_id: str, to_agent_id: str, seq: int) -> dict[str, Any]:
    """An agent.send body; also what the raw path publishes."""
    return {
        "from_agent_id": from_agent_id,
        "to_agent_id": to_agent_id,
        "type": "message",
        "content": content(seq),
    }


# --- following every message from send to ack ------------------------------------------------


@dataclass
class Stamps:
    """When one message passed each step: perf_counter seconds, and wall-clock seconds to
    compare with the time JetStream stored it (its metadata timestamp)."""

    sent: float
    sent_wall: float
    done: asyncio.Future[None]
    stored: float = math.nan
    in_stream_wall: float = math.nan
    received: float = math.nan
    received_wall: float = math.nan
    acked: float = math.nan


@dataclass
class Tracker:
    """Matches every receive and ack with its send, by sequence number."""

    stamps: dict[int, Stamps] = field(default_factory=dict)
    recorder: Recorder = field(default_factory=Recorder)
    finished: list[Stamps] = field(default_factory=list)

    def new_phase(self) -> Recorder:
        """Start recording a new phase; its Recorder."""
        self.recorder = Recorder()
        self.finished = []
        return self.recorder

    def begin(self, seq: int) -> Stamps:
        """A send is starting."""
        future = asyncio.get_running_loop().create_future()
        stamps = Stamps(time.perf_counter(), time.time(), future)
        self.stamps[seq] = stamps
        return stamps

    def sequence(self, content: Any) -> int | None:
        """The sequence number in a message's content; None (and an error) if it has none."""
        try:
            return int(content["seq"])
        except (TypeError, KeyError, ValueError) as exc:
            self.recorder.fail(ReplyError("bad message", repr(exc)[:300]))
            return None

    def _waiting(self, seq: int, step: str) -> Stamps | None:
        stamps = self.stamps.get(seq)
        if stamps is None or stamps.done.done():
            self.recorder.fail(
                ReplyError("unexpected delivery", f"message {seq} {step} but nobody waits for it")
            )
            return None
        return stamps

    def received(self, seq: int, msg: Msg) -> bool:
        """The recipient has message `seq` (JetStream message `msg`) in hand; False when
        nobody waits for it."""
        stamps = self._waiting(seq, "received")
        if stamps is not None:
            stamps.received = time.perf_counter()
            stamps.received_wall = time.time()
            stamps.in_stream_wall = msg.metadata.timestamp.timestamp()
        return stamps is not None

    def acked(self, seq: int) -> None:
        """The recipient's ack of `seq` is done."""
        stamps = self._waiting(seq, "acknowledged")
        if stamps is not None:
            stamps.acked = time.perf_counter()
            stamps.done.set_result(None)

    def ack_failed(self, seq: int, exc: ReplyError) -> None:
        """The recipient could not acknowledge `seq`."""
        if (stamps := self._waiting(seq, "failed to ack")) is not None:
            stamps.done.set_exception(exc)

    async def follow(self, n: int, seq: int, send: Send) -> None:
        """Send `seq` from slot `n` and wait for its ack; record the latency or the error."""
        stamps = self.begin(seq)
        try:
            await send(n, seq)
            stamps.stored = time.perf_counter()
            await asyncio.wait_for(stamps.done, ACK_TIMEOUT_S)
        except ReplyError as exc:
            self.recorder.fail(exc)
        except TimeoutError:
            detail = f"message {seq} not acknowledged within {ACK_TIMEOUT_S:g} s of its send"
            self.recorder.fail(ReplyError("not delivered", detail))
        else:
            self.recorder.latencies.append(stamps.acked - stamps.sent)
            self.finished.append(stamps)


async def run_phase(
    tracker: Tracker, send: Send, first: int, count: int, inflight: int
) -> Recorder:
    """Messages first .. first+count-1 through `inflight` slots; elapsed: first send to last
    ack (or last failure)."""
    recorder = tracker.new_phase()
    slots = min(inflight, count)

    async def slot(n: int) -> None:
        for seq in range(first + n, first + count, slots):
            await tracker.follow(n, seq, send)

    began = time.perf_counter()
    await asyncio.gather(*(slot(n) for n in range(slots)))
    recorder.elapsed = time.perf_counter() - began
    return recorder


# --- stages ----------------------------------------------------------------------------------


STAGES: dict[str, Callable[[Stamps], float]] = {
    "request": lambda s: s.stored - s.sent,
    "into stream": lambda s: s.in_stream_wall - s.sent_wall,
    "stream -> hand": lambda s: s.received_wall - s.in_stream_wall,
    "ack": lambda s: s.acked - s.received,
}
"""Per message: the send request (agent.send until its reply / publish until the PubAck);
send start until JetStream stored it in the recipient's inbox (for the orchestrator: agent.send
and the outbox relay); from the stream into the recipient's hands (consumer delivery, fetch,
decoding); the ack (communication.delivered and the JetStream ack / the JetStream ack alone).
The middle two use the stream's timestamp, so they are wall-clock differences."""


def stage_ms(finished: Sequence[Stamps]) -> dict[str, dict[str, float]]:
    """p50/p99 ms of every stage."""
    out = {}
    for name, span in STAGES.items():
        ordered = sorted(span(s) for s in finished)
        out[name] = {
            "p50": round(percentile_ms(ordered, 0.5), 3),
            "p99": round(percentile_ms(ordered, 0.99), 3),
        }
    return out


# --- the raw JetStream path ------------------------------------------------------------------


@dataclass(frozen=True)
class RawQueues:
    """The raw baseline's copy of one of the service's per-agent work queues: a stream with the
    configuration of the service's stream `like` under its own name and subjects, and per
    recipient a pull consumer configured like a worker's (by client.pull_queue)."""

    like: str
    stream: str
    prefix: str
    consumer: Callable[[str], str]
    settings: QueueSettings
    holds: str

    def subject(self, recipient: str) -> str:
        """Where a recipient's messages go."""
        return f"{self.prefix}.{recipient}"

    def stream_config(self) -> StreamConfig:
        """The configuration of `like`, under `stream` and its own subjects."""
        (template,) = [s for s in JetStreamLayout().streams() if s.name == self.like]
        config: StreamConfig = dataclasses.replace(
            template,
            name=self.stream,
            subjects=[f"{self.prefix}.>"],
            description=f"bench: the raw JetStream baseline, configured like {self.like}.",
        )
        return config

    async def setup(self, js: JetStreamContext, recipients: Sequence[str]) -> list[Any]:
        """The stream (afresh) and one consumer per recipient; their subscriptions."""
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(self.stream)
        await js.add_stream(self.stream_config())
        subscriptions = []
        for recipient in recipients:
            config = dataclasses.replace(
                worker_consumer(self.consumer(recipient), self.subject(recipient), self.settings),
                description=f"bench: raw {self.holds} of {recipient}.",
            )
            await js.add_consumer(self.stream, config)
            assert config.name is not None
            subscriptions.append(await js.pull_subscribe_bind(config.name, self.stream))
        return subscriptions


RAW_INBOXES = RawQueues(
    subjects.MESSAGES_STREAM,
    RAW_STREAM,
    RAW_PREFIX,
    subjects.inbox_consumer,
    QueueSettings(),
    "inbox",
)
"""Inboxes like the service's (default message_ack_wait_s and message_max_deliveries)."""


def raw_send(
    js: JetStreamContext,
    queues: RawQueues,
    senders: Sequence[str],
    recipients: Sequence[str],
    body: Body = send_body,
) -> Send:
    """js.publish of `body` (by default the agent.send body), with a fresh Nats-Msg-Id,
    awaiting the PubAck."""

    async def send(n: int, seq: int) -> None:
        recipient = recipients[n % len(recipients)]
        payload = encode(body(senders[n % len(senders)], recipient, seq))
        try:
            await js.publish(
                queues.subject(recipient),
                payload,
                headers={subjects.MSG_ID_HEADER: str(uuid.uuid4())},
            )
        except (nats.errors.Error, TimeoutError) as exc:
            raise ReplyError(f"publish {type(exc).__name__}", str(exc)[:300]) from exc

    return send


def raw_content(data: bytes) -> Any:
    """The content of a raw message (an agent.send body); None if it is not one."""
    try:
        return json.loads(data)["content"]
    except (ValueError, KeyError, TypeError):
        return None


async def raw_receive(
    subscription: Any, batch: int, tracker: Tracker, content: Content = raw_content
) -> None:
    """Fetch up to `batch`, ack each; until cancelled."""
    while True:
        try:
            msgs: list[Msg] = await subscription.fetch(batch, timeout=POLL_S)
        except (nats.errors.TimeoutError, TimeoutError):
            continue
        for msg in msgs:
            seq = tracker.sequence(content(msg.data))
            expected = seq is not None and tracker.received(seq, msg)
            await msg.ack()
            if expected:
                assert seq is not None
                tracker.acked(seq)


# --- the orchestrator path -------------------------------------------------------------------


def orchestrator_send(
    client: OrchestratorClient, senders: Sequence[str], recipients: Sequence[str]
) -> Send:
    """OrchestratorClient.send (agent.send)."""

    async def send(n: int, seq: int) -> None:
        try:
            await client.send(
                senders[n % len(senders)], recipients[n % len(recipients)], content=content(seq)
            )
        except RequestFailed as exc:
            raise ReplyError(f"agent.send {exc.code}", exc.message[:300]) from exc

    return send


def direct_send(
    client: OrchestratorClient, senders: Sequence[str], recipients: Sequence[str]
) -> Send:
    """OrchestratorClient.send_direct: a publish to agent.outgoing.<sender>, until its PubAck."""

    async def send(n: int, seq: int) -> None:
        await client.send_direct(
            senders[n % len(senders)], recipients[n % len(recipients)], content=content(seq)
        )

    return send


async def ack_one(message: InboxMessage, seq: int | None, tracker: Tracker) -> None:
    """InboxMessage.ack(): communication.delivered, then the JetStream ack; `seq` None: a
    message nobody waits for (acked all the same, so that it leaves the inbox)."""
    try:
        await message.ack()
    except RequestFailed as exc:
        error = ReplyError(f"ack {exc.code}", exc.message[:300])
        if seq is None:
            tracker.recorder.fail(error)
        else:
            tracker.ack_failed(seq, error)
    else:
        if seq is not None:
            tracker.acked(seq)


async def orchestrator_receive(inbox: Inbox, tracker: Tracker) -> None:
    """Hand every message to its own ack task; until cancelled."""
    acking: set[asyncio.Task[None]] = set()
    try:
        while True:
            message = await inbox.next()
            if message is None:
                continue
            seq = tracker.sequence(message.content)
            # The SDK keeps the JetStream message to itself; its timestamp splits the stages.
            expected = seq is not None and tracker.received(seq, message._msg)
            task = asyncio.create_task(ack_one(message, seq if expected else None, tracker))
            acking.add(task)
            task.add_done_callback(acking.discard)
    finally:
        for task in acking:
            task.cancel()


async def start_agents(
    nc: Client, client: OrchestratorClient, prefix: str, count: int
) -> list[str]:
    """`count` agents, created and started (ACTIVE)."""
    ids = await create_agents(nc, count, prefix, SETUP_LIMIT)
    await bounded_map(client.start_agent, ids, SETUP_LIMIT)
    return ids


# --- running both paths ----------------------------------------------------------------------


@dataclass(frozen=True)
class Loop:
    """The closed loop of one path: warm-up and measured messages, slots in flight, senders
    and recipients, the fetch batch, and what the progress line calls a message."""

    count: int
    warmup: int
    inflight: int
    senders: int
    recipients: int
    batch: int
    noun: str = "messages"


@dataclass(frozen=True)
class Config:
    """What the command line asked for."""

    messages: int
    raw_messages: int
    warmup: int
    inflight: int
    senders: int
    recipients: int
    batch: int
    json_path: Path | None
    keep: bool = False

    def loop(self, count: int) -> Loop:
        """The closed loop of a path measuring `count` messages."""
        return Loop(count, self.warmup, self.inflight, self.senders, self.recipients, self.batch)


@dataclass
class PathResult:
    """The figures of one path, with its stages (and the outbox backlog it saw)."""

    result: Result
    stages: dict[str, dict[str, float]]
    backlog: dict[str, float] | None = None


@dataclass
class BacklogSampler:
    """Samples the outbox backlog (rows committed, not yet published) while running."""

    outbox: Outbox
    samples: list[int] = field(default_factory=list)

    async def _sample(self) -> None:
        while True:
            self.samples.append(await self.outbox.backlog())
            await asyncio.sleep(SAMPLE_S)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Sample for the duration of the block."""
        task = asyncio.create_task(self._sample())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def summary(self) -> dict[str, float]:
        """Mean and max rows, and how many samples."""
        n = len(self.samples)
        mean = sum(self.samples) / n if n else math.nan
        return {"mean_rows": round(mean, 1), "max_rows": max(self.samples, default=0), "n": n}


def probes_for(servers: Servers, service: Child | None) -> CpuProbes:
    """CPU probes: the service (none for raw), PostgreSQL, nats-server, the load generator."""
    pid = service.proc.pid if service is not None and service.proc is not None else None
    return {
        "service": lambda: tree_cpu_s(pid),
        "postgres": lambda: tree_cpu_s(servers.postgres_pid),
        "nats-server": lambda: tree_cpu_s(servers.nats_pid),
        "load-gen": own_cpu_s,
    }


async def guarded(phase: Awaitable[Recorder], receivers: Sequence[asyncio.Task[None]]) -> Recorder:
    """Run `phase`; BenchError as soon as a receiver ends (they only end by failing)."""
    task = asyncio.ensure_future(phase)
    await asyncio.wait([task, *receivers], return_when=asyncio.FIRST_COMPLETED)
    for receiver in receivers:
        if receiver.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            raise BenchError(f"a recipient stopped: {receiver.exception()!r}")
    return task.result()


async def measure(
    name: str,
    loop: Loop,
    send: Send,
    receivers: Sequence[Coroutine[Any, Any, None]],
    probes: CpuProbes,
    tracker: Tracker,
    before_measuring: Callable[[], Awaitable[Any]] | None = None,
    during: Callable[[], contextlib.AbstractAsyncContextManager[Any]] = contextlib.nullcontext,
) -> PathResult:
    """Warm up, then measure (inside `during`), with the receivers running throughout."""
    print(f"  {name}: {loop.warmup} warm-up + {loop.count} {loop.noun} ...", flush=True)
    tasks = [asyncio.create_task(receiver) for receiver in receivers]
    try:
        await guarded(run_phase(tracker, send, 0, loop.warmup, loop.inflight), tasks)
        if before_measuring is not None:
            await before_measuring()
        async with during():
            before = cpu_snapshot(probes)
            recorder = await guarded(
                run_phase(tracker, send, loop.warmup, loop.count, loop.inflight), tasks
            )
            after = cpu_snapshot(probes)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return PathResult(summarize(name, recorder, before, after), stage_ms(tracker.finished))


async def stream_messages(js: JetStreamContext, stream: str) -> int:
    """Messages still in `stream`, once acks have had SETTLE_S to land."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        left = int((await js.stream_info(stream)).state.messages)
        if not left or time.monotonic() > deadline:
            return left
        await asyncio.sleep(0.1)


async def bench_raw(
    nc: Client,
    servers: Servers,
    loop: Loop,
    checks: list[str],
    *,
    queues: RawQueues = RAW_INBOXES,
    body: Body = send_body,
    content: Content = raw_content,
    probes: CpuProbes | None = None,
) -> PathResult:
    """The baseline: `body` published to `queues` (its stream deleted afterwards), fetched and
    acknowledged by this process; `probes` default to those of probes_for without a service."""
    js = nc.jetstream()
    senders = [str(uuid.uuid4()) for _ in range(loop.senders)]
    recipients = [str(uuid.uuid4()) for _ in range(loop.recipients)]
    subscriptions = await queues.setup(js, recipients)
    tracker = Tracker()
    try:
        receivers = [raw_receive(sub, loop.batch, tracker, content) for sub in subscriptions]
        path = await measure(
            RAW,
            loop,
            raw_send(js, queues, senders, recipients, body),
            receivers,
            probes or probes_for(servers, None),
            tracker,
        )
        left = await stream_messages(js, queues.stream)
        checks.append(f"{RAW}: {left} messages left in {queues.stream} (expected 0)")
        if left:
            path.result.errors += left
            path.result.error_samples[f"left in stream (x{left})"] = f"{queues.stream} is not empty"
    finally:
        for sub in subscriptions:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
        await js.delete_stream(queues.stream)
    return path


async def check_log(
    conn: asyncpg.Connection, js: JetStreamContext, expected: int, path: PathResult
) -> list[str]:
    """Every message sent must be DELIVERED in the log and gone from AGENT_MESSAGES."""
    rows = await conn.fetch("SELECT status, count(*) AS n FROM communications GROUP BY status")
    statuses = {row["status"]: int(row["n"]) for row in rows}
    left = await stream_messages(js, subjects.MESSAGES_STREAM)
    problems = []
    if statuses.get("DELIVERED", 0) != expected or len(statuses) != 1:
        problems.append(f"log holds {statuses}, expected {{'DELIVERED': {expected}}}")
    if left:
        problems.append(f"{left} messages left in {subjects.MESSAGES_STREAM}")
    for problem in problems:
        path.result.errors += 1
        path.result.error_samples[problem] = "after the run"
    return [
        f"{ORCHESTRATOR}: communications by status {statuses}; "
        f"{left} messages left in {subjects.MESSAGES_STREAM} (expected 0)"
    ]


async def bench_orchestrator(
    nc: Client, servers: Servers, config: Config, checks: list[str], notes: list[str]
) -> list[PathResult]:
    """agent-orchestrator serve, its agents and inboxes, then the measurement of each path:
    agent.send, then the direct path (same agents, same inboxes)."""
    child = service_child(servers.nats_url, servers.database_url, servers.folder)
    conn = await asyncpg.connect(servers.database_url)
    client = OrchestratorClient(nc)
    try:
        async with running(child), contextlib.AsyncExitStack() as stack:
            probe = encode({"agent_id": str(uuid.uuid4())})
            await wait_answering(nc, child, subjects.AGENT_GET, probe)
            print(
                f"  set-up: {config.senders} senders and {config.recipients} recipients, ACTIVE",
                flush=True,
            )
            senders = await start_agents(nc, client, "bench-sender", config.senders)
            recipients = await start_agents(nc, client, "bench-recipient", config.recipients)
            inboxes = [
                await stack.enter_async_context(Inbox(nc, r, client=client, batch=config.batch))
                for r in recipients
            ]
            outbox = Outbox(conn)
            await outbox.drain()
            paths = []
            for name, send in (
                (ORCHESTRATOR, orchestrator_send(client, senders, recipients)),
                (DIRECT, direct_send(client, senders, recipients)),
            ):
                tracker = Tracker()
                sampler = BacklogSampler(outbox)
                path = await measure(
                    name,
                    config.loop(config.messages),
                    send,
                    [orchestrator_receive(inbox, tracker) for inbox in inboxes],
                    probes_for(servers, child),
                    tracker,
                    before_measuring=outbox.drain,
                    during=sampler.running,
                )
                path.backlog = sampler.summary()
                path.result.outbox_backlog = await outbox.backlog()
                path.result.outbox_drain_s = await outbox.drain()
                paths.append(path)
            sent = 2 * (config.warmup + config.messages)
            checks += await check_log(conn, nc.jetstream(), sent, paths[-1])
    finally:
        await conn.close()
        notes += [*child.notes, child.log_summary()]
    return paths


# --- the report ------------------------------------------------------------------------------


@dataclass
class Report:
    """Everything a run found."""

    settings: dict[str, Any]
    paths: list[PathResult]
    checks: list[str]
    notes: list[str]

    @property
    def results(self) -> list[Result]:
        """The Result of each path, raw first."""
        return [p.result for p in self.paths]

    @property
    def flagged(self) -> bool:
        """True when any message failed, went missing or came twice."""
        return any(r.errors for r in self.results)

    def ratios(self, ours: Result | None = None) -> dict[str, float]:
        """A path (by default the best orchestrator path) / raw: throughput, p50, p99."""
        raw = self.results[0]
        if ours is None:
            ours = max(self.results[1:], key=lambda r: r.req_per_s)
        return {
            "throughput": ours.req_per_s / raw.req_per_s,
            "p50": ours.p50_ms / raw.p50_ms,
            "p99": ours.p99_ms / raw.p99_ms,
        }


def table(
    report: Report, noun: str = "messages", rate: str = "msg/s", target: float | None = TARGET
) -> str:
    """The main table: figures, then ratios to raw JetStream (`noun`s counted, `rate` their
    unit per second) with the target verdict (a throughput ratio; None: there is none)."""
    w = name_width(report.results)
    header = (
        f"{'path':<{w}}{noun:>9}{rate:>9}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'x raw ' + rate:>{len(rate) + 7}}{'x raw p50':>10}{'x raw p99':>10}{'errors':>7}  "
        "target"
    )
    lines = [header, "-" * len(header)]
    x = len(rate) + 7
    for r in report.results:
        ratios = report.ratios(r)
        if r.scenario == RAW:
            cells = f"{1:>{x}.2f}{1:>10.2f}{1:>10.2f}"
            verdict = "-"
        else:
            cells = f"{ratios['throughput']:>{x}.2f}{ratios['p50']:>10.2f}{ratios['p99']:>10.2f}"
            verdict = "-"
            if target is not None:
                met = "met" if ratios["throughput"] >= target else "MISSED"
                verdict = f">= {target:.1f}x raw {rate}: {met}"
        lines.append(
            f"{r.scenario:<{w}}{r.requests:>9}{r.req_per_s:>9.0f}{r.p50_ms:>8.2f}{r.p99_ms:>8.2f}"
            f"{cells}{r.errors:>7}  {verdict}{' (ERRORS)' if r.errors else ''}"
        )
    return "\n".join(lines)


def pair(stage: dict[str, float]) -> str:
    """`p50 / p99` of one stage."""
    return f"{stage['p50']:.2f} / {stage['p99']:.2f}"


def stage_table(paths: Sequence[PathResult]) -> str:
    """p50 / p99 ms of each stage of a message; every path has the stages of the first."""
    w = name_width([path.result for path in paths])
    header = f"{'stage ms p50/p99':<{w}}" + "".join(f"{name:>20}" for name in paths[0].stages)
    lines = [header, "-" * len(header)]
    for path in paths:
        cells = "".join(f"{pair(s):>20}" for s in path.stages.values())
        lines.append(f"{path.result.scenario:<{w}}{cells}")
    return "\n".join(lines)


def backlog_lines(report: Report) -> list[str]:
    """The outbox backlog each path saw while measured (sampled)."""
    return [
        f"outbox backlog during {p.result.scenario} (every {SAMPLE_S * 1000:.0f} ms, "
        f"{p.backlog['n']:.0f} samples): mean {p.backlog['mean_rows']:.1f} rows, "
        f"max {p.backlog['max_rows']:.0f}"
        for p in report.paths
        if p.backlog is not None
    ]


def print_report(report: Report) -> None:
    """Settings, main table, stages, CPU table, checks, relay lag, notes, errors."""
    print("\nsettings:")
    for key, value in report.settings.items():
        print(f"  {key}: {value}")
    print()
    print(table(report))
    print()
    print(stage_table(report.paths))
    print()
    print(cpu_table(report.results, "CPU us/message"))
    print()
    lines = report.checks + backlog_lines(report) + outbox_lines(report.results) + report.notes
    for line in lines + error_lines(report.results):
        print(line)
    if report.flagged:
        print("\nFLAGGED: some messages failed, went missing or came twice; figures are suspect.")


def write_json(path: Path, report: Report) -> None:
    """The same figures as the tables, as JSON."""
    document = {
        "settings": report.settings,
        "target": f"{ORCHESTRATOR} >= {TARGET}x {RAW} messages/s",
        "ratios_to_raw": {k: round(v, 3) for k, v in report.ratios().items()},
        "ratios_by_path": {
            r.scenario: {k: round(v, 3) for k, v in report.ratios(r).items()}
            for r in report.results[1:]
        },
        "target_met": report.ratios()["throughput"] >= TARGET,
        "results": [
            asdict(p.result) | {"stages_ms": p.stages, "outbox_backlog": p.backlog}
            for p in report.paths
        ],
        "checks": report.checks,
        "notes": report.notes,
        "flagged": report.flagged,
    }
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def describe(config: Config, nats_version: str, postgres: str) -> dict[str, Any]:
    """The settings of this run, printed and written with the figures."""
    fields = Settings.model_fields
    body = encode(send_body(str(uuid.uuid4()), str(uuid.uuid4()), 10**6))
    return {
        "machine": (
            f"{os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}"
        ),
        "load": (
            f"1 nats-py {importlib.metadata.version('nats-py')} connection for all senders and "
            f"recipients; {config.inflight} messages in flight (send start -> ack done), "
            f"{config.senders} senders -> {config.recipients} recipients, {config.warmup} "
            f"warm-up messages per path, then {config.raw_messages} measured (raw) / "
            f"{config.messages} measured (orchestrator)"
        ),
        "payload": (
            f"content {len(encode(content(10**6)))} bytes of JSON; raw publishes the "
            f"{len(body)}-byte agent.send body, the orchestrator publishes the Communication"
        ),
        "receive": (
            f"fetch batch {config.batch}, poll {POLL_S:g} s; every message acked as soon as it "
            "is in hand (raw: inline; orchestrator: InboxMessage.ack() in a task of its own)"
        ),
        "nats-server": f"{nats_version}, JetStream file store in a temp folder, default options",
        "postgres": postgres,
        "service": (
            "agent-orchestrator serve, AO_LOG_LEVEL=WARNING, otherwise defaults: "
            f"handler_max_workers={fields['handler_max_workers'].default}, "
            f"db_pool {fields['db_pool_min'].default}-{fields['db_pool_max'].default}"
        ),
    }


async def run_all(config: Config, servers: Servers) -> Report:
    """Raw JetStream first (the service not yet running), then the orchestrator."""
    nc = await nats.connect(servers.nats_url, name="bench-load")
    checks: list[str] = []
    notes: list[str] = []
    try:
        settings = describe(
            config,
            str(nc.connected_server_version).strip("<>"),
            await postgres_settings(servers.database_url),
        )
        paths = [
            await bench_raw(nc, servers, config.loop(config.raw_messages), checks),
            *await bench_orchestrator(nc, servers, config, checks, notes),
        ]
    finally:
        await nc.close()
    for path in paths:
        path.result.ratio_to_raw = path.result.req_per_s / paths[0].result.req_per_s
    for path in paths[1:]:
        ratio = path.result.ratio_to_raw or 0
        path.result.targets = [Target(RAW, TARGET, round(ratio, 3), ratio >= TARGET)]
        path.result.target_met = ratio >= TARGET
    return Report(settings, paths, checks, notes)


# --- entry point -----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> Config:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--messages", type=int, default=6000, help="measured messages of the orchestrator"
    )
    parser.add_argument(
        "--raw-messages",
        type=int,
        default=None,
        help="measured messages of raw JetStream (default: 5x --messages, as it is that much "
        "faster: a window under a second would be noisy)",
    )
    parser.add_argument("--warmup", type=int, default=500, help="warm-up messages a path")
    parser.add_argument(
        "--inflight", "--in-flight", type=int, default=50, help="messages in flight"
    )
    parser.add_argument("--senders", type=int, default=4, help="sending agents")
    parser.add_argument("--recipients", type=int, default=4, help="receiving agents")
    parser.add_argument("--batch", type=int, default=20, help="messages a fetch asks for")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temp folder (server logs, data) afterwards"
    )
    args = parser.parse_args(argv)
    if args.raw_messages is None:
        args.raw_messages = 5 * args.messages
    counts = (args.messages, args.raw_messages, args.inflight, args.senders, args.recipients)
    if min(*counts, args.batch) < 1:
        parser.error(
            "--messages, --raw-messages, --inflight, --senders, --recipients, --batch must be >= 1"
        )
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    return Config(
        args.messages,
        args.raw_messages,
        args.warmup,
        args.inflight,
        args.senders,
        args.recipients,
        args.batch,
        args.json,
        args.keep,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Start the servers, measure both paths, print the report, stop everything."""
    config = parse_args(argv)
    return run_bench(
        "ao-bench-messages-",
        keep=config.keep,
        json_path=config.json_path,
        measure=lambda servers: run_all(config, servers),
        print_report=print_report,
        write_json=write_json,
        setup_errors=(BenchError, ReplyError, RequestFailed, TimeoutError),
    )


if __name__ == "__main__":
    sys.exit(main())
