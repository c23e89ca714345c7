"""The bridge's body-size limit, on a one-route app of its own (no NATS), and in the bridge
with a stand-in NATS client."""

import json
import uuid
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from agent_orchestrator.bridge import create_app
from agent_orchestrator.bridge.app import body_limits
from agent_orchestrator.bridge.body_limit import BodyLimit, RouteLimit
from agent_orchestrator.bridge.settings import BridgeSettings
from agent_orchestrator.contracts.limits import STATE_ENVELOPE_BYTES, Limit

LIMIT = 1024
LARGER = 4 * LIMIT
REQUEST_LIMIT = Limit(LIMIT, "AO_BRIDGE_MAX_BODY_BYTES")
STATE_LIMIT = Limit(LARGER, "AO_MAX_STATE_BYTES")


async def echo_size(request: Request) -> JSONResponse:
    return JSONResponse({"size": len(await request.body())})


def client() -> httpx.AsyncClient:
    app = Starlette(
        routes=[
            Route("/echo", echo_size, methods=["POST"]),
            Route("/things/{thing_id}/state", echo_size, methods=["PUT", "POST"]),
        ]
    )
    limited = BodyLimit(
        app, REQUEST_LIMIT, [RouteLimit("PUT", "/things/{thing_id}/state", STATE_LIMIT)]
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=limited), base_url="http://t")


async def chunks(count: int, size: int) -> AsyncIterator[bytes]:
    for _ in range(count):
        yield b"x" * size


async def test_a_body_within_the_limit_reaches_the_app_whole() -> None:
    async with client() as c:
        at_limit = await c.post("/echo", content=b"x" * LIMIT)
        streamed = await c.post("/echo", content=chunks(4, LIMIT // 4))
    assert at_limit.json() == {"size": LIMIT}
    assert streamed.json() == {"size": LIMIT}


async def test_a_declared_length_over_the_limit_is_413_naming_limit_and_setting() -> None:
    async with client() as c:
        response = await c.post("/echo", content=b"x" * (LIMIT + 1))
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert (problem["status"], problem["code"]) == (413, "payload_too_large")
    assert problem["detail"] == (
        f"request body is 1.0 KiB ({LIMIT + 1} bytes); "
        "the limit is 1 KiB (AO_BRIDGE_MAX_BODY_BYTES)"
    )
    assert problem["details"] == {
        "limit": LIMIT,
        "setting": "AO_BRIDGE_MAX_BODY_BYTES",
        "size": LIMIT + 1,
    }


async def test_a_streamed_body_over_the_limit_is_413_without_a_length() -> None:
    async with client() as c:
        response = await c.post("/echo", content=chunks(3, LIMIT // 2))
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    assert response.json()["details"] == {"limit": LIMIT, "setting": "AO_BRIDGE_MAX_BODY_BYTES"}


async def test_requests_without_a_body_pass() -> None:
    async with client() as c:
        response = await c.post("/echo")
    assert response.json() == {"size": 0}


async def test_a_route_with_a_limit_of_its_own_gets_that_limit_for_its_method_only() -> None:
    async with client() as c:
        state = await c.put("/things/7/state", content=b"x" * LARGER)
        too_big = await c.put("/things/7/state", content=chunks(2, LARGER // 2 + 1))
        other_method = await c.post("/things/7/state", content=b"x" * (LIMIT + 1))
    assert state.json() == {"size": LARGER}
    assert too_big.status_code == 413
    assert too_big.json()["details"]["setting"] == "AO_MAX_STATE_BYTES"
    assert too_big.json()["detail"] == (
        "request body is over the limit; the limit is 4 KiB (AO_MAX_STATE_BYTES)"
    )
    assert other_method.status_code == 413
    assert other_method.json()["details"]["setting"] == "AO_BRIDGE_MAX_BODY_BYTES"


def test_the_bridge_gives_a_state_update_the_state_limit_and_its_envelope() -> None:
    settings = BridgeSettings(max_body_bytes=LIMIT, max_state_bytes=LARGER)
    limits = body_limits(settings)
    assert limits["limit"] == Limit(LIMIT, "AO_BRIDGE_MAX_BODY_BYTES")
    [state] = limits["routes"]
    assert (state.method, state.path) == ("PUT", "/api/agents/{agent_id}/state")
    assert state.limit.bytes == LARGER + STATE_ENVELOPE_BYTES
    assert state.limit.setting == "AO_MAX_STATE_BYTES"
    # Never less than the request limit.
    small_state = BridgeSettings(max_body_bytes=8 * 1024 * 1024, max_state_bytes=LIMIT)
    assert body_limits(small_state)["routes"][0].limit.bytes == 8 * 1024 * 1024


class EchoState:
    """A stand-in NATS client that answers agent.state.update with the state it was sent."""

    is_connected = True

    def __init__(self) -> None:
        self.sent: list[tuple[str, int]] = []

    async def request(
        self, subject: str, payload: bytes, timeout: float, headers: Any = None
    ) -> SimpleNamespace:
        self.sent.append((subject, len(payload)))
        body = json.loads(payload)
        reply = {
            "agent_id": body["agent_id"],
            "state": body["state"],
            "revision": 1,
            "updated_at": "2026-01-01T00:00:00Z",
        }
        return SimpleNamespace(data=json.dumps(reply).encode(), headers=None)


async def test_a_megabyte_state_goes_through_the_bridge_when_nats_takes_it() -> None:
    nc = EchoState()
    app = create_app(BridgeSettings(), nc=nc)  # type: ignore[arg-type]
    state = {"blob": "x" * 1_000_000}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://b") as c:
        put = await c.put(f"/api/agents/{uuid.uuid4()}/state", json={"state": state})
        other = await c.post("/api/agents", json={"name": "x" * 1_100_000, "type": "t"})
    assert put.status_code == 200, put.text[:300]
    assert put.json()["state"] == state
    assert [subject for subject, _ in nc.sent] == ["agent.state.update"]
    assert other.status_code == 413
    assert other.json()["details"]["setting"] == "AO_BRIDGE_MAX_BODY_BYTES"
