"""Checkpoints over NATS: exact restore, undo, large snapshots, deletion, events."""

import json
import os

import asyncpg
import nats.aio.client

from tests.support.agents import agent_with_state, new_agent
from tests.support.calls import call, ok
from tests.support.stores import kv_keys

NC = nats.aio.client.Client


async def test_restore_brings_back_exactly_the_checkpointed_state(nc: NC) -> None:
    saved = {"plan": ["a", "b"], "memory": {"x": 1, "nested": {"deep": [1, 2, {"k": None}]}}}
    agent_id = await agent_with_state(nc, saved)
    checkpoint = await ok(
        nc, "agent.checkpoint.create", {"agent_id": agent_id, "label": "before-risky-step"}
    )
    assert checkpoint["storage"] == "kv"
    assert checkpoint["label"] == "before-risky-step"
    await ok(nc, "agent.state.update", {"agent_id": agent_id, "state": {"memory": None, "z": 9}})

    restored = await ok(nc, "agent.checkpoint.restore", {"agent_id": agent_id})
    assert restored["state"] == saved
    assert restored["restored_from"] == checkpoint["checkpoint_id"]
    current = await ok(nc, "agent.state.get", {"agent_id": agent_id})
    assert current["state"] == saved
    assert current["revision"] == restored["revision"]

    # The restore is a new revision, so the state before it is still in the history.
    history = await ok(nc, "agent.state.history", {"agent_id": agent_id, "limit": 2})
    assert history["items"][1]["state"] == {"plan": ["a", "b"], "z": 9}


async def test_restore_picks_the_latest_recoverable_or_the_one_named(nc: NC) -> None:
    agent_id = await agent_with_state(nc, {"v": 1})
    first = await ok(nc, "agent.checkpoint.create", {"agent_id": agent_id})
    await ok(nc, "agent.state.update", {"agent_id": agent_id, "state": {"v": 2}})
    await ok(nc, "agent.checkpoint.create", {"agent_id": agent_id, "recoverable": False})
    await ok(nc, "agent.state.update", {"agent_id": agent_id, "state": {"v": 3}})
    latest = await ok(nc, "agent.checkpoint.restore", {"agent_id": agent_id})
    assert latest["state"] == {"v": 1}
    listed = await ok(nc, "agent.checkpoint.list", {"agent_id": agent_id})
    assert [c["recoverable"] for c in listed["items"]] == [False, True]
    named = await ok(
        nc,
        "agent.checkpoint.restore",
        {"agent_id": agent_id, "checkpoint_id": listed["items"][0]["checkpoint_id"]},
    )
    assert named["state"] == {"v": 2}
    assert first["checkpoint_id"] == listed["items"][1]["checkpoint_id"]


async def test_a_five_mib_checkpoint_round_trips_through_the_object_store(nc: NC) -> None:
    agent_id = await new_agent(nc, name="big")
    # Build ~5 MiB of state in pieces that each fit in a request.
    piece = os.urandom(90 * 1024).hex()  # 180 KiB of text
    for i in range(29):
        await ok(
            nc,
            "agent.state.update",
            {"agent_id": agent_id, "state": {f"part{i}": piece}},
        )
    state = (await ok(nc, "agent.state.get", {"agent_id": agent_id}))["state"]
    checkpoint = await ok(nc, "agent.checkpoint.create", {"agent_id": agent_id})
    assert checkpoint["storage"] == "object_store"
    assert checkpoint["size_bytes"] >= 5 * 1024 * 1024
    await ok(nc, "agent.state.update", {"agent_id": agent_id, "state": {}, "mode": "replace"})
    restored = await ok(nc, "agent.checkpoint.restore", {"agent_id": agent_id})
    assert restored["state"] == state


async def test_delete_one_or_all_and_the_events(nc: NC, db: asyncpg.Pool) -> None:
    agent_id = await agent_with_state(nc, {"a": 1})
    ids = [
        (await ok(nc, "agent.checkpoint.create", {"agent_id": agent_id}))["checkpoint_id"]
        for _ in range(3)
    ]
    kv = await nc.jetstream().key_value("agent_checkpoints")
    assert await kv_keys(kv, f"{agent_id}.") == sorted(f"{agent_id}.{i}" for i in ids)
    one = await ok(nc, "agent.checkpoint.delete", {"agent_id": agent_id, "checkpoint_id": ids[0]})
    assert one == {"agent_id": agent_id, "deleted": 1}
    rest = await ok(nc, "agent.checkpoint.delete", {"agent_id": agent_id})
    assert rest == {"agent_id": agent_id, "deleted": 2}
    assert (await ok(nc, "agent.checkpoint.list", {"agent_id": agent_id}))["items"] == []
    missing = await call(nc, "agent.checkpoint.restore", {"agent_id": agent_id})
    assert missing.error_code == "not_found"
    assert await kv_keys(kv, f"{agent_id}.") == []

    sub = await nc.jetstream().subscribe(f"agent.event.{agent_id}.>", ordered_consumer=True)
    kinds = [json.loads((await sub.next_msg(timeout=5)).data)["type"] for _ in range(8)]
    assert (
        kinds
        == ["created", "state_updated"] + ["checkpoint_created"] * 3 + ["checkpoint_deleted"] * 3
    )
    await sub.unsubscribe()


async def test_a_terminated_agent_cannot_be_restored_but_can_be_snapshotted(nc: NC) -> None:
    agent_id = await agent_with_state(nc, {"done": True})
    await ok(nc, "agent.terminate", {"agent_id": agent_id})
    created = await ok(nc, "agent.checkpoint.create", {"agent_id": agent_id})
    assert created["agent_status"] == "TERMINATED"
    refused = await call(nc, "agent.checkpoint.restore", {"agent_id": agent_id})
    assert refused.error_code == "invalid_transition"


async def test_deleting_the_agent_removes_its_checkpoints(nc: NC, db: asyncpg.Pool) -> None:
    agent_id = await agent_with_state(nc, {"a": 1})
    checkpoint = await ok(nc, "agent.checkpoint.create", {"agent_id": agent_id})
    kv = await nc.jetstream().key_value("agent_checkpoints")
    assert await kv_keys(kv, f"{agent_id}.") == [f"{agent_id}.{checkpoint['checkpoint_id']}"]
    await ok(nc, "agent.delete", {"agent_id": agent_id})
    rows = await db.fetchval("SELECT count(*) FROM checkpoints WHERE agent_id::text = $1", agent_id)
    assert rows == 0
    assert await kv_keys(kv, f"{agent_id}.") == []
    reply = await call(nc, "agent.checkpoint.list", {"agent_id": agent_id})
    assert reply.error_code == "not_found"
