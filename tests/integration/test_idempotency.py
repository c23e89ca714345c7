"""Idempotency-Key: a repeat returns the first reply and changes nothing, even when racing."""

import asyncio
import uuid

import asyncpg
import nats.aio.client

from tests.support.calls import ok

NC = nats.aio.client.Client


async def test_a_repeated_create_returns_the_first_agent(nc: NC, db: asyncpg.Pool) -> None:
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = await ok(nc, "agent.create", {"name": "once", "type": "echo"}, headers=key)
    again = await ok(nc, "agent.create", {"name": "once", "type": "echo"}, headers=key)
    assert again == first
    count = await db.fetchval(
        "SELECT count(*) FROM outbox WHERE subject LIKE $1", f"agent.event.{first['agent_id']}.%"
    )
    assert count == 1


async def test_racing_repeats_create_one_agent(nc: NC, db: asyncpg.Pool) -> None:
    key = {"Idempotency-Key": str(uuid.uuid4())}
    name = f"race-{uuid.uuid4()}"
    replies = await asyncio.gather(
        *(ok(nc, "agent.create", {"name": name, "type": "echo"}, headers=key) for _ in range(10))
    )
    assert len({r["agent_id"] for r in replies}) == 1
    assert await db.fetchval("SELECT count(*) FROM agents WHERE name = $1", name) == 1


async def test_a_repeated_transition_returns_the_first_reply(nc: NC) -> None:
    agent = await ok(nc, "agent.create", {"name": "t", "type": "echo"})
    key = {"Idempotency-Key": str(uuid.uuid4())}
    body = {"agent_id": agent["agent_id"], "reason": "stop"}
    first = await ok(nc, "agent.terminate", body, headers=key)
    # Without the key this would be an invalid transition; with it, it is the same reply.
    assert await ok(nc, "agent.terminate", body, headers=key) == first


async def test_the_same_key_on_another_subject_is_independent(nc: NC) -> None:
    key = {"Idempotency-Key": str(uuid.uuid4())}
    agent = await ok(nc, "agent.create", {"name": "s", "type": "echo"}, headers=key)
    initialized = await ok(nc, "agent.initialize", {"agent_id": agent["agent_id"]}, headers=key)
    assert initialized["status"] == "INITIALIZING"
