"""The lifecycle over NATS: the full walk, history, events, initialization, races."""

import asyncio
import json
import uuid

import asyncpg
import nats.aio.client

from agent_orchestrator.contracts import subjects
from tests.support.agents import new_agent, ready_agent, wait_for_status
from tests.support.calls import call, ok

NC = nats.aio.client.Client


async def test_the_whole_walk_is_recorded_once_and_published_once(nc: NC) -> None:
    agent_id = await new_agent(nc)
    await ok(nc, "agent.initialize", {"agent_id": agent_id})
    await wait_for_status(nc, agent_id, "READY")
    await ok(nc, "agent.activate", {"agent_id": agent_id})
    await ok(nc, "agent.pause", {"agent_id": agent_id, "reason": "lunch"})
    await ok(nc, "agent.activate", {"agent_id": agent_id})
    final = await ok(nc, "agent.terminate", {"agent_id": agent_id, "reason": "done"})
    assert final["status"] == "TERMINATED"
    assert final["status_reason"] == "done"

    history = await ok(nc, "agent.history", {"agent_id": agent_id})
    walk = [(t["from"], t["to"]) for t in history["items"]]
    assert walk == [
        (None, "CREATED"),
        ("CREATED", "INITIALIZING"),
        ("INITIALIZING", "READY"),
        ("READY", "ACTIVE"),
        ("ACTIVE", "PAUSED"),
        ("PAUSED", "ACTIVE"),
        ("ACTIVE", "TERMINATED"),
    ]
    assert [t["version"] for t in history["items"]] == list(range(1, 8))
    assert history["items"][2]["actor"] == "initializer"
    assert history["items"][4]["reason"] == "lunch"

    kinds = []
    events = await nc.jetstream().subscribe(
        subjects.event_subject(agent_id, ">"), ordered_consumer=True
    )
    for _ in range(7):
        msg = await events.next_msg(timeout=5)
        envelope = json.loads(msg.data)
        assert msg.headers is not None
        assert msg.headers["Nats-Msg-Id"] == envelope["event_id"]
        assert msg.subject == f"agent.event.{agent_id}.{envelope['type']}"
        kinds.append((envelope["type"], envelope["version"]))
    assert kinds == [
        ("created", 1),
        ("initializing", 2),
        ("ready", 3),
        ("active", 4),
        ("paused", 5),
        ("active", 6),
        ("terminated", 7),
    ]
    await events.unsubscribe()


async def test_events_are_in_the_stream_with_one_message_per_change(nc: NC) -> None:
    agent_id = await ready_agent(nc)
    js = nc.jetstream()
    sub = await js.subscribe(subjects.event_subject(agent_id, ">"), ordered_consumer=True)
    seen = [json.loads((await sub.next_msg(timeout=5)).data)["type"] for _ in range(3)]
    assert seen == ["created", "initializing", "ready"]
    await sub.unsubscribe()


async def test_history_pages_with_a_cursor(nc: NC) -> None:
    agent_id = await ready_agent(nc)
    first = await ok(nc, "agent.history", {"agent_id": agent_id, "limit": 2})
    assert [t["to"] for t in first["items"]] == ["CREATED", "INITIALIZING"]
    rest = await ok(
        nc, "agent.history", {"agent_id": agent_id, "limit": 2, "cursor": first["next_cursor"]}
    )
    assert [t["to"] for t in rest["items"]] == ["READY"]
    assert rest["next_cursor"] is None


async def test_agent_status_moves_along_the_table(nc: NC) -> None:
    agent_id = await ready_agent(nc)
    active = await ok(nc, "agent.status", {"agent_id": agent_id, "status": "ACTIVE"})
    assert active["status"] == "ACTIVE"
    errored = await ok(
        nc, "agent.status", {"agent_id": agent_id, "status": "ERROR", "reason": "crashed"}
    )
    assert errored["status_reason"] == "crashed"
    # ERROR -> INITIALIZING through agent.status also runs the initialization job.
    await ok(nc, "agent.status", {"agent_id": agent_id, "status": "INITIALIZING"})
    await wait_for_status(nc, agent_id, "READY")


async def test_two_concurrent_transitions_from_one_version_one_wins(
    nc: NC, db: asyncpg.Pool
) -> None:
    agent_id = await ready_agent(nc)
    active = await ok(nc, "agent.activate", {"agent_id": agent_id})
    version = active["version"]
    replies = await asyncio.gather(
        call(nc, "agent.pause", {"agent_id": agent_id, "expected_version": version}),
        call(
            nc,
            "agent.status",
            {"agent_id": agent_id, "status": "READY", "expected_version": version},
        ),
    )
    codes = sorted(str(r.error_code) for r in replies)
    assert codes == ["None", "conflict"]
    rows = await db.fetchval(
        "SELECT count(*) FROM agent_transitions WHERE agent_id = $1 AND version = $2",
        uuid.UUID(agent_id),
        version + 1,
    )
    assert rows == 1
    history = await ok(nc, "agent.history", {"agent_id": agent_id})
    assert len(history["items"]) == 5


async def test_racing_pauses_without_expected_version_pause_once(nc: NC) -> None:
    agent_id = await ready_agent(nc)
    await ok(nc, "agent.activate", {"agent_id": agent_id})
    replies = await asyncio.gather(
        *(call(nc, "agent.pause", {"agent_id": agent_id}) for _ in range(5))
    )
    assert sorted(str(r.error_code) for r in replies) == ["None"] + ["invalid_transition"] * 4
    history = await ok(nc, "agent.history", {"agent_id": agent_id})
    assert [t["to"] for t in history["items"]].count("PAUSED") == 1


async def test_terminated_is_final(nc: NC) -> None:
    agent_id = await new_agent(nc)
    await ok(nc, "agent.terminate", {"agent_id": agent_id})
    for subject in ("agent.initialize", "agent.activate", "agent.pause", "agent.terminate"):
        reply = await call(nc, subject, {"agent_id": agent_id})
        assert reply.error_code == "invalid_transition", subject
        assert reply.status == 409
    update = await call(nc, "agent.update", {"agent_id": agent_id, "name": "x"})
    assert update.error_code == "invalid_transition"
    agent = await ok(nc, "agent.get", {"agent_id": agent_id})
    assert agent["status"] == "TERMINATED"
    assert agent["version"] == 2
