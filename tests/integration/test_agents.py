"""agent.create / get / list / update / delete over NATS against the real service."""

import asyncio
import uuid
from typing import Any

import asyncpg
import nats.aio.client

from tests.support.agents import create_agent
from tests.support.calls import call, ok

NC = nats.aio.client.Client


async def test_create_returns_the_agent_and_get_reads_it_back(nc: NC) -> None:
    agent = await create_agent(
        nc,
        name="researcher-1",
        description="reads papers",
        configuration={"model": "m", "tools": ["search"]},
        metadata={"team": "a"},
        prompt_template="You are {role}",
    )
    assert agent["status"] == "CREATED"
    assert agent["version"] == 1
    assert uuid.UUID(agent["agent_id"]).version == 7
    assert agent["created_at"].endswith("Z")
    assert await ok(nc, "agent.get", {"agent_id": agent["agent_id"]}) == agent


async def test_list_filters_and_pages_newest_first(nc: NC) -> None:
    project = f"p-{uuid.uuid4()}"
    made = [await create_agent(nc, project_id=project, type="lister") for _ in range(5)]
    other = await create_agent(nc, project_id=project, type="other")
    seen: list[str] = []
    cursor = None
    while True:
        body: dict[str, Any] = {"project_id": project, "type": "lister", "limit": 2}
        if cursor:
            body["cursor"] = cursor
        page = await ok(nc, "agent.list", body)
        assert len(page["items"]) <= 2
        seen += [a["agent_id"] for a in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [a["agent_id"] for a in reversed(made)]
    assert other["agent_id"] not in seen
    by_status = await ok(nc, "agent.list", {"project_id": project, "status": "CREATED"})
    assert len(by_status["items"]) == 6


async def test_update_changes_the_given_fields_and_bumps_the_version(nc: NC) -> None:
    agent = await create_agent(nc, description="old", metadata={"a": 1})
    updated = await ok(
        nc,
        "agent.update",
        {"agent_id": agent["agent_id"], "description": "new", "expected_version": 1},
    )
    assert updated["description"] == "new"
    assert updated["metadata"] == {"a": 1}
    assert updated["version"] == 2
    unchanged = await ok(nc, "agent.update", {"agent_id": agent["agent_id"], "description": "new"})
    assert unchanged["version"] == 2


async def test_delete_removes_the_agent_and_its_history(nc: NC, db: asyncpg.Pool) -> None:
    agent = await create_agent(nc)
    reply = await ok(nc, "agent.delete", {"agent_id": agent["agent_id"]})
    assert reply == {"agent_id": agent["agent_id"], "deleted": True}
    assert (await call(nc, "agent.get", {"agent_id": agent["agent_id"]})).error_code == "not_found"
    count = await db.fetchval(
        "SELECT count(*) FROM agent_transitions WHERE agent_id = $1", uuid.UUID(agent["agent_id"])
    )
    assert count == 0


async def test_many_concurrent_creates_all_succeed(nc: NC) -> None:
    replies = await asyncio.gather(*(create_agent(nc, name=f"c{i}") for i in range(100)))
    assert len({r["agent_id"] for r in replies}) == 100
