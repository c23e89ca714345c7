"""Checkpoint schedules: run by nats-server, once per period across restarts and instances."""

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats.aio.client
import pytest

from agent_orchestrator.service import Service
from tests.support.agents import agent_with_state
from tests.support.calls import call, ok
from tests.support.own_service import own_service

NC = nats.aio.client.Client


async def scheduled(nc: NC, agent_id: str) -> list[dict[str, Any]]:
    items = (await ok(nc, "agent.checkpoint.list", {"agent_id": agent_id}))["items"]
    return [c for c in items if c["scheduled"]]


async def total_taken(nc: NC, agent_id: str) -> int:
    """Every scheduled checkpoint ever created, pruned or not (from the event stream)."""
    js = nc.jetstream()
    info = await js.stream_info("AGENT_EVENTS", subjects_filter=f"agent.event.{agent_id}.>")
    counts = info.state.subjects or {}
    return int(counts.get(f"agent.event.{agent_id}.checkpoint_created", 0))


async def test_a_one_second_schedule_survives_a_restart_and_keeps_the_last_three(
    tmp_path: Path,
) -> None:
    async with own_service(tmp_path) as own:
        nc = own.nc
        agent_id = await agent_with_state(nc, {"n": 1})
        schedule = await ok(
            nc,
            "agent.checkpoint.schedule",
            {"agent_id": agent_id, "interval_s": 1, "keep_last": 3, "label": "tick"},
        )
        assert schedule["active"] is True
        started = asyncio.get_running_loop().time()
        await asyncio.sleep(2.5)
        await own.service.stop()  # the service goes away; the server keeps firing
        await asyncio.sleep(2.0)
        second = Service(own.service.settings)
        await second.start()
        try:
            await asyncio.sleep(2.5)
            elapsed = asyncio.get_running_loop().time() - started
            taken = await total_taken(nc, agent_id)
            assert abs(taken - int(elapsed)) <= 1, (taken, elapsed)
            kept = await scheduled(nc, agent_id)
            assert len(kept) == 3
            assert all(c["label"] == "tick" for c in kept)
            await ok(nc, "agent.checkpoint.schedule", {"agent_id": agent_id, "interval_s": 0})
            await asyncio.sleep(1.5)
            after_cancel = await total_taken(nc, agent_id)
            await asyncio.sleep(2.0)
            assert await total_taken(nc, agent_id) == after_cancel
        finally:
            await second.stop()
            # own_service stops its service again on exit: give it a fresh one to stop.
            own.service = Service(own.service.settings)
            await own.service.start()


async def test_two_instances_take_one_checkpoint_per_period(tmp_path: Path) -> None:
    async with own_service(tmp_path) as own:
        second = Service(own.service.settings)
        await second.start()
        try:
            agent_id = await agent_with_state(own.nc, {"n": 1})
            await ok(own.nc, "agent.checkpoint.schedule", {"agent_id": agent_id, "interval_s": 1})
            started = asyncio.get_running_loop().time()
            await asyncio.sleep(4.5)
            elapsed = asyncio.get_running_loop().time() - started
            taken = await total_taken(own.nc, agent_id)
            assert abs(taken - int(elapsed)) <= 1, (taken, elapsed)
        finally:
            await second.stop()


async def test_a_schedule_stops_when_the_agent_is_terminated(nc: NC, service: Service) -> None:
    agent_id = await agent_with_state(nc, {"n": 1})
    await ok(nc, "agent.checkpoint.schedule", {"agent_id": agent_id, "interval_s": 1})
    await asyncio.sleep(1.5)
    await ok(nc, "agent.terminate", {"agent_id": agent_id})
    await asyncio.sleep(0.5)
    before = await total_taken(nc, agent_id)
    await asyncio.sleep(2.0)
    assert await total_taken(nc, agent_id) == before
    assert await service.schedules.get(agent_id) is None


async def test_a_one_shot_schedule_fires_once(nc: NC) -> None:
    agent_id = await agent_with_state(nc, {"n": 1})
    at = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    reply = await ok(nc, "agent.checkpoint.schedule", {"agent_id": agent_id, "at": at})
    assert reply["at"] is not None
    await asyncio.sleep(3.0)
    assert len(await scheduled(nc, agent_id)) == 1


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"interval_s": 1, "at": "2030-01-01T00:00:00Z"},
        {"interval_s": -1},
        {"interval_s": 1, "keep_last": 0},
    ],
)
async def test_a_schedule_needs_exactly_one_valid_timing(nc: NC, body: dict[str, Any]) -> None:
    agent_id = await agent_with_state(nc, {"n": 1})
    reply = await call(nc, "agent.checkpoint.schedule", {"agent_id": agent_id, **body})
    assert reply.error_code == "validation_error"
