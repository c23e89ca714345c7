"""Defects a probe found on the HTTP bridge (issue 22), each closed: bodies and headers that
were 500s, the caller's own Actor in the history, and no limit on how much one caller asks."""

import time
import uuid
from typing import Any

import httpx
import jwt
import nats.aio.client
import pytest
from starlette.requests import Request as HttpRequest

from agent_orchestrator.bridge import BridgeSettings
from agent_orchestrator.bridge.events import MAX_EVENT_ID, parse_last_event_id
from agent_orchestrator.bridge.limits import BridgeLimits
from agent_orchestrator.bridge.problems import ProblemError
from tests.support.bridges import SECRET, bridge
from tests.support.servers import ServerUrls

NC = nats.aio.client.Client
JSON = {"content-type": "application/json"}


def bearer(project: str, sub: str = "alice") -> dict[str, str]:
    claims = {"sub": sub, "project": project, "exp": int(time.time()) + 300}
    return {"Authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}"}


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    return body


@pytest.mark.parametrize(
    "value",
    [b'"\\ud800"', b'"a\\udfffb"', b"NaN", b"Infinity", b"-Infinity", b"1e400", b'"\\u0000"'],
)
async def test_values_json_cannot_carry_are_400_problems_and_store_nothing(
    http: httpx.AsyncClient, value: bytes
) -> None:
    name = f"probe-{uuid.uuid4()}"
    body = b'{"name": "%s", "type": "t", "metadata": {"v": [%s]}}' % (name.encode(), value)
    problem(await http.post("/api/agents", content=body, headers=JSON), 400, "validation_error")
    listed = await http.get("/api/agents", params={"limit": 500})
    assert name not in {a["name"] for a in listed.json()["items"]}


@pytest.mark.parametrize("depth", [256, 257, 1000])
async def test_nesting_of_256_or_more_is_a_400_problem(http: httpx.AsyncClient, depth: int) -> None:
    body = b'{"name": "n", "type": "t", "metadata": {"v": ' + b"[" * depth + b"]" * depth + b"}}"
    problem(await http.post("/api/agents", content=body, headers=JSON), 400, "validation_error")


BAD_EVENT_IDS = ["²".encode(), b"\xb2", "١٢".encode(), b"-1", b"1.5", b"9" * 40]


@pytest.mark.parametrize("value", [*BAD_EVENT_IDS, str(2**64).encode(), str(2**64 - 1).encode()])
async def test_a_bad_last_event_id_is_a_400_problem(http: httpx.AsyncClient, value: bytes) -> None:
    response = await http.get("/api/events", headers={"Last-Event-ID": value})
    problem(response, 400, "validation_error")


def test_last_event_ids_up_to_the_last_stream_sequence_are_read() -> None:
    assert parse_last_event_id(" 42 ") == 42
    assert parse_last_event_id(str(MAX_EVENT_ID)) == 2**64 - 2
    with pytest.raises(ProblemError):
        parse_last_event_id(str(MAX_EVENT_ID + 1))


async def test_the_history_names_the_authenticated_caller_not_the_actor_header(
    nc: NC, servers: ServerUrls
) -> None:
    project = f"p-{uuid.uuid4()}"
    async with bridge(nc, servers, auth="jwt", jwt_secret=SECRET) as http:
        headers = {**bearer(project, sub="alice"), "Actor": "mallory"}
        made = await http.post("/api/agents", json={"name": "a", "type": "t"}, headers=headers)
        assert made.status_code == 201, made.text
        agent_id = made.json()["agent_id"]
        init = await http.post(f"/api/agents/{agent_id}/initialize", headers=headers)
        assert init.status_code in (200, 202), init.text
        history = await http.get(f"/api/agents/{agent_id}/history", headers=headers)
        actors = {t["actor"] for t in history.json()["items"]}
        assert "mallory" not in actors
        assert "alice" in actors


async def test_without_authentication_the_actor_header_is_kept(http: httpx.AsyncClient) -> None:
    made = await http.post("/api/agents", json={"name": "a", "type": "t"})
    agent_id = made.json()["agent_id"]
    await http.post(f"/api/agents/{agent_id}/initialize", headers={"Actor": "ops-bob"})
    history = await http.get(f"/api/agents/{agent_id}/history")
    assert "ops-bob" in {t["actor"] for t in history.json()["items"]}


async def test_requests_over_the_rate_get_429_with_retry_after(nc: NC, servers: ServerUrls) -> None:
    async with bridge(nc, servers, rate_limit_per_s=3) as http:
        codes = [(await http.get("/api/agents")).status_code for _ in range(4)]
        assert codes[:3] == [200, 200, 200]
        refused = await http.get("/api/agents")
        body = problem(refused, 429, "rate_limited")
        assert int(refused.headers["Retry-After"]) >= 1
        assert body["details"]["setting"] == "AO_BRIDGE_RATE_LIMIT_PER_S"


async def test_each_authenticated_caller_has_its_own_budget(nc: NC, servers: ServerUrls) -> None:
    async with bridge(nc, servers, rate_limit_per_s=2, auth="jwt", jwt_secret=SECRET) as http:
        alice, bob = bearer("pa", "alice"), bearer("pb", "bob")
        for _ in range(2):
            assert (await http.get("/api/agents", headers=alice)).status_code == 200
        problem(await http.get("/api/agents", headers=alice), 429, "rate_limited")
        assert (await http.get("/api/agents", headers=bob)).status_code == 200


async def test_agent_creations_over_the_limit_get_429_and_create_nothing(
    nc: NC, servers: ServerUrls
) -> None:
    name = f"limited-{uuid.uuid4()}"
    async with bridge(nc, servers, agent_creations_per_min=2) as http:
        for _ in range(2):
            made = await http.post("/api/agents", json={"name": name, "type": "t"})
            assert made.status_code == 201, made.text
        refused = await http.post("/api/agents", json={"name": name, "type": "t"})
        problem(refused, 429, "rate_limited")
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        listed = await http.get("/api/agents", params={"limit": 500})
        assert sum(a["name"] == name for a in listed.json()["items"]) == 2
        assert (await http.get("/api/agents")).status_code == 200  # reads still pass


def fake_request(host: str) -> HttpRequest:
    return HttpRequest({"type": "http", "client": (host, 1), "headers": [], "method": "GET"})


async def test_event_streams_over_the_limits_get_429(nc: NC, servers: ServerUrls) -> None:
    settings = BridgeSettings(max_event_streams=3, max_event_streams_per_caller=1)
    limits = BridgeLimits(settings)
    first = limits.open_stream(fake_request("10.0.0.1"))
    with pytest.raises(ProblemError) as per_caller:
        limits.open_stream(fake_request("10.0.0.1"))
    assert per_caller.value.status == 429
    assert per_caller.value.headers == {"Retry-After": "5"}
    limits.open_stream(fake_request("10.0.0.2"))
    limits.open_stream(fake_request("10.0.0.3"))
    with pytest.raises(ProblemError):
        limits.open_stream(fake_request("10.0.0.4"))  # the bridge's total
    limits.close_stream(first)
    limits.open_stream(fake_request("10.0.0.1"))

    async with bridge(nc, servers, max_event_streams_per_caller=1) as http:
        app_limits = http._transport.app.state.limits  # type: ignore[attr-defined]
        app_limits.open_stream(fake_request("127.0.0.1"))  # the test client's address
        problem(await http.get("/api/events"), 429, "rate_limited")
