"""Bridge authentication (JWT, JWKS, API keys), project scoping and CORS, through the real
bridge app against the real service."""

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import nats.aio.client
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from agent_orchestrator.bridge.events import in_project
from agent_orchestrator.client import OrchestratorClient
from agent_orchestrator.contracts import subjects
from tests.support.agents import sdk_agent
from tests.support.bridges import SECRET, bridge
from tests.support.calls import call, ok
from tests.support.servers import ServerUrls

NC = nats.aio.client.Client


def token(project: str | None, *, key: Any = SECRET, expires_in: int = 300, **claims: Any) -> str:
    payload: dict[str, Any] = {"sub": "alice", "exp": int(time.time()) + expires_in, **claims}
    if project is not None:
        payload["project"] = project
    algorithm = "HS256" if isinstance(key, str) else "RS256"
    headers = None if isinstance(key, str) else {"kid": "k1"}
    return jwt.encode(payload, key, algorithm=algorithm, headers=headers)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


async def test_jwt_callers_are_scoped_to_their_project(
    nc: NC, client: OrchestratorClient, servers: ServerUrls
) -> None:
    mine, theirs = f"mine-{uuid.uuid4()}", f"theirs-{uuid.uuid4()}"
    other = await sdk_agent(client, theirs, start=False)
    async with bridge(nc, servers, auth="jwt", jwt_secret=SECRET) as http:
        me = bearer(token(mine))
        made = await http.post("/api/agents", json={"name": "b", "type": "t"}, headers=me)
        assert made.status_code == 201, made.text
        assert made.json()["project_id"] == mine  # the scope fills the project
        own = made.json()["agent_id"]
        elsewhere = await http.post(
            "/api/agents", json={"name": "c", "type": "t", "project_id": theirs}, headers=me
        )
        assert (elsewhere.status_code, elsewhere.json()["code"]) == (403, "forbidden")

        listed = await http.get("/api/agents", headers=me)
        assert [a["agent_id"] for a in listed.json()["items"]] == [own]
        assert (
            await http.get("/api/agents", params={"project_id": theirs}, headers=me)
        ).status_code == 403

        # Another project's agent is as unknown as one that does not exist.
        for method, path, body in [
            ("GET", f"/api/agents/{other}", None),
            ("PUT", f"/api/agents/{other}", {"name": "x"}),
            ("POST", f"/api/agents/{other}/pause", None),
            ("GET", f"/api/agents/{other}/state", None),
            ("POST", f"/api/agents/{other}/execute", {"input": 1}),
            ("GET", f"/api/agents/{other}/communications", None),
            ("POST", f"/api/agents/{own}/send", {"to_agent_id": other}),
            ("POST", f"/api/agents/{other}/send", {"to_agent_id": own}),
        ]:
            reply = await http.request(method, path, json=body, headers=me)
            assert (reply.status_code, reply.json()["code"]) == (404, "not_found"), (
                path,
                reply.text,
            )
            assert reply.json()["detail"] == f"agent {other} does not exist"

        templates = await http.get("/api/templates", headers=me)
        assert templates.status_code == 200  # a catalogue shared by all projects


async def test_tasks_and_communications_of_another_project_are_not_found(
    nc: NC, client: OrchestratorClient, servers: ServerUrls
) -> None:
    theirs = f"theirs-{uuid.uuid4()}"
    sender = await sdk_agent(client, theirs)
    receiver = await sdk_agent(client, theirs, start=False)
    message = await client.send(sender, receiver, content="private")
    task = await client.execute(sender, "private")
    async with bridge(nc, servers, auth="jwt", jwt_secret=SECRET) as http:
        me = bearer(token(f"mine-{uuid.uuid4()}"))
        for method, path in [
            ("GET", f"/api/tasks/{task.task_id}"),
            ("POST", f"/api/tasks/{task.task_id}/cancel"),
            ("GET", f"/api/communications/{message.communication_id}"),
            ("POST", f"/api/communications/{message.communication_id}/delivered"),
        ]:
            reply = await http.request(method, path, headers=me)
            assert reply.status_code == 404, (path, reply.text)
        mine = await http.get("/api/tasks", headers=me)
        assert mine.json()["items"] == []
        theirs_token = bearer(token(theirs))
        seen = await http.get(f"/api/tasks/{task.task_id}", headers=theirs_token)
        assert seen.status_code == 200
        admin = bearer(token("*"))
        assert (await http.get(f"/api/tasks/{task.task_id}", headers=admin)).status_code == 200
    assert (await client.get_task(task.task_id)).status.value == "QUEUED"  # nothing changed


@pytest.mark.parametrize(
    ("make_headers", "status"),
    [
        (lambda: {}, 401),
        (lambda: bearer("not.a.jwt"), 401),
        (lambda: bearer(token("p", key="x" * 40)), 401),  # another secret
        (lambda: bearer(token("p", expires_in=-10)), 401),  # expired
        (lambda: bearer(jwt.encode({"project": "p"}, SECRET, algorithm="HS256")), 401),  # no exp
        (lambda: bearer(token(None)), 403),  # no project
    ],
)
async def test_bad_credentials_are_refused(
    nc: NC, servers: ServerUrls, make_headers: Callable[[], dict[str, str]], status: int
) -> None:
    async with bridge(nc, servers, auth="jwt", jwt_secret=SECRET) as http:
        reply = await http.get("/api/agents", headers=make_headers())
        assert reply.status_code == status, reply.text
        assert reply.headers["content-type"] == "application/problem+json"
        if status == 401:
            assert reply.headers["www-authenticate"].startswith("Bearer")
        for public in ("/healthz", "/openapi.json", "/docs"):
            assert (await http.get(public)).status_code == 200


async def test_jwks_keys_and_api_keys(
    nc: NC, client: OrchestratorClient, servers: ServerUrls, tmp_path: Path
) -> None:
    project = f"p-{uuid.uuid4()}"
    own = await sdk_agent(client, project, start=False)
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "alg": "RS256", "use": "sig"}]}))
    async with bridge(nc, servers, auth="jwt", jwt_jwks_file=jwks) as http:
        signed = await http.get(f"/api/agents/{own}", headers=bearer(token(project, key=private)))
        assert signed.status_code == 200, signed.text
        forged = await http.get(f"/api/agents/{own}", headers=bearer(token(project)))  # HS256
        assert forged.status_code == 401

    key = "ak_" + uuid.uuid4().hex + uuid.uuid4().hex
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({key: {"project": project, "name": "ci"}}))
    async with bridge(nc, servers, auth="api_keys", api_keys_file=keys) as http:
        assert (await http.get(f"/api/agents/{own}", headers={"X-API-Key": key})).status_code == 200
        unknown = await http.get(f"/api/agents/{own}", headers={"X-API-Key": key + "x"})
        assert unknown.status_code == 401
        assert (await http.get("/openapi.json")).json()["components"]["securitySchemes"]


async def test_cors_only_for_configured_origins(nc: NC, servers: ServerUrls) -> None:
    preflight = {
        "Origin": "https://app.example.com",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,if-match",
    }
    async with bridge(nc, servers) as http:  # none by default
        reply = await http.options("/api/agents", headers=preflight)
        assert "access-control-allow-origin" not in reply.headers
    async with bridge(nc, servers, cors_origins="https://app.example.com") as http:
        allowed = await http.options("/api/agents", headers=preflight)
        assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
        stranger = await http.options(
            "/api/agents", headers={**preflight, "Origin": "https://evil.example.com"}
        )
        assert "access-control-allow-origin" not in stranger.headers
        got = await http.get("/healthz", headers={"Origin": "https://app.example.com"})
        assert got.headers["access-control-allow-origin"] == "https://app.example.com"


async def test_the_service_confines_any_request_that_carries_a_project_scope(
    nc: NC, client: OrchestratorClient
) -> None:
    theirs = await sdk_agent(client, f"theirs-{uuid.uuid4()}", start=False)
    scope = {subjects.PROJECT_SCOPE_HEADER: f"mine-{uuid.uuid4()}"}
    hidden = await call(nc, subjects.AGENT_GET, {"agent_id": theirs}, headers=scope)
    assert hidden.error_code == "not_found"
    assert (await ok(nc, subjects.AGENT_GET, {"agent_id": theirs}))["agent_id"] == theirs


def test_events_of_other_projects_are_left_out() -> None:
    event = json.dumps({"project_id": "a", "type": "created"}).encode()
    assert in_project(event, "a")
    assert not in_project(event, "b")
    assert in_project(event, None)
    assert not in_project(b"not json", "a")
