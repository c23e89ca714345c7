"""How bench/scale.py grows its population: every agent made through the service and ACTIVE.

Each agent takes four requests, one after the other: agent.create, agent.state.update (replace,
a ~200-byte state), agent.initialize, then (once the initialization job has made it READY)
agent.activate. `--grow-inflight` agents are on their way at once, each at its own step, so the
service sees the four kinds mixed. The wait for READY costs no request: a plain subscription to
`agent.event.*.ready` (the events the relay publishes) wakes the agent's waiter; only a waiter
that heard nothing for READY_POLL_S asks agent.get (an event missed on a reconnect).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from commands import READY_TIMEOUT_S, BenchError, CpuProbes, ReplyError, expect, request_json
from commands import agent_body as base_body
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from state_checkpoints import small_state

from agent_orchestrator.contracts import subjects

#: Agent types, round robin, so that a list filtered by type selects a quarter of the agents.
TYPES = ("researcher", "writer", "reviewer", "planner")
PROGRESS_EVERY_S = 15.0
#: A waiter that heard no `ready` event for this long reads the agent instead.
READY_POLL_S = 5.0
#: Give up growing after this many failed agents.
MAX_GROWTH_ERRORS = 100


def agent_body(n: int) -> dict[str, Any]:
    """commands.py's ~200-byte agent.create body, with the n-th type."""
    return base_body(f"scale-{n:07d}") | {"type": TYPES[n % len(TYPES)]}


@dataclass
class Growth:
    """How one level's population was made."""

    level: int
    added: int = 0
    seconds: float = 0.0
    errors: Counter[str] = field(default_factory=Counter)
    samples: dict[str, str] = field(default_factory=dict)
    #: CPU µs per agent made, per process (service, PostgreSQL, nats-server, ...).
    cpu_us_per_agent: dict[str, float] = field(default_factory=dict)

    @property
    def per_s(self) -> float:
        """Agents (create + state + initialize + activate) per second."""
        return self.added / self.seconds if self.seconds else 0.0


class Population:
    """Every agent made so far (all with a state, ACTIVE), in creation order."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.made = 0  # agent.create bodies handed out, for unique names and the type rotation

    def __len__(self) -> int:
        return len(self.ids)

    def next_body(self) -> tuple[int, dict[str, Any]]:
        """The number and agent.create body of the next agent."""
        n = self.made
        self.made += 1
        return n, agent_body(n)


class ReadyWatch:
    """Futures that `agent.event.<id>.ready` events resolve, for the agents being waited on."""

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self._waiting: dict[str, asyncio.Future[None]] = {}
        self._sub: Subscription | None = None

    async def __aenter__(self) -> ReadyWatch:
        self._sub = await self._nc.subscribe(
            subjects.event_subject("*", "ready"), cb=self._heard, pending_msgs_limit=1_000_000
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()

    async def _heard(self, msg: Msg) -> None:
        agent_id = msg.subject.split(".")[2]
        future = self._waiting.get(agent_id)
        if future is not None and not future.done():
            future.set_result(None)

    def expect(self, agent_id: str) -> asyncio.Future[None]:
        """Start listening for the agent's READY (before asking for it)."""
        future = self._waiting[agent_id] = asyncio.get_running_loop().create_future()
        return future

    async def wait(self, agent_id: str, future: asyncio.Future[None]) -> None:
        """Until the agent is READY: its event, or agent.get when no event comes."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        try:
            while True:
                try:
                    await asyncio.wait_for(asyncio.shield(future), READY_POLL_S)
                    return
                except TimeoutError:
                    reply = await request_json(self._nc, subjects.AGENT_GET, {"agent_id": agent_id})
                    if reply.get("status") == "READY":
                        return
                    if reply.get("status") == "ERROR":
                        raise ReplyError("initialization", f"{agent_id} went to ERROR") from None
                    if time.monotonic() > deadline:
                        raise ReplyError(
                            "initialization", f"{agent_id} not READY after {READY_TIMEOUT_S:g} s"
                        ) from None
        finally:
            self._waiting.pop(agent_id, None)


async def give_state(nc: Client, agent_id: str, n: int) -> None:
    """The agent's first state (replace)."""
    body = {"agent_id": agent_id, "state": small_state(n), "mode": "replace"}
    reply = await request_json(nc, subjects.AGENT_STATE_UPDATE, body)
    expect(reply, "agent_id", agent_id)


async def make_active(nc: Client, watch: ReadyWatch, agent_id: str, n: int) -> None:
    """A CREATED agent gets its state, is initialized, waits for READY and is activated."""
    await give_state(nc, agent_id, n)
    ready = watch.expect(agent_id)
    reply = await request_json(nc, subjects.AGENT_INITIALIZE, {"agent_id": agent_id})
    expect(reply, "status", "INITIALIZING")
    await watch.wait(agent_id, ready)
    reply = await request_json(nc, subjects.AGENT_ACTIVATE, {"agent_id": agent_id})
    expect(reply, "status", "ACTIVE")


def cpu_now(probes: CpuProbes) -> dict[str, float]:
    """CPU seconds of each probed process so far."""
    return {name: probe() for name, probe in probes.items()}


async def grow(
    nc: Client, population: Population, level: int, inflight: int, probes: CpuProbes
) -> Growth:
    """Make agents until the population is `level`, `inflight` on their way at once."""
    growth = Growth(level)
    wanted = level - len(population)
    if wanted <= 0:
        return growth
    print(f"  growing {len(population):,} -> {level:,} agents ...", flush=True)
    began, cpu_before = time.perf_counter(), cpu_now(probes)
    remaining = wanted
    shown = began

    async def worker(watch: ReadyWatch) -> None:
        nonlocal remaining, shown
        while remaining > 0:
            remaining -= 1
            n, body = population.next_body()
            try:
                reply = await request_json(nc, subjects.AGENT_CREATE, body)
                expect(reply, "status", "CREATED")
                await make_active(nc, watch, str(reply["agent_id"]), n)
            except ReplyError as exc:
                growth.errors[exc.kind] += 1
                growth.samples.setdefault(exc.kind, exc.detail)
                if sum(growth.errors.values()) > MAX_GROWTH_ERRORS:
                    raise BenchError(f"growth failed too often: {exc}") from exc
                remaining += 1  # make another one instead
                continue
            population.ids.append(str(reply["agent_id"]))
            growth.added += 1
            if (now := time.perf_counter()) - shown > PROGRESS_EVERY_S:
                shown = now
                print(
                    f"    {len(population):,} agents, {growth.added / (now - began):.0f}/s",
                    flush=True,
                )

    async with ReadyWatch(nc) as watch:
        await asyncio.gather(*(worker(watch) for _ in range(inflight)))
    growth.seconds = time.perf_counter() - began
    cpu_after = cpu_now(probes)
    growth.cpu_us_per_agent = {
        name: round((cpu_after[name] - cpu_before[name]) / growth.added * 1e6) for name in cpu_after
    }
    print(
        f"  {growth.added:,} agents (create + state + initialize + activate) in "
        f"{growth.seconds:.1f} s, {growth.per_s:.0f}/s; CPU us per agent: "
        + ", ".join(f"{name} {us:,.0f}" for name, us in growth.cpu_us_per_agent.items()),
        flush=True,
    )
    return growth


async def activate_all(nc: Client, ids: Sequence[str], first_n: int, inflight: int) -> None:
    """Give CREATED agents ``ids`` (numbered from ``first_n``) their state and make them
    ACTIVE, ``inflight`` at a time."""
    gate = asyncio.Semaphore(inflight)

    async def one(i: int, agent_id: str) -> None:
        async with gate:
            await make_active(nc, watch, agent_id, first_n + i)

    async with ReadyWatch(nc) as watch:
        await asyncio.gather(*(one(i, agent_id) for i, agent_id in enumerate(ids)))
