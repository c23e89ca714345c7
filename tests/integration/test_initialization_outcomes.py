"""The initialization job ends in READY or ERROR with the reason, whatever its steps do."""

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import nats.aio.client

from agent_orchestrator.contracts import subjects
from agent_orchestrator.contracts.agents import Agent
from agent_orchestrator.domain.errors import InitializationFailed, Unavailable
from tests.support.agents import initialized, new_agent
from tests.support.calls import ok
from tests.support.own_service import own_service

NC = nats.aio.client.Client


async def initialize(nc: NC, configuration: dict[str, Any]) -> Any:
    agent_id = await new_agent(nc, configuration=configuration)
    await ok(nc, "agent.initialize", {"agent_id": agent_id})
    return await initialized(nc, agent_id)


async def test_step_outcomes_decide_ready_or_error(tmp_path: Path) -> None:
    calls: dict[str, int] = {}

    async def step(agent: Agent) -> None:
        mode = agent.configuration.get("mode", "fine")
        calls[mode] = calls.get(mode, 0) + 1
        if mode == "invalid":
            raise InitializationFailed("model 'x' is not available")
        if mode == "flaky" and calls[mode] < 3:
            raise RuntimeError("transient glitch")
        if mode == "db-blip" and calls[mode] < 2:
            raise Unavailable("database blip")
        if mode == "broken":
            raise RuntimeError("always broken")

    async with own_service(tmp_path, init_steps=[step], init_max_attempts=3) as own:
        nc = own.nc
        assert (await initialize(nc, {}))["status"] == "READY"

        failed = await initialize(nc, {"mode": "invalid"})
        assert failed["status"] == "ERROR"
        assert failed["status_reason"] == "initialization failed: model 'x' is not available"

        assert (await initialize(nc, {"mode": "flaky"}))["status"] == "READY"
        assert calls["flaky"] == 3

        assert (await initialize(nc, {"mode": "db-blip"}))["status"] == "READY"

        broken = await initialize(nc, {"mode": "broken"})
        assert broken["status"] == "ERROR"
        assert broken["status_reason"].startswith("initialization failed after 3 attempts")
        assert calls["broken"] == 3

        # An ERROR agent can be initialized again; the job runs once more.
        history = await ok(nc, "agent.history", {"agent_id": failed["agent_id"]})
        assert [t["to"] for t in history["items"]] == ["CREATED", "INITIALIZING", "ERROR"]
        assert history["items"][-1]["actor"] == "initializer"


async def test_agents_initialized_at_once_are_prepared_together_each_with_its_outcome(
    tmp_path: Path,
) -> None:
    """Jobs are fetched in batches and prepared concurrently; an agent whose step fails for
    good goes to ERROR, one whose step fails once is redelivered alone, and neither holds back
    the others."""
    running, most_at_once = 0, 0
    calls: Counter[str] = Counter()

    async def step(agent: Agent) -> None:
        nonlocal running, most_at_once
        running += 1
        most_at_once = max(most_at_once, running)
        try:
            await asyncio.sleep(0.05)
        finally:
            running -= 1
        calls[str(agent.agent_id)] += 1
        mode = agent.configuration.get("mode")
        if mode == "invalid":
            raise InitializationFailed("no such model")
        if mode == "flaky" and calls[str(agent.agent_id)] < 2:
            raise RuntimeError("transient glitch")

    async with own_service(tmp_path, init_steps=[step], init_job_batch=50) as own:
        nc = own.nc
        modes = ["fine"] * 40 + ["invalid"] * 2 + ["flaky"] * 2
        ids = [await new_agent(nc, configuration={"mode": mode}) for mode in modes]
        await asyncio.gather(*(ok(nc, "agent.initialize", {"agent_id": a}) for a in ids))
        agents = [await initialized(nc, agent_id) for agent_id in ids]

    expected = ["ERROR" if mode == "invalid" else "READY" for mode in modes]
    assert [agent["status"] for agent in agents] == expected
    assert most_at_once > 1  # prepared together, not one job at a time
    assert [calls[a] for a, mode in zip(ids, modes, strict=True) if mode == "flaky"] == [2, 2]
    assert all(calls[a] == 1 for a, mode in zip(ids, modes, strict=True) if mode == "fine")


async def test_initializing_and_moving_agents_creates_no_consumer(tmp_path: Path) -> None:
    """Consumers scale with running workers, not with agents: initializing, activating,
    pausing and terminating agents leaves AGENT_MESSAGES and AGENT_TASKS without consumers,
    and those streams set no cap on them."""
    async with own_service(tmp_path) as own:
        nc = own.nc
        js = nc.jetstream()
        agents = [await initialize(nc, {}) for _ in range(12)]
        assert {a["status"] for a in agents} == {"READY"}
        for agent in agents[:6]:
            await ok(nc, "agent.activate", {"agent_id": agent["agent_id"]})
        for agent in agents[:3]:
            await ok(nc, "agent.pause", {"agent_id": agent["agent_id"]})
        await ok(nc, "agent.terminate", {"agent_id": agents[-1]["agent_id"]})
        for stream in (subjects.MESSAGES_STREAM, subjects.TASKS_STREAM):
            info = await js.stream_info(stream)
            assert info.state.consumer_count == 0
            assert info.config.max_consumers in (None, -1)
