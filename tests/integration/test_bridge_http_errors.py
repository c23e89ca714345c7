"""HTTP errors as HTTP users expect them, through the real bridge and service: 412 for a stale
If-Match, 415 for a body not sent as JSON, 400 naming the nesting limit, one shape of
``errors``, exact answers of task.cancel, and the body limit of a state update."""

import uuid
from typing import Any

import httpx
import nats.aio.client

from agent_orchestrator.bridge import BridgeSettings, create_app
from agent_orchestrator.bridge.endpoints import has_body
from agent_orchestrator.bridge.json_body import MAX_JSON_DEPTH
from agent_orchestrator.bridge.nats_client import BridgeState
from agent_orchestrator.bridge.routes import ROUTES
from agent_orchestrator.client import OrchestratorClient
from agent_orchestrator.contracts import subjects
from tests.integration.test_bridge import active_agent, new_agent, problem, unique
from tests.support.servers import ServerUrls

JSON = {"content-type": "application/json"}


def nested(depth: int) -> bytes:
    """A JSON object ``depth`` objects deep."""
    return b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1)


async def test_a_stale_if_match_is_412_and_a_conflict_without_one_is_409(
    http: httpx.AsyncClient,
) -> None:
    agent = await new_agent(http)
    base = f"/api/agents/{agent['agent_id']}"
    template = await http.post("/api/templates", json={"name": unique("t"), "agent_type": "t"})
    template_id = template.json()["template_id"]

    stale_template = await http.put(
        f"/api/templates/{template_id}", json={"description": "x"}, headers={"If-Match": '"7"'}
    )
    details = problem(stale_template, 412, "conflict")["details"]
    assert details == {"expected_version": 7, "version": 1}
    problem(await http.delete(base, headers={"If-Match": '"5"'}), 412, "conflict")

    # The same Idempotency-Key with another body, under a current If-Match: no precondition
    # failed, the key is taken.
    headers = {"Idempotency-Key": unique("k"), "If-Match": '"1"'}
    first = await http.put(base, json={"description": "a"}, headers=headers)
    assert first.status_code == 200, first.text
    other = await http.put(base, json={"description": "b"}, headers=headers)
    assert problem(other, 409, "conflict")["details"] == {
        "idempotency_key": headers["Idempotency-Key"]
    }
    # If-Match: * asks for no version: nothing to be stale.
    assert (await http.put(base, json={"description": "c"}, headers={"If-Match": "*"})).is_success


async def test_a_body_not_sent_as_json_is_415_and_changes_nothing(
    http: httpx.AsyncClient,
) -> None:
    name = unique("plain")
    body = f'{{"name": "{name}", "type": "t"}}'.encode()
    for headers in ({"content-type": "text/plain"}, {}):
        refused = await http.post("/api/agents", content=body, headers=headers)
        found = problem(refused, 415, "validation_error")
        assert "content-type: application/json" in found["detail"]
        assert [e["path"] for e in found["errors"]] == ["header.Content-Type"]
    form = await http.post("/api/agents", data={"name": name, "type": "t"})
    problem(form, 415, "validation_error")
    listed = await http.get("/api/agents", params={"limit": 100})
    assert name not in {a["name"] for a in listed.json()["items"]}
    made = await http.post(
        "/api/agents", content=body, headers={"content-type": "application/json; charset=utf-8"}
    )
    assert made.status_code == 201, made.text


async def test_nesting_to_the_limit_is_stored_and_deeper_is_400_naming_the_limit(
    http: httpx.AsyncClient,
) -> None:
    base = f"/api/agents/{(await new_agent(http))['agent_id']}/state"
    deepest = b'{"state":' + nested(MAX_JSON_DEPTH - 1) + b"}"
    stored = await http.put(base, content=deepest, headers=JSON)
    assert stored.status_code == 200, stored.text[:300]
    for depth in (MAX_JSON_DEPTH + 2, 5_000, 100_000):
        too_deep = await http.put(base, content=b'{"state":' + nested(depth) + b"}", headers=JSON)
        found = problem(too_deep, 400, "validation_error")
        assert f"deeper than {MAX_JSON_DEPTH} levels" in found["detail"]
        assert found["errors"][0]["path"] == "body"
    bad = await http.put(base, content=b'{"state": {"a": }', headers=JSON)
    assert "not valid JSON" in problem(bad, 400, "validation_error")["detail"]


async def test_errors_always_list_paths_with_a_message(http: httpx.AsyncClient) -> None:
    # The service names the path alone here; its message stands for it.
    untyped = await http.post("/api/agents", json={"name": unique("a")})
    errors = problem(untyped, 400, "validation_error")["errors"]
    assert errors == [{"path": "type", "message": "type is required without a template"}]
    malformed = await http.put(f"/api/agents/{uuid.uuid4()}", json={}, headers={"If-Match": "x"})
    assert problem(malformed, 400, "validation_error")["errors"][0]["path"] == "header.If-Match"
    bad = await http.post("/api/agents", json={"name": "", "type": 3})
    assert {e["path"] for e in problem(bad, 400, "validation_error")["errors"]} == {"name", "type"}


async def test_cancelling_a_cancelled_task_answers_it_unchanged(
    http: httpx.AsyncClient, client: OrchestratorClient
) -> None:
    agent_id = await active_agent(http, client, unique("p"))
    task_id = (await http.post(f"/api/agents/{agent_id}/execute")).json()["task_id"]
    first = await http.post(f"/api/tasks/{task_id}/cancel", json={"reason": "first"})
    assert first.status_code == 200, first.text
    again = await http.post(f"/api/tasks/{task_id}/cancel", json={"reason": "second"})
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert (again.json()["status"], again.json()["status_reason"]) == ("CANCELLED", "first")


async def test_openapi_documents_412_and_415_where_they_apply(http: httpx.AsyncClient) -> None:
    spec = (await http.get("/openapi.json")).json()
    for route in ROUTES:
        responses = spec["paths"][route.path][route.method.lower()]["responses"]
        assert ("412" in responses) == (route.if_match is not None), route.path
        assert ("415" in responses) == has_body(route), route.path
        assert "application/problem+json" in responses["400"]["content"]
    schemas = spec["components"]["schemas"]
    assert schemas["Problem"]["properties"]["errors"]["items"]["$ref"].endswith("/FieldError")
    assert set(schemas["FieldError"]["required"]) == {"path", "message"}


def nats_requests(state: BridgeState, subject: str) -> float:
    """How many requests the bridge sent on ``subject`` and got a reply to."""
    for metric in state.metrics.nats_latency.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count") and sample.labels["subject"] == subject:
                return sample.value
    return 0.0


async def test_a_state_over_the_request_limit_passes_the_bridge(
    nc: nats.aio.client.Client, servers: ServerUrls, http: httpx.AsyncClient
) -> None:
    agent_id = (await new_agent(http))["agent_id"]
    settings = BridgeSettings(nats_url=servers.nats_url, max_body_bytes=64 * 1024)
    app = create_app(settings, nc=nc)
    state = {"blob": "x" * 1_000_000}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://b") as c:
        put = await c.put(f"/api/agents/{agent_id}/state", json={"state": state})
        other = await c.post("/api/agents", json={"name": "x" * 70_000, "type": "t"})
    # The bridge forwarded the state (its limit: AO_MAX_STATE_BYTES and an envelope) ...
    assert nats_requests(app.state.bridge, subjects.AGENT_STATE_UPDATE) == 1
    if put.status_code == 413:
        # ... and a service that still holds states to its request limit refuses it itself.
        found: dict[str, Any] = problem(put, 413, "payload_too_large")
        assert "setting" not in (found["details"] or {}), found
    else:
        assert put.status_code == 200, put.text[:300]
        assert put.json()["state"] == state
    # Other routes keep the request limit, and the 413 says which and how to raise it.
    refused = problem(other, 413, "payload_too_large")
    assert refused["details"]["setting"] == "AO_BRIDGE_MAX_BODY_BYTES"
    assert refused["details"]["limit"] == 64 * 1024
    assert "AO_BRIDGE_MAX_BODY_BYTES" in refused["detail"]


async def test_a_state_over_its_limit_is_413_naming_ao_max_state_bytes(
    nc: nats.aio.client.Client, servers: ServerUrls
) -> None:
    settings = BridgeSettings(
        nats_url=servers.nats_url, max_body_bytes=64 * 1024, max_state_bytes=128 * 1024
    )
    app = create_app(settings, nc=nc)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://b") as c:
        put = await c.put(
            f"/api/agents/{uuid.uuid4()}/state", json={"state": {"blob": "x" * 300_000}}
        )
    found = problem(put, 413, "payload_too_large")
    assert found["details"]["setting"] == "AO_MAX_STATE_BYTES"
    assert "AO_MAX_STATE_BYTES" in found["detail"]
    assert nats_requests(app.state.bridge, subjects.AGENT_STATE_UPDATE) == 0
