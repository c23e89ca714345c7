"""The HTTP bridge, through the real FastAPI app against the session's running service."""

import uuid
from typing import Any

import httpx
import nats.aio.client
import pytest

from agent_orchestrator.bridge import BridgeSettings, create_app
from agent_orchestrator.bridge.nats_client import BridgeState, nats_request
from agent_orchestrator.bridge.problems import ProblemError
from agent_orchestrator.bridge.routes import ROUTES, Route
from agent_orchestrator.client import OrchestratorClient, TaskRun
from agent_orchestrator.contracts import subjects
from agent_orchestrator.contracts.agents import Agent, GetAgent
from tests.support.agents import unique
from tests.support.polling import eventually
from tests.support.servers import ServerUrls
from tests.support.workers import worker_running

PROBLEM = "application/problem+json"


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"].endswith(code)
    assert body["title"]
    assert "detail" in body
    # One shape for every problem: errors lists failing parts, details is an object or null.
    assert isinstance(body["errors"], list)
    assert all(set(e) == {"path", "message"} for e in body["errors"]), body["errors"]
    assert all(isinstance(v, str) for e in body["errors"] for v in e.values())
    assert body["details"] is None or isinstance(body["details"], dict)
    return body


async def new_agent(http: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    response = await http.post("/api/agents", json={"name": unique("a"), "type": "t", **fields})
    assert response.status_code == 201, response.text
    agent: dict[str, Any] = response.json()
    return agent


async def wait_status(http: httpx.AsyncClient, agent_id: str, status: str) -> dict[str, Any]:
    return await eventually(
        lambda: get_json(http, f"/api/agents/{agent_id}"),
        lambda agent: agent["status"] == status,
        within=10,
        what=f"agent {agent_id} {status}",
        interval=0.05,
    )


async def get_json(http: httpx.AsyncClient, url: str) -> dict[str, Any]:
    body: dict[str, Any] = (await http.get(url)).json()
    return body


async def test_agent_crud_with_etag_and_if_match(http: httpx.AsyncClient) -> None:
    project = unique("p")
    created = await http.post(
        "/api/agents", json={"name": "one", "type": "t", "project_id": project}
    )
    assert created.status_code == 201
    agent = created.json()
    agent_id = agent["agent_id"]
    assert created.headers["location"] == f"/api/agents/{agent_id}"
    assert created.headers["etag"] == '"1"'

    got = await http.get(f"/api/agents/{agent_id}")
    assert got.status_code == 200
    assert got.json() == agent
    assert got.headers["etag"] == '"1"'

    updated = await http.put(
        f"/api/agents/{agent_id}", json={"description": "d"}, headers={"If-Match": '"1"'}
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["description"] == "d"
    assert updated.headers["etag"] == '"2"'

    stale = await http.put(
        f"/api/agents/{agent_id}", json={"description": "e"}, headers={"If-Match": '"1"'}
    )
    # A stale If-Match is 412 (RFC 9110); the contract's code stays conflict.
    assert problem(stale, 412, "conflict")["details"] == {"expected_version": 1, "version": 2}
    malformed = await http.put(
        f"/api/agents/{agent_id}", json={"description": "e"}, headers={"If-Match": "W/one"}
    )
    problem(malformed, 400, "validation_error")

    await new_agent(http, project_id=project)
    listed = await http.get("/api/agents", params={"project_id": project, "limit": 1})
    assert listed.status_code == 200
    page = listed.json()
    assert len(page["items"]) == 1
    assert page["next_cursor"]
    link = listed.headers["link"]
    assert link.endswith('>; rel="next"')
    next_url = link[1 : link.index(">")]
    assert "cursor=" in next_url
    assert f"project_id={project}" in next_url
    second = (await http.get(next_url)).json()
    assert len(second["items"]) == 1
    assert second["next_cursor"] is None
    assert {page["items"][0]["agent_id"], second["items"][0]["agent_id"]} >= {agent_id}

    deleted = await http.delete(f"/api/agents/{agent_id}", headers={"If-Match": '"2"'})
    assert deleted.status_code == 200
    assert deleted.json() == {"agent_id": agent_id, "deleted": True}
    problem(await http.get(f"/api/agents/{agent_id}"), 404, "not_found")


async def test_lifecycle_walk_and_history(http: httpx.AsyncClient) -> None:
    agent_id = (await new_agent(http))["agent_id"]
    base = f"/api/agents/{agent_id}"
    init = await http.post(f"{base}/initialize")
    assert init.status_code == 200, init.text
    assert init.json()["status"] == "INITIALIZING"
    ready = await wait_status(http, agent_id, "READY")
    activated = await http.post(
        f"{base}/activate", headers={"If-Match": f'"{ready["version"]}"', "Actor": "alice"}
    )
    assert activated.json()["status"] == "ACTIVE"
    paused = await http.post(f"{base}/pause", json={"reason": "lunch"})
    assert paused.json()["status"] == "PAUSED"
    assert paused.headers["etag"] == f'"{paused.json()["version"]}"'
    bad = await http.post(f"{base}/initialize")
    assert problem(bad, 409, "invalid_transition")["details"]["from"] == "PAUSED"
    moved = await http.post(f"{base}/status", json={"status": "ACTIVE"})
    assert moved.json()["status"] == "ACTIVE"
    done = await http.post(f"{base}/terminate", json={"reason": "done"})
    assert done.json()["status"] == "TERMINATED"

    history = await http.get(f"{base}/history", params={"limit": 3})
    assert history.status_code == 200
    assert [t["to"] for t in history.json()["items"]] == ["CREATED", "INITIALIZING", "READY"]
    assert 'rel="next"' in history.headers["link"]
    rest = await http.get(f"{base}/history", params={"cursor": history.json()["next_cursor"]})
    items = rest.json()["items"]
    assert [t["to"] for t in items] == ["ACTIVE", "PAUSED", "ACTIVE", "TERMINATED"]
    assert items[0]["actor"] == "alice"
    assert items[1]["reason"] == "lunch"


async def test_recover_an_agent_in_error(http: httpx.AsyncClient) -> None:
    agent_id = (await new_agent(http))["agent_id"]
    base = f"/api/agents/{agent_id}"
    refused = await http.post(f"{base}/recover")
    assert problem(refused, 409, "invalid_transition")["details"]["status"] == "CREATED"
    await http.post(f"{base}/initialize")
    await wait_status(http, agent_id, "READY")
    await http.post(f"{base}/activate")
    errored = await http.post(f"{base}/status", json={"status": "ERROR", "reason": "broke"})
    version = errored.json()["version"]
    stale = await http.post(f"{base}/recover", headers={"If-Match": f'"{version - 1}"'})
    problem(stale, 412, "conflict")
    started = await http.post(
        f"{base}/recover",
        json={"restore": False, "target": "READY", "reason": "try again"},
        headers={"If-Match": f'"{version}"', "Actor": "ops"},
    )
    assert started.status_code == 200, started.text
    assert started.json()["status"] == "INITIALIZING"
    await wait_status(http, agent_id, "READY")
    history = (await http.get(f"{base}/history", params={"limit": 100})).json()["items"]
    assert [(t["to"], t["actor"], t["reason"]) for t in history[-2:]] == [
        ("INITIALIZING", "ops", "try again"),
        ("READY", "ops", "recovered"),
    ]


async def test_state_with_if_match(http: httpx.AsyncClient) -> None:
    base = f"/api/agents/{(await new_agent(http))['agent_id']}"
    empty = await http.get(f"{base}/state")
    assert empty.json()["revision"] == 0
    assert empty.headers["etag"] == '"0"'
    first = await http.put(
        f"{base}/state", json={"state": {"goal": "g", "n": {"a": 1}}}, headers={"If-Match": '"0"'}
    )
    assert first.status_code == 200, first.text
    rev1 = first.json()["revision"]
    assert first.headers["etag"] == f'"{rev1}"'
    merged = await http.put(f"{base}/state", json={"state": {"n": {"a": None, "b": 2}}})
    assert merged.json()["state"] == {"goal": "g", "n": {"b": 2}}
    rev2 = merged.json()["revision"]
    stale = await http.put(
        f"{base}/state", json={"state": {"x": 1}}, headers={"If-Match": f'"{rev1}"'}
    )
    assert problem(stale, 412, "conflict")["details"] == {
        "expected_revision": rev1,
        "revision": rev2,
    }
    got = await http.get(f"{base}/state")
    assert got.json()["state"] == {"goal": "g", "n": {"b": 2}}
    assert got.headers["etag"] == f'"{rev2}"'
    history = await http.get(f"{base}/state/history", params={"limit": 5})
    assert [item["revision"] for item in history.json()["items"]] == [rev2, rev1]


async def test_checkpoint_create_restore_delete_schedule(http: httpx.AsyncClient) -> None:
    agent_id = (await new_agent(http))["agent_id"]
    base = f"/api/agents/{agent_id}"
    await http.put(f"{base}/state", json={"state": {"step": 1}})
    created = await http.post(f"{base}/checkpoint", json={"label": "before"})
    assert created.status_code == 201, created.text
    checkpoint = created.json()
    assert checkpoint["label"] == "before"
    await http.put(f"{base}/state", json={"state": {"step": 2}})
    listed = await http.get(f"{base}/checkpoints")
    assert [c["checkpoint_id"] for c in listed.json()["items"]] == [checkpoint["checkpoint_id"]]

    restored = await http.post(f"{base}/checkpoints/{checkpoint['checkpoint_id']}/restore")
    assert restored.status_code == 200, restored.text
    assert restored.json()["state"] == {"step": 1}
    assert restored.json()["restored_from"] == checkpoint["checkpoint_id"]
    assert restored.headers["etag"] == f'"{restored.json()["revision"]}"'
    assert (await http.get(f"{base}/state")).json()["state"] == {"step": 1}

    unknown = await http.post(f"{base}/checkpoints/{uuid.uuid4()}/restore")
    problem(unknown, 404, "not_found")

    schedule = await http.post(f"{base}/schedule-checkpoint", json={"interval_s": 3600})
    assert schedule.status_code == 200, schedule.text
    assert schedule.json()["active"] is True
    neither = await http.post(f"{base}/schedule-checkpoint", json={})
    problem(neither, 400, "validation_error")
    cancelled = await http.post(f"{base}/schedule-checkpoint", json={"interval_s": 0})
    assert cancelled.json()["active"] is False

    deleted = await http.delete(
        f"{base}/checkpoint", params={"checkpoint_id": checkpoint["checkpoint_id"]}
    )
    assert deleted.json() == {"agent_id": agent_id, "deleted": 1}
    assert (await http.get(f"{base}/checkpoints")).json()["items"] == []


async def test_template_and_agent_from_it(http: httpx.AsyncClient) -> None:
    agent_type = unique("llm")
    created = await http.post(
        "/api/templates",
        json={
            "name": "researcher",
            "agent_type": agent_type,
            "config_schema": {
                "type": "object",
                "required": ["model"],
                "properties": {
                    "model": {"type": "string"},
                    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
                },
            },
            "default_configuration": {"model": "small", "temperature": 0.2},
        },
    )
    assert created.status_code == 201, created.text
    template = created.json()
    template_id = template["template_id"]
    assert created.headers["location"] == f"/api/templates/{template_id}"

    agent = await new_agent(http, type=None, template_id=template_id, configuration={})
    assert agent["type"] == agent_type
    assert agent["configuration"] == {"model": "small", "temperature": 0.2}

    refused = await http.post(
        "/api/agents",
        json={
            "name": "r2",
            "template_id": template_id,
            "configuration": {"temperature": 9, "model": 3},
        },
    )
    errors = problem(refused, 400, "validation_error")["errors"]
    assert {e["path"] for e in errors} == {"configuration.model", "configuration.temperature"}

    updated = await http.put(
        f"/api/templates/{template_id}",
        json={"description": "v2", "changelog": "describe"},
        headers={"If-Match": '"1"'},
    )
    assert updated.json()["version"] == 2
    assert updated.headers["etag"] == '"2"'
    old = await http.get(f"/api/templates/{template_id}", params={"version": 1})
    assert old.json()["version"] == 1
    versions = await http.get(f"/api/templates/{template_id}/versions")
    assert [v["version"] for v in versions.json()["items"]] == [1, 2]
    listed = await http.get("/api/templates", params={"agent_type": agent_type})
    assert [t["template_id"] for t in listed.json()["items"]] == [template_id]
    deleted = await http.delete(f"/api/templates/{template_id}")
    assert deleted.json() == {"template_id": template_id, "deleted": True}
    problem(await http.get(f"/api/templates/{uuid.uuid4()}"), 404, "not_found")


async def test_bad_requests_are_400_problems(http: httpx.AsyncClient) -> None:
    bad_json = await http.post(
        "/api/agents", content=b'{"name": ', headers={"content-type": "application/json"}
    )
    problem(bad_json, 400, "validation_error")

    wrong = await http.post("/api/agents", json={"name": "", "type": 3, "surprise": True})
    paths = {e["path"] for e in problem(wrong, 400, "validation_error")["errors"]}
    assert paths == {"name", "type", "surprise"}

    bad_id = await http.get("/api/agents/not-a-uuid")
    assert {e["path"] for e in problem(bad_id, 400, "validation_error")["errors"]} == {"agent_id"}
    bad_query = await http.get("/api/agents", params={"limit": 0, "colour": "red"})
    assert {e["path"] for e in problem(bad_query, 400, "validation_error")["errors"]} == {
        "limit",
        "colour",
    }
    problem(await http.get("/api/agents", params={"cursor": "garbage"}), 400, "validation_error")


@pytest.mark.parametrize(
    ("route", "body", "path"),
    [
        ("checkpoint", {"recoverable": 0}, "recoverable"),
        ("schedule-checkpoint", {"interval_s": 60, "keep_last": True}, "keep_last"),
        ("schedule-checkpoint", {"interval_s": "60"}, "interval_s"),
        ("schedule-checkpoint", {"at": 4102444800}, "at"),
        ("activate", {"expected_version": True}, "expected_version"),
        ("recover", {"restore": "no"}, "restore"),
        ("execute", {"max_attempts": "3"}, "max_attempts"),
    ],
)
async def test_body_scalars_are_the_types_the_document_says(
    http: httpx.AsyncClient, route: str, body: dict[str, Any], path: str
) -> None:
    # Found by schemathesis: pydantic's lax mode took 0 as false, true as 1, "60" as 60 and
    # a number as a datetime, against the types the OpenAPI document gives.
    agent = await new_agent(http)
    response = await http.post(f"/api/agents/{agent['agent_id']}/{route}", json=body)
    assert {e["path"] for e in problem(response, 400, "validation_error")["errors"]} == {path}


async def test_numbers_in_a_query_are_still_read_from_text(http: httpx.AsyncClient) -> None:
    agent = await new_agent(http)
    stale = await http.delete(f"/api/agents/{agent['agent_id']}", params={"expected_version": "2"})
    # expected_version in the query is no HTTP precondition: a plain 409.
    problem(stale, 409, "conflict")
    listed = await http.get("/api/agents", params={"limit": "1"})
    assert listed.status_code == 200
    deleted = await http.delete(
        f"/api/agents/{agent['agent_id']}", params={"expected_version": "1"}
    )
    assert deleted.json()["deleted"] is True


async def test_unknown_route_and_method(http: httpx.AsyncClient) -> None:
    problem(await http.get("/api/nothing"), 404, "not_found")
    wrong_method = await http.patch("/api/agents")
    assert wrong_method.status_code == 405
    assert wrong_method.headers["content-type"] == PROBLEM


async def test_idempotency_key_repeat_returns_first_reply(http: httpx.AsyncClient) -> None:
    key = {"Idempotency-Key": unique("key")}
    body = {"name": unique("idem"), "type": "t"}
    first = await http.post("/api/agents", json=body, headers=key)
    again = await http.post("/api/agents", json=body, headers=key)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    other = await http.post("/api/agents", json={**body, "name": "other"}, headers=key)
    problem(other, 409, "conflict")


async def test_body_too_large_is_413(nc: nats.aio.client.Client, servers: ServerUrls) -> None:
    app = create_app(BridgeSettings(nats_url=servers.nats_url, max_body_bytes=1024), nc=nc)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://b") as c:
        big = await c.post("/api/agents", json={"name": "x" * 2000, "type": "t"})
        problem(big, 413, "payload_too_large")

        async def chunks() -> Any:
            for _ in range(3):
                yield b" " * 600

        streamed = await c.post(
            "/api/agents", content=chunks(), headers={"content-type": "application/json"}
        )
        problem(streamed, 413, "payload_too_large")


async def test_health_and_readiness(http: httpx.AsyncClient) -> None:
    assert (await http.get("/healthz")).status_code == 200
    ready = await http.get("/readyz")
    assert ready.status_code == 200, ready.text

    unconnected = create_app(BridgeSettings())
    transport = httpx.ASGITransport(app=unconnected)
    async with httpx.AsyncClient(transport=transport, base_url="http://b") as client:
        assert (await client.get("/healthz")).status_code == 200
        problem(await client.get("/readyz"), 503, "unavailable")
        problem(await client.get(f"/api/agents/{uuid.uuid4()}"), 503, "unavailable")


async def test_lifespan_connects_and_closes(servers: ServerUrls, service: object) -> None:
    app = create_app(BridgeSettings(nats_url=servers.nats_url))
    state: BridgeState = app.state.bridge
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://b") as client:
            assert (await client.get("/readyz")).status_code == 200
            agent = await client.post("/api/agents", json={"name": "via-lifespan", "type": "t"})
            assert agent.status_code == 201
        assert state.nc is not None
    assert state.nc is None


async def test_no_responders_is_503_and_timeout_is_504(
    nc: nats.aio.client.Client, servers: ServerUrls
) -> None:
    state = BridgeState(BridgeSettings(nats_url=servers.nats_url, request_timeout_s=0.2), nc)
    with pytest.raises(ProblemError) as nobody:
        await nats_request(state, f"bridge.test.{uuid.uuid4().hex}", b"{}")
    assert nobody.value.status == 503
    silent = f"bridge.test.silent.{uuid.uuid4().hex}"
    sub = await nc.subscribe(silent)
    try:
        with pytest.raises(ProblemError) as slow:
            await nats_request(state, silent, b"{}")
        assert slow.value.status == 504
    finally:
        await sub.unsubscribe()


async def test_openapi_lists_every_route(http: httpx.AsyncClient) -> None:
    spec = (await http.get("/openapi.json")).json()
    for route in ROUTES:
        operation = spec["paths"][route.path][route.method.lower()]
        assert route.subject in operation["description"]
        ok = operation["responses"][str(route.status)]["content"]["application/json"]["schema"]
        assert ok["$ref"].endswith(f"/{route.reply.__name__}")
        assert PROBLEM in operation["responses"]["400"]["content"]
        assert "422" not in operation["responses"]
        path_params = route.path_params
        assert [p["name"] for p in operation.get("parameters", ()) if p["in"] == "path"] == list(
            path_params
        )
        body_fields = set(route.request.model_fields) - set(path_params.values())
        has_body = route.method in ("POST", "PUT") and bool(body_fields)
        assert ("requestBody" in operation) == has_body, route.path
    assert {"/healthz", "/readyz"} <= set(spec["paths"])
    operation_ids = [
        operation["operationId"]
        for path_item in spec["paths"].values()
        for operation in path_item.values()
    ]
    assert len(operation_ids) == len(set(operation_ids))
    served = {(r.method, r.path): r for r in ROUTES}
    tasks = {
        ("POST", "/api/agents/{agent_id}/execute"): (subjects.AGENT_EXECUTE, 201),
        ("GET", "/api/tasks/{task_id}"): (subjects.TASK_GET, 200),
        ("POST", "/api/tasks/{task_id}/cancel"): (subjects.TASK_CANCEL, 200),
        ("POST", "/api/tasks/{task_id}/input"): (subjects.TASK_PROVIDE_INPUT, 200),
        ("GET", "/api/tasks"): (subjects.TASK_LIST, 200),
        ("GET", "/api/agents/{agent_id}/tasks"): (subjects.TASK_LIST, 200),
    }
    for (method, path), (subject, status) in tasks.items():
        route = served[(method, path)]
        assert (route.subject, route.status, route.tag) == (subject, status, "tasks")
        assert spec["paths"][path][method.lower()]["tags"] == ["tasks"]
    worker_side = {
        subjects.TASK_START,
        subjects.TASK_PROGRESS,
        subjects.TASK_COMPLETE,
        subjects.TASK_FAIL,
        subjects.TASK_REQUEST_INPUT,
    }
    assert not worker_side & {r.subject for r in ROUTES}
    execute = spec["components"]["schemas"]["ExecuteTaskBody"]
    assert "agent_id" not in execute["properties"]
    assert execute["additionalProperties"] is False
    agent_tasks = spec["paths"]["/api/agents/{agent_id}/tasks"]["get"]["parameters"]
    assert [p["name"] for p in agent_tasks] == [
        "agent_id",
        "project_id",
        "status",
        "context_id",
        "limit",
        "cursor",
    ]
    send = spec["paths"]["/api/agents/{agent_id}/send"]["post"]
    assert send["tags"] == ["communications"]
    assert "from_agent_id" in send["parameters"][0]["description"]
    body = spec["components"]["schemas"]["SendMessageBody"]
    assert "from_agent_id" not in body["properties"]
    assert body["additionalProperties"] is False
    assert "to_agent_id" in body["properties"]
    docs = await http.get("/docs")
    assert docs.status_code == 200


def test_path_fields_must_name_a_path_parameter() -> None:
    with pytest.raises(ValueError, match="sender"):
        Route(
            "POST",
            "/api/agents/{agent_id}",
            subjects.AGENT_GET,
            GetAgent,
            Agent,
            "x",
            path_fields={"sender": "agent_id"},
        )


async def active_agent(http: httpx.AsyncClient, client: OrchestratorClient, project: str) -> str:
    agent_id: str = (await new_agent(http, project_id=project))["agent_id"]
    await client.start_agent(agent_id)
    return agent_id


async def test_send_get_deliver_and_list_communications(
    http: httpx.AsyncClient, client: OrchestratorClient
) -> None:
    project = unique("p")
    alice, bob = [await active_agent(http, client, project) for _ in range(2)]
    sent = await http.post(
        f"/api/agents/{alice}/send",
        json={"to_agent_id": bob, "type": "greeting", "content": {"text": "hi"}},
    )
    assert sent.status_code == 201, sent.text
    message = sent.json()
    message_id = message["communication_id"]
    assert sent.headers["location"] == f"/api/communications/{message_id}"
    assert (message["from_agent_id"], message["to_agent_id"]) == (alice, bob)
    assert (message["type"], message["content"], message["status"]) == (
        "greeting",
        {"text": "hi"},
        "SENT",
    )
    assert message["project_id"] == project

    got = await http.get(sent.headers["location"])
    assert got.status_code == 200, got.text
    assert got.json()["communication_id"] == message_id
    assert got.json()["content"] == {"text": "hi"}

    delivered = await http.post(f"/api/communications/{message_id}/delivered")
    assert delivered.status_code == 200, delivered.text
    assert delivered.json()["status"] == "DELIVERED"
    assert delivered.json()["delivered_at"]
    again = await http.post(f"/api/communications/{message_id}/delivered")
    assert again.status_code == 200
    assert again.json() == delivered.json()
    assert (await http.get(f"/api/communications/{message_id}")).json() == delivered.json()

    later = []
    for n in range(2):
        more = await http.post(f"/api/agents/{alice}/send", json={"to_agent_id": bob, "content": n})
        assert more.status_code == 201, more.text
        later.append(more.json()["communication_id"])
    reply = await http.post(
        f"/api/agents/{bob}/send", json={"to_agent_id": alice, "reply_to": message_id}
    )
    assert reply.status_code == 201, reply.text
    reply_id = reply.json()["communication_id"]

    def ids(response: httpx.Response) -> list[str]:
        assert response.status_code == 200, response.text
        return [c["communication_id"] for c in response.json()["items"]]

    base = f"/api/agents/{alice}/communications"
    everything = [reply_id, *reversed(later), message_id]
    assert ids(await http.get(base)) == everything
    assert ids(await http.get(base, params={"direction": "sent"})) == [*reversed(later), message_id]
    assert ids(await http.get(base, params={"direction": "received"})) == [reply_id]
    delivered_only = {"direction": "sent", "status": "DELIVERED"}
    assert ids(await http.get(base, params=delivered_only)) == [message_id]
    assert ids(await http.get(f"/api/agents/{bob}/communications", params=delivered_only)) == []

    first = await http.get(base, params={"direction": "sent", "limit": 2})
    assert ids(first) == list(reversed(later))
    link = first.headers["link"]
    assert link.endswith('>; rel="next"')
    next_url = link[1 : link.index(">")]
    assert "direction=sent" in next_url
    assert "limit=2" in next_url
    last = await http.get(next_url)
    assert ids(last) == [message_id]
    assert last.json()["next_cursor"] is None
    assert "link" not in last.headers


async def test_broadcast_through_the_bridge(
    http: httpx.AsyncClient, client: OrchestratorClient
) -> None:
    project = unique("p")
    sender, *listeners = [await active_agent(http, client, project) for _ in range(3)]
    await new_agent(http, project_id=project)  # not ACTIVE: left out
    sent = await http.post(
        f"/api/agents/{sender}/send", json={"broadcast": True, "content": "all hands"}
    )
    assert sent.status_code == 201, sent.text
    summary = sent.json()
    broadcast_id = summary["communication_id"]
    assert summary["broadcast_id"] == broadcast_id
    assert summary["to_agent_id"] is None
    assert {r["to_agent_id"] for r in summary["recipients"]} == set(listeners)
    assert sent.headers["location"] == f"/api/communications/{broadcast_id}"

    got = await http.get(sent.headers["location"])
    assert got.status_code == 200, got.text
    assert got.json()["broadcast_id"] == broadcast_id
    assert {r["to_agent_id"] for r in got.json()["recipients"]} == set(listeners)

    copy = summary["recipients"][0]
    one = await http.get(f"/api/communications/{copy['communication_id']}")
    assert one.json()["broadcast_id"] == broadcast_id
    assert one.json()["to_agent_id"] == copy["to_agent_id"]


async def test_communication_errors_are_problems(
    http: httpx.AsyncClient, client: OrchestratorClient
) -> None:
    project = unique("p")
    alice, bob = [await active_agent(http, client, project) for _ in range(2)]
    send = f"/api/agents/{alice}/send"
    nobody = str(uuid.uuid4())

    problem(
        await http.post(f"/api/agents/{nobody}/send", json={"to_agent_id": bob}), 404, "not_found"
    )
    unknown = problem(await http.post(send, json={"to_agent_id": nobody}), 404, "not_found")
    assert unknown["details"] == {"agent_id": nobody}
    problem(await http.get(f"/api/communications/{nobody}"), 404, "not_found")
    problem(await http.post(f"/api/communications/{nobody}/delivered"), 404, "not_found")
    problem(await http.get(f"/api/agents/{nobody}/communications"), 404, "not_found")

    problem(
        await http.post(send, json={"to_agent_id": bob, "broadcast": True}), 400, "validation_error"
    )
    problem(await http.post(send, json={"content": "to whom?"}), 400, "validation_error")
    problem(await http.post(send), 400, "validation_error")
    bad_filter = await http.get(
        f"/api/agents/{alice}/communications", params={"direction": "sideways", "status": "LOST"}
    )
    errors = problem(bad_filter, 400, "validation_error")["errors"]
    assert {e["path"] for e in errors} == {"direction", "status"}

    # The path names the sender; the body may not name one, even the same.
    for sender in (bob, alice):
        named = await http.post(send, json={"to_agent_id": bob, "from_agent_id": sender})
        errors = problem(named, 400, "validation_error")["errors"]
        assert [e["path"] for e in errors] == ["from_agent_id"]
    bad_sender = await http.post("/api/agents/not-a-uuid/send", json={"to_agent_id": bob})
    assert [e["path"] for e in problem(bad_sender, 400, "validation_error")["errors"]] == [
        "agent_id"
    ]

    # Over the service's content limit (64 KiB), under the bridge's body limit (1 MiB).
    big = await http.post(send, json={"to_agent_id": bob, "content": "x" * (65 * 1024)})
    assert problem(big, 413, "payload_too_large")["details"]["limit"] == 64 * 1024
    # Over the bridge's own limit: refused before any NATS request.
    huge = await http.post(send, json={"to_agent_id": bob, "content": "x" * (1024 * 1024)})
    assert "request body" in problem(huge, 413, "payload_too_large")["detail"]

    assert (await http.post(f"/api/agents/{bob}/terminate")).json()["status"] == "TERMINATED"
    ended = problem(await http.post(send, json={"to_agent_id": bob}), 409, "invalid_transition")
    assert ended["details"]["recipient"] == bob
    from_ended = await http.post(f"/api/agents/{bob}/send", json={"to_agent_id": alice})
    problem(from_ended, 409, "invalid_transition")
    assert (await http.get(f"/api/agents/{alice}/communications")).json()["items"] == []


async def wait_task(http: httpx.AsyncClient, location: str, status: str) -> dict[str, Any]:
    return await eventually(
        lambda: get_json(http, location),
        lambda task: task["status"] == status,
        within=15,
        what=f"task {location} {status}",
        interval=0.05,
    )


async def test_execute_get_and_cancel_a_task(
    http: httpx.AsyncClient, client: OrchestratorClient
) -> None:
    project = unique("p")
    agent_id = await active_agent(http, client, project)
    executed = await http.post(
        f"/api/agents/{agent_id}/execute",
        json={"input": {"text": "hi"}, "parameters": {"fast": True}, "timeout_s": 60},
    )
    assert executed.status_code == 201, executed.text
    task = executed.json()
    task_id = task["task_id"]
    assert executed.headers["location"] == f"/api/tasks/{task_id}"
    assert (task["agent_id"], task["project_id"], task["status"]) == (agent_id, project, "QUEUED")
    assert (task["input"], task["parameters"], task["timeout_s"]) == (
        {"text": "hi"},
        {"fast": True},
        60,
    )

    got = await http.get(executed.headers["location"])
    assert got.status_code == 200, got.text
    assert got.json() == task

    cancelled = await http.post(f"/api/tasks/{task_id}/cancel", json={"reason": "not now"})
    assert cancelled.status_code == 200, cancelled.text
    assert (cancelled.json()["status"], cancelled.json()["status_reason"]) == (
        "CANCELLED",
        "not now",
    )
    assert cancelled.json()["finished_at"]
    again = await http.post(f"/api/tasks/{task_id}/cancel")
    assert again.status_code == 200, again.text
    assert again.json() == cancelled.json()
    assert (await http.get(f"/api/tasks/{task_id}")).json() == cancelled.json()

    # Without a body, and repeated under one Idempotency-Key: one task.
    key = {"Idempotency-Key": unique("k")}
    first = await http.post(f"/api/agents/{agent_id}/execute", headers=key)
    repeat = await http.post(f"/api/agents/{agent_id}/execute", headers=key)
    assert first.status_code == repeat.status_code == 201, first.text
    assert repeat.json() == first.json()
    assert first.json()["input"] is None


async def test_a_task_completed_by_a_worker(
    http: httpx.AsyncClient, client: OrchestratorClient, servers: ServerUrls
) -> None:
    agent_id = await active_agent(http, client, unique("p"))

    async def handler(run: TaskRun) -> Any:
        return {"echo": run.input, "attempt": run.attempt}

    async with worker_running(servers, agent_id, handler):
        executed = await http.post(f"/api/agents/{agent_id}/execute", json={"input": "ping"})
        assert executed.status_code == 201, executed.text
        done = await wait_task(http, executed.headers["location"], "SUCCEEDED")
    assert done["result"] == {"echo": "ping", "attempt": 1}
    assert (done["attempts"], done["progress"]) == (1, 100)
    assert done["started_at"]
    assert done["finished_at"]

    refused = await http.post(f"/api/tasks/{done['task_id']}/cancel")
    ended = problem(refused, 409, "conflict")
    assert ended["details"] == {"status": "SUCCEEDED"}
    assert ended["detail"] == f"task {done['task_id']} already ended SUCCEEDED"
    assert (await http.get(executed.headers["location"])).json() == done


async def test_list_tasks_by_agent_project_and_status(
    http: httpx.AsyncClient, client: OrchestratorClient
) -> None:
    project = unique("p")
    agent_id, other = [await active_agent(http, client, project) for _ in range(2)]
    ids = []
    for n in range(3):
        executed = await http.post(f"/api/agents/{agent_id}/execute", json={"input": n})
        assert executed.status_code == 201, executed.text
        ids.append(executed.json()["task_id"])
    elsewhere = (await http.post(f"/api/agents/{other}/execute")).json()["task_id"]
    cancelled = (await http.post(f"/api/agents/{agent_id}/execute")).json()["task_id"]
    assert (await http.post(f"/api/tasks/{cancelled}/cancel")).status_code == 200
    newest_first = list(reversed(ids))

    def task_ids(response: httpx.Response) -> list[str]:
        assert response.status_code == 200, response.text
        return [t["task_id"] for t in response.json()["items"]]

    queued = {"agent_id": agent_id, "status": "QUEUED"}
    assert task_ids(await http.get("/api/tasks", params=queued)) == newest_first
    first = await http.get("/api/tasks", params={**queued, "limit": 2})
    assert task_ids(first) == newest_first[:2]
    link = first.headers["link"]
    assert link.endswith('>; rel="next"')
    next_url = link[1 : link.index(">")]
    assert f"agent_id={agent_id}" in next_url
    assert "status=QUEUED" in next_url
    assert "limit=2" in next_url
    last = await http.get(next_url)
    assert task_ids(last) == newest_first[2:]
    assert last.json()["next_cursor"] is None
    assert "link" not in last.headers

    by_project = await http.get("/api/tasks", params={"project_id": project})
    assert task_ids(by_project) == [cancelled, elsewhere, *newest_first]
    by_status = {"project_id": project, "status": "CANCELLED"}
    assert task_ids(await http.get("/api/tasks", params=by_status)) == [cancelled]

    base = f"/api/agents/{agent_id}/tasks"
    assert task_ids(await http.get(base)) == [cancelled, *newest_first]
    assert task_ids(await http.get(base, params={"status": "CANCELLED"})) == [cancelled]
    assert task_ids(await http.get(base, params={"status": "SUCCEEDED"})) == []
    page = await http.get(base, params={"limit": 2})
    assert task_ids(page) == [cancelled, newest_first[0]]
    link = page.headers["link"]
    next_url = link[1 : link.index(">")]
    assert next_url.split("?")[0].endswith(base)
    rest = await http.get(next_url)
    assert task_ids(rest) == newest_first[1:]
    assert "link" not in rest.headers
    assert task_ids(await http.get(f"/api/agents/{other}/tasks")) == [elsewhere]


async def test_task_errors_are_problems(
    http: httpx.AsyncClient, client: OrchestratorClient
) -> None:
    nobody = str(uuid.uuid4())
    problem(await http.get(f"/api/tasks/{nobody}"), 404, "not_found")
    problem(await http.post(f"/api/tasks/{nobody}/cancel"), 404, "not_found")
    problem(await http.post(f"/api/agents/{nobody}/execute", json={}), 404, "not_found")
    problem(await http.get(f"/api/agents/{nobody}/tasks"), 404, "not_found")

    created = (await new_agent(http))["agent_id"]
    refused = await http.post(f"/api/agents/{created}/execute", json={"input": 1})
    assert problem(refused, 409, "invalid_transition")["details"] == {
        "agent_id": created,
        "status": "CREATED",
    }
    agent_id = await active_agent(http, client, unique("p"))
    assert (await http.post(f"/api/agents/{agent_id}/pause")).json()["status"] == "PAUSED"
    paused = await http.post(f"/api/agents/{agent_id}/execute", json={"input": 1})
    assert problem(paused, 409, "invalid_transition")["details"]["status"] == "PAUSED"
    assert (await http.get(f"/api/agents/{agent_id}/tasks")).json()["items"] == []

    execute = f"/api/agents/{agent_id}/execute"
    bad = await http.post(execute, json={"timeout_s": 0, "surprise": True})
    errors = problem(bad, 400, "validation_error")["errors"]
    assert {e["path"] for e in errors} == {"timeout_s", "surprise"}
    named = await http.post(execute, json={"agent_id": agent_id})
    assert [e["path"] for e in problem(named, 400, "validation_error")["errors"]] == ["agent_id"]
    bad_agent = await http.post("/api/agents/not-a-uuid/execute", json={})
    assert [e["path"] for e in problem(bad_agent, 400, "validation_error")["errors"]] == [
        "agent_id"
    ]
    bad_task = await http.get("/api/tasks/not-a-uuid")
    assert [e["path"] for e in problem(bad_task, 400, "validation_error")["errors"]] == ["task_id"]

    bad_filter = await http.get("/api/tasks", params={"status": "DONE", "limit": 0})
    errors = problem(bad_filter, 400, "validation_error")["errors"]
    assert {e["path"] for e in errors} == {"status", "limit"}
    bad_agent_filter = await http.get(f"/api/agents/{agent_id}/tasks", params={"status": "DONE"})
    assert [e["path"] for e in problem(bad_agent_filter, 400, "validation_error")["errors"]] == [
        "status"
    ]
    problem(await http.get("/api/tasks", params={"cursor": "garbage"}), 400, "validation_error")


async def test_a_405_allows_every_method_of_the_path(http: httpx.AsyncClient) -> None:
    reply = await http.request("PATCH", "/api/agents")
    assert reply.status_code == 405
    assert reply.headers["allow"] == "GET, POST"


async def test_non_ascii_text_travels_as_utf8(http: httpx.AsyncClient) -> None:
    # 200 KB as UTF-8, but 600 KB as \u escapes: over the service's 256 KiB request limit.
    prompt = "é" * 100_000
    made = await http.post(
        "/api/templates",
        json={"name": f"utf8-{uuid.uuid4()}", "agent_type": "t", "prompt_template": prompt},
    )
    assert made.status_code == 201, made.text[:300]
    assert made.json()["prompt_template"] == prompt
