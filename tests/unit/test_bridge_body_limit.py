"""The bridge's body-size limit, on a one-route app of its own (no NATS)."""

from collections.abc import AsyncIterator

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from agent_orchestrator.bridge.body_limit import BodyLimit

LIMIT = 1024


async def echo_size(request: Request) -> JSONResponse:
    return JSONResponse({"size": len(await request.body())})


def client() -> httpx.AsyncClient:
    app = Starlette(routes=[Route("/echo", echo_size, methods=["POST"])])
    limited = BodyLimit(app, max_bytes=LIMIT)
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


async def test_a_declared_length_over_the_limit_is_413_problem() -> None:
    async with client() as c:
        response = await c.post("/echo", content=b"x" * (LIMIT + 1))
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert (problem["status"], problem["code"]) == (413, "payload_too_large")
    assert str(LIMIT) in problem["detail"]


async def test_a_streamed_body_over_the_limit_is_413_without_a_length() -> None:
    async with client() as c:
        response = await c.post("/echo", content=chunks(3, LIMIT // 2))
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


async def test_requests_without_a_body_pass() -> None:
    async with client() as c:
        response = await c.post("/echo")
    assert response.json() == {"size": 0}
