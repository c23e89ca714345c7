"""GET /api/events: Server-Sent Events from AGENT_EVENTS, filtered and resumable."""

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import nats.aio.client
import pytest

from agent_orchestrator.bridge import BridgeSettings, create_app
from tests.support.agents import ready_agent
from tests.support.calls import ok

NC = nats.aio.client.Client
COMMITTED_ASYNCAPI = Path(__file__).resolve().parents[2] / "asyncapi.yaml"


async def read_events(
    url: str, count: int, *, params: dict[str, str], last_event_id: str | None = None
) -> list[dict[str, Any]]:
    headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    async with (
        httpx.AsyncClient(timeout=10) as client,
        client.stream("GET", f"{url}/api/events", params=params, headers=headers) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line.startswith("id: "):
                current["id"] = line[4:]
            elif line.startswith("event: "):
                current["event"] = line[7:]
            elif line.startswith("data: "):
                current["data"] = json.loads(line[6:])
            elif line == "" and current:
                events.append(current)
                current = {}
                if len(events) == count:
                    break
    return events


async def test_events_replay_resume_and_filter(nc: NC, bridge_url: str) -> None:
    agent_id = await ready_agent(nc)
    everything = await asyncio.wait_for(
        read_events(bridge_url, 3, params={"agent_id": agent_id}, last_event_id="0"), 15
    )
    assert [e["event"] for e in everything] == ["created", "initializing", "ready"]
    assert all(e["data"]["agent_id"] == agent_id for e in everything)
    ids = [int(e["id"]) for e in everything]
    assert ids == sorted(ids)

    resumed = await asyncio.wait_for(
        read_events(bridge_url, 1, params={"agent_id": agent_id}, last_event_id=str(ids[1])), 15
    )
    assert [e["event"] for e in resumed] == ["ready"]

    only_ready = await asyncio.wait_for(
        read_events(
            bridge_url, 1, params={"agent_id": agent_id, "kind": "ready"}, last_event_id="0"
        ),
        15,
    )
    assert only_ready[0]["id"] == everything[2]["id"]


async def test_live_events_arrive_without_last_event_id(nc: NC, bridge_url: str) -> None:
    agent_id = await ready_agent(nc)
    reader = asyncio.create_task(
        read_events(bridge_url, 1, params={"agent_id": agent_id, "kind": "active"})
    )
    await asyncio.sleep(0.5)  # the stream starts from "now"
    await ok(nc, "agent.activate", {"agent_id": agent_id})
    events = await asyncio.wait_for(reader, 15)
    assert events[0]["event"] == "active"


@pytest.mark.parametrize(
    ("params", "headers"),
    [({"agent_id": "nope"}, {}), ({"kind": "exploded"}, {}), ({}, {"Last-Event-ID": "abc"})],
)
async def test_bad_filters_are_problems(
    bridge_url: str, params: dict[str, str], headers: dict[str, str]
) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"{bridge_url}/api/events", params=params, headers=headers)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    [error] = response.json()["errors"]
    assert error["path"] in {*params, *(f"header.{name}" for name in headers)}
    assert error["message"]


async def test_the_event_streams_problems_are_documented(http: httpx.AsyncClient) -> None:
    # Found by schemathesis: its 400 (and 503) problems were missing from the OpenAPI document.
    spec = (await http.get("/openapi.json")).json()
    responses = spec["paths"]["/api/events"]["get"]["responses"]
    assert set(responses) == {"200", "400", "429", "503"}
    for status in ("400", "429", "503"):
        assert "application/problem+json" in responses[status]["content"], status
    guarded = create_app(BridgeSettings(auth="jwt", jwt_secret="k9-" + "0123456789abcdef" * 3))
    assert set(guarded.openapi()["paths"]["/api/events"]["get"]["responses"]) == {
        "200",
        "400",
        "401",
        "403",
        "429",
        "503",
    }


async def test_the_asyncapi_document_is_served_by_the_service_and_the_bridge(
    nc: NC, bridge_url: str
) -> None:
    committed = COMMITTED_ASYNCAPI.read_text()
    over_nats = (await nc.request("agent-orchestrator.asyncapi", b"", timeout=10)).data.decode()
    assert over_nats == committed
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"{bridge_url}/asyncapi")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/yaml")
    assert response.text == committed
