"""A2A v1.0 through the bridge, driven by the official a2a-sdk client against the real bridge
(uvicorn) and service, with examples/word_count_agent.py or an in-process worker answering."""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import uuid4

import httpx
import jwt
import nats.aio.client
import pytest
import pytest_asyncio
from a2a.client import A2ACardResolver, ClientConfig, create_client
from a2a.client.client import Client
from a2a.helpers.proto_helpers import get_data_parts, new_data_message, new_text_message
from a2a.types import (
    CancelTaskRequest,
    GetTaskRequest,
    InvalidParamsError,
    ListTasksRequest,
    Message,
    Role,
    SendMessageRequest,
    StreamResponse,
    SubscribeToTaskRequest,
    TaskNotCancelableError,
    TaskNotFoundError,
    TaskState,
    UnsupportedOperationError,
)
from a2a.types import Task as A2ATask
from a2a.utils.constants import TransportProtocol
from google.protobuf.json_format import ParseDict
from pydantic import JsonValue

from agent_orchestrator.bridge import BridgeSettings, create_app
from agent_orchestrator.bridge.server import EmbeddedBridge
from agent_orchestrator.client import OrchestratorClient, TaskRun
from agent_orchestrator.contracts.agents import Agent
from agent_orchestrator.runtime import free_port
from agent_orchestrator.service import Service
from tests.support.agents import sdk_agent
from tests.support.servers import ServerUrls
from tests.support.workers import APPROVAL_AGENT, example_agent, worker_running

NC = nats.aio.client.Client
BINDINGS = [TransportProtocol.JSONRPC.value, TransportProtocol.HTTP_JSON.value]


@pytest_asyncio.fixture(scope="module")
async def bridge_url(service: Service, nc: NC, servers: ServerUrls) -> AsyncIterator[str]:
    """A real HTTP server (streams need one), sharing the session's NATS connection."""
    bridge = EmbeddedBridge(BridgeSettings(nats_url=servers.nats_url), port=free_port(), nc=nc)
    url = await bridge.start()
    yield url
    await bridge.stop()


@contextlib.asynccontextmanager
async def a2a_client(
    bridge_url: str, agent_id: str, binding: str, *, streaming: bool
) -> AsyncIterator[Client]:
    config = ClientConfig(streaming=streaming, supported_protocol_bindings=[binding])
    client = await create_client(f"{bridge_url}/a2a/agents/{agent_id}", config)
    try:
        yield client
    finally:
        await client.close()


def text_request(
    text: str, *, context_id: str = "", parameters: JsonValue = None
) -> SendMessageRequest:
    message: Message = new_text_message(text, context_id=context_id or None)
    request = SendMessageRequest(message=message)
    if parameters is not None:
        ParseDict({"parameters": parameters}, request.metadata)
    return request


async def collect(stream: AsyncIterator[StreamResponse]) -> list[StreamResponse]:
    return [event async for event in stream]


def final_task(events: list[StreamResponse]) -> A2ATask:
    assert len(events) == 1
    assert events[0].HasField("task")
    return events[0].task


async def test_cards_catalog_and_host_card(bridge_url: str, client: OrchestratorClient) -> None:
    agent_id = await sdk_agent(client, name="card-agent", type="word-counter")
    async with httpx.AsyncClient(timeout=10) as http:
        resolver = A2ACardResolver(http, f"{bridge_url}/a2a/agents/{agent_id}")
        card = await resolver.get_agent_card()
        host = (await http.get(f"{bridge_url}/.well-known/agent-card.json")).json()
        project = (await http.get(f"{bridge_url}/api/agents/{agent_id}")).json()["project_id"]
        catalog = (
            await http.get(f"{bridge_url}/a2a/agents", params={"project_id": project})
        ).json()
        missing = await http.get(f"{bridge_url}/a2a/agents/{uuid4()}/.well-known/agent-card.json")
    assert card.name == "card-agent"
    assert card.capabilities.streaming
    assert card.capabilities.push_notifications
    assert sorted(i.protocol_binding for i in card.supported_interfaces) == sorted(BINDINGS)
    assert {i.url for i in card.supported_interfaces} == {f"{bridge_url}/a2a/agents/{agent_id}"}
    assert [s.id for s in card.skills] == ["word-counter"]
    assert host["capabilities"]["extensions"][0]["params"]["url"] == f"{bridge_url}/a2a/agents"
    assert agent_id in {
        c["supportedInterfaces"][0]["url"].rsplit("/", 1)[-1] for c in catalog["agents"]
    }
    assert missing.status_code == 404


@pytest.mark.parametrize("binding", BINDINGS)
async def test_blocking_send_is_answered_by_the_example_agent(
    bridge_url: str, client: OrchestratorClient, servers: ServerUrls, tmp_path: Path, binding: str
) -> None:
    agent_id = await sdk_agent(client, type="word-counter")
    context_id = f"conversation-{uuid4()}"
    async with (
        example_agent(servers.nats_url, agent_id, tmp_path / "agent.log"),
        a2a_client(bridge_url, agent_id, binding, streaming=False) as a2a,
    ):
        events = await collect(
            a2a.send_message(text_request("to be or not to be", context_id=context_id))
        )
        task = final_task(events)
        assert task.status.state == TaskState.TASK_STATE_COMPLETED
        assert task.context_id == context_id
        assert [get_data_parts(a.parts) for a in task.artifacts] == [[{"words": 6.0}]]

        again = await a2a.get_task(GetTaskRequest(id=task.id))
        assert again.status.state == TaskState.TASK_STATE_COMPLETED
        assert again.history[0].parts[0].data.struct_value["text"] == "to be or not to be"

        listed = await a2a.list_tasks(ListTasksRequest(context_id=context_id))
        assert [t.id for t in listed.tasks] == [task.id]
        done = await a2a.list_tasks(ListTasksRequest(status=TaskState.TASK_STATE_COMPLETED))
        assert task.id in {t.id for t in done.tasks}

        follow_up = text_request("more")
        follow_up.message.task_id = task.id
        with pytest.raises(UnsupportedOperationError):
            await collect(a2a.send_message(follow_up))
        with pytest.raises(TaskNotCancelableError):
            await a2a.cancel_task(CancelTaskRequest(id=task.id))
        with pytest.raises(TaskNotFoundError):
            await a2a.get_task(GetTaskRequest(id=str(uuid4())))


@pytest.mark.parametrize("binding", BINDINGS)
async def test_streaming_send_streams_progress_and_the_result(
    bridge_url: str, client: OrchestratorClient, servers: ServerUrls, tmp_path: Path, binding: str
) -> None:
    agent_id = await sdk_agent(client, type="word-counter")
    async with (
        example_agent(servers.nats_url, agent_id, tmp_path / "agent.log"),
        a2a_client(bridge_url, agent_id, binding, streaming=True) as a2a,
    ):
        request = text_request("one two three", parameters={"seconds_per_word": 0.2})
        events = await asyncio.wait_for(collect(a2a.send_message(request)), 60)
    first, *updates = events
    assert first.task.status.state == TaskState.TASK_STATE_SUBMITTED
    states = [e.status_update.status.state for e in updates if e.HasField("status_update")]
    assert TaskState.TASK_STATE_WORKING in states
    assert states[-1] == TaskState.TASK_STATE_COMPLETED
    artifacts = [e.artifact_update for e in updates if e.HasField("artifact_update")]
    assert [get_data_parts(a.artifact.parts) for a in artifacts] == [[{"words": 3.0}]]
    assert all(
        e.status_update.context_id == first.task.context_id
        for e in updates
        if e.HasField("status_update")
    )


async def wait_for_work(run: TaskRun) -> JsonValue:
    """Works until cancelled: reports progress every 0.2 s (a cancel shows at a report)."""
    for step in range(1, 300):
        await asyncio.sleep(0.2)
        await run.progress(min(step, 99), f"step {step}")
    return None


@pytest.mark.parametrize("binding", BINDINGS)
async def test_resubscribe_after_a_dropped_stream_then_cancel(
    bridge_url: str, client: OrchestratorClient, servers: ServerUrls, binding: str
) -> None:
    agent_id = await sdk_agent(client, type="word-counter")
    async with (
        worker_running(servers, agent_id, wait_for_work),
        a2a_client(bridge_url, agent_id, binding, streaming=True) as a2a,
    ):
        stream = a2a.send_message(text_request("long work"))
        first = await anext(stream)
        task_id = first.task.id
        await stream.aclose()  # the connection drops

        resumed = a2a.subscribe(SubscribeToTaskRequest(id=task_id))
        snapshot = await asyncio.wait_for(anext(resumed), 15)
        assert snapshot.task.id == task_id
        update = await asyncio.wait_for(anext(resumed), 15)
        assert update.status_update.status.state == TaskState.TASK_STATE_WORKING

        cancelled = await a2a.cancel_task(CancelTaskRequest(id=task_id))
        assert cancelled.status.state == TaskState.TASK_STATE_CANCELED
        rest = await asyncio.wait_for(collect(resumed), 15)
        assert rest[-1].status_update.status.state == TaskState.TASK_STATE_CANCELED

        with pytest.raises(UnsupportedOperationError):
            await collect(a2a.subscribe(SubscribeToTaskRequest(id=task_id)))


async def test_only_active_agents_take_messages(
    bridge_url: str, client: OrchestratorClient
) -> None:
    agent_id = await sdk_agent(client, type="word-counter")
    async with a2a_client(bridge_url, agent_id, BINDINGS[0], streaming=False) as a2a:
        await client.request("agent.pause", {"agent_id": agent_id}, Agent)
        with pytest.raises(UnsupportedOperationError, match="only ACTIVE agents"):
            await collect(a2a.send_message(text_request("anyone?")))


async def test_a_json_rpc_call_that_is_not_json_is_content_type_not_supported(
    bridge_url: str, client: OrchestratorClient
) -> None:
    agent_id = await sdk_agent(client, type="word-counter")
    base = f"{bridge_url}/a2a/agents/{agent_id}"
    async with httpx.AsyncClient(timeout=10) as http:
        wrong = await http.post(base, content=b"{}", headers={"content-type": "text/plain"})
        listed = await http.get(f"{base}/tasks", headers={"A2A-Version": "1.0"})
    assert wrong.status_code == 415
    assert wrong.json()["error"]["code"] == -32005
    assert listed.status_code == 200
    assert listed.headers["content-type"] == "application/json"
    assert listed.json()["tasks"] == []


SECRET = "k9-" + "0123456789abcdef" * 3


def bearer(project: str) -> dict[str, str]:
    claims = {"sub": "alice", "exp": int(time.time()) + 300, "project": project}
    return {"Authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}"}


async def test_auth_and_project_scope_apply_and_the_card_declares_the_scheme(
    nc: NC, servers: ServerUrls, client: OrchestratorClient
) -> None:
    mine, theirs = f"mine-{uuid4()}", f"theirs-{uuid4()}"
    own = await sdk_agent(client, mine, type="word-counter")
    other = await sdk_agent(client, theirs, type="word-counter")
    settings = BridgeSettings(nats_url=servers.nats_url, auth="jwt", jwt_secret=SECRET)
    app = create_app(settings, nc=nc)
    me = bearer(mine)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://bridge", timeout=10
    ) as http:
        anonymous = await http.get(f"/a2a/agents/{own}/.well-known/agent-card.json")
        card = (await http.get(f"/a2a/agents/{own}/.well-known/agent-card.json", headers=me)).json()
        hidden = await http.get(f"/a2a/agents/{other}/.well-known/agent-card.json", headers=me)
        catalog = (await http.get("/a2a/agents", headers=me)).json()
        host = await http.get("/.well-known/agent-card.json")
        rpc = {"jsonrpc": "2.0", "id": 1, "method": "ListTasks", "params": {}}
        refused = await http.post(f"/a2a/agents/{own}", json=rpc, headers={"A2A-Version": "1.0"})
    assert anonymous.status_code == 401
    assert card["securitySchemes"]["bearer"]["httpAuthSecurityScheme"]["scheme"] == "Bearer"
    assert card["securityRequirements"] == [{"schemes": {"bearer": {}}}]
    assert hidden.status_code == 404
    assert [c["name"] for c in catalog["agents"]] == ["agent"]
    assert host.status_code == 200
    assert refused.status_code == 401


@pytest.mark.parametrize("binding", BINDINGS)
async def test_input_required_round_trip_with_the_approval_agent(
    bridge_url: str, client: OrchestratorClient, servers: ServerUrls, tmp_path: Path, binding: str
) -> None:
    agent_id = await sdk_agent(client, type="approver")
    log = tmp_path / "approver.log"
    async with (
        example_agent(servers.nats_url, agent_id, log, APPROVAL_AGENT),
        a2a_client(bridge_url, agent_id, binding, streaming=False) as a2a,
    ):
        request = SendMessageRequest(
            message=new_data_message({"refund": 30, "order": 4711}, role=Role.ROLE_USER)
        )
        asked = final_task(await asyncio.wait_for(collect(a2a.send_message(request)), 30))
        assert asked.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
        question = asked.status.message
        assert question.role == Role.ROLE_AGENT
        assert get_data_parts(question.parts)[0]["question"] == "May I do this?"
        assert question.metadata["inputSchema"]["required"] == ["approved"]

        waiting = await a2a.list_tasks(ListTasksRequest(status=TaskState.TASK_STATE_INPUT_REQUIRED))
        assert asked.id in {t.id for t in waiting.tasks}

        answer = new_data_message(
            {"approved": True}, context_id=asked.context_id, role=Role.ROLE_USER
        )
        answer.task_id = asked.id
        done = final_task(
            await asyncio.wait_for(
                collect(a2a.send_message(SendMessageRequest(message=answer))), 30
            )
        )
    assert done.id == asked.id
    assert done.context_id == asked.context_id
    assert done.status.state == TaskState.TASK_STATE_COMPLETED
    assert get_data_parts(done.artifacts[0].parts)[0]["done"] is True
    # The conversation: the input, the question, the answer.
    assert [m.role for m in done.history] == [Role.ROLE_USER, Role.ROLE_AGENT, Role.ROLE_USER]


async def test_an_answer_that_does_not_match_the_question_is_invalid_params(
    bridge_url: str, client: OrchestratorClient, servers: ServerUrls, tmp_path: Path
) -> None:
    agent_id = await sdk_agent(client, type="approver")
    async with (
        example_agent(servers.nats_url, agent_id, tmp_path / "a.log", APPROVAL_AGENT),
        a2a_client(bridge_url, agent_id, BINDINGS[0], streaming=True) as a2a,
    ):
        request = SendMessageRequest(message=new_data_message({"refund": 1}, role=Role.ROLE_USER))
        events = await asyncio.wait_for(collect(a2a.send_message(request)), 30)
        last = events[-1].status_update
        assert last.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
        wrong = new_text_message("sure")
        wrong.task_id = last.task_id
        with pytest.raises(InvalidParamsError):
            await collect(a2a.send_message(SendMessageRequest(message=wrong)))
        await a2a.cancel_task(CancelTaskRequest(id=last.task_id))
