"""A2A push notifications: configs kept by the service, changes POSTed to a local webhook by
the bridge's durable sender, retried when the webhook fails, and sent after a bridge restart."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import nats.aio.client
import pytest
import uvicorn
from a2a.client import ClientConfig, create_client
from a2a.client.client import Client
from a2a.helpers.proto_helpers import new_text_message
from a2a.types import (
    DeleteTaskPushNotificationConfigRequest,
    GetTaskPushNotificationConfigRequest,
    InvalidParamsError,
    ListTaskPushNotificationConfigsRequest,
    SendMessageConfiguration,
    SendMessageRequest,
    TaskPushNotificationConfig,
    TaskState,
)
from a2a.utils.constants import TransportProtocol
from pydantic import JsonValue
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from agent_orchestrator.bridge import BridgeSettings
from agent_orchestrator.bridge.a2a.push import ACK_WAIT_S, DURABLE, TOKEN_HEADER
from agent_orchestrator.bridge.server import EmbeddedBridge
from agent_orchestrator.client import OrchestratorClient, TaskRun
from agent_orchestrator.contracts.subjects import EVENTS_STREAM
from agent_orchestrator.runtime import free_port
from agent_orchestrator.service import Service
from tests.support.agents import sdk_agent
from tests.support.polling import eventually
from tests.support.servers import ServerUrls
from tests.support.workers import worker_running

NC = nats.aio.client.Client


@dataclass
class Webhook:
    """A local HTTP receiver: fails the first ``failures`` POSTs, then keeps what it gets."""

    failures: int = 0
    received: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)
    refused: int = 0

    async def receive(self, request: Request) -> Response:
        if self.refused < self.failures:
            self.refused += 1
            return Response(status_code=503)
        self.received.append((dict(request.headers), await request.json()))
        return Response(status_code=200)

    def states(self) -> list[str]:
        return [body["task"]["status"]["state"] for _, body in self.received]

    async def reached(self, state: str, *, within: float = 30.0) -> None:
        async def seen() -> list[str]:
            return self.states()

        await eventually(seen, lambda states: state in states, within=within, what=state)


@contextlib.asynccontextmanager
async def webhook_served(hook: Webhook) -> AsyncIterator[str]:
    port = free_port()
    app = Starlette(routes=[Route("/hook", hook.receive, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        server.should_exit = True
        await serving


@contextlib.asynccontextmanager
async def bridge_running(servers: ServerUrls, nc: NC) -> AsyncIterator[str]:
    bridge = EmbeddedBridge(BridgeSettings(nats_url=servers.nats_url), port=free_port(), nc=nc)
    url = await bridge.start()
    try:
        yield url
    finally:
        await bridge.stop()


@contextlib.asynccontextmanager
async def a2a_client(bridge_url: str, agent_id: str) -> AsyncIterator[Client]:
    config = ClientConfig(
        streaming=False, supported_protocol_bindings=[TransportProtocol.JSONRPC.value]
    )
    client = await create_client(f"{bridge_url}/a2a/agents/{agent_id}", config)
    try:
        yield client
    finally:
        await client.close()


def send_with_push(text: str, url: str, token: str) -> SendMessageRequest:
    push = TaskPushNotificationConfig(url=url, token=token)
    config = SendMessageConfiguration(return_immediately=True, task_push_notification_config=push)
    return SendMessageRequest(message=new_text_message(text), configuration=config)


async def count_words(run: TaskRun) -> JsonValue:
    await asyncio.sleep(0.3)
    text = run.input.get("text", "") if isinstance(run.input, dict) else ""
    return {"words": len(text.split())}


async def test_changes_reach_the_webhook_and_a_failing_one_is_retried(
    service: Service, nc: NC, servers: ServerUrls, client: OrchestratorClient
) -> None:
    hook = Webhook(failures=2)
    agent_id = await sdk_agent(client)
    async with (
        webhook_served(hook) as url,
        bridge_running(servers, nc) as bridge_url,
        worker_running(servers, agent_id, count_words),
        a2a_client(bridge_url, agent_id) as a2a,
    ):
        events = [e async for e in a2a.send_message(send_with_push("a b c", url, "secret-1"))]
        task_id = events[0].task.id
        await hook.reached("TASK_STATE_COMPLETED")
    assert hook.refused == 2
    headers, body = hook.received[-1]
    assert headers[TOKEN_HEADER.lower()] == "secret-1"
    assert body["task"]["id"] == task_id
    assert body["task"]["artifacts"][0]["parts"][0]["data"] == {"words": 3}


async def test_push_configs_are_kept_by_the_service(
    service: Service, nc: NC, servers: ServerUrls, client: OrchestratorClient
) -> None:
    agent_id = await sdk_agent(client)
    async with (
        bridge_running(servers, nc) as bridge_url,
        a2a_client(bridge_url, agent_id) as a2a,
    ):
        request = send_with_push("x", "http://127.0.0.1:9/hook", "t")
        events = [e async for e in a2a.send_message(request)]
        task_id = events[0].task.id
        created = await a2a.create_task_push_notification_config(
            TaskPushNotificationConfig(task_id=task_id, id="second", url="https://h.example/x")
        )
        assert created.id == "second"
    async with (
        bridge_running(servers, nc) as bridge_url,
        a2a_client(bridge_url, agent_id) as a2a,
    ):
        listed = await a2a.list_task_push_notification_configs(
            ListTaskPushNotificationConfigsRequest(task_id=task_id)
        )
        assert sorted(c.id for c in listed.configs) == ["default", "second"]
        got = await a2a.get_task_push_notification_config(
            GetTaskPushNotificationConfigRequest(task_id=task_id, id="default")
        )
        assert (got.url, got.token) == ("http://127.0.0.1:9/hook", "t")
        await a2a.delete_task_push_notification_config(
            DeleteTaskPushNotificationConfigRequest(task_id=task_id, id="second")
        )
        with pytest.raises(InvalidParamsError):
            await a2a.get_task_push_notification_config(
                GetTaskPushNotificationConfigRequest(task_id=task_id, id="second")
            )


async def test_a_change_while_no_bridge_runs_is_sent_once_one_starts(
    service: Service, nc: NC, servers: ServerUrls, client: OrchestratorClient
) -> None:
    hook = Webhook()
    agent_id = await sdk_agent(client)
    async with webhook_served(hook) as url:
        async with (
            bridge_running(servers, nc) as bridge_url,
            a2a_client(bridge_url, agent_id) as a2a,
        ):
            events = [e async for e in a2a.send_message(send_with_push("a b", url, "t"))]
            assert events[0].task.status.state == TaskState.TASK_STATE_SUBMITTED
            await eventually(
                lambda: nc.jetstream().consumer_info(EVENTS_STREAM, DURABLE),
                lambda info: info is not None,
                within=15,
                what="the sender's durable consumer",
            )
        # No bridge runs while the task runs and ends.
        async with worker_running(servers, agent_id, count_words):
            await eventually(
                lambda: client.get_task(events[0].task.id),
                lambda task: task.status == "SUCCEEDED",
                within=30,
                what="the task succeeded",
            )
        assert "TASK_STATE_COMPLETED" not in hook.states()
        async with bridge_running(servers, nc):
            # At once, or, for an event the stopped bridge's last pull took, after ack_wait.
            await hook.reached("TASK_STATE_COMPLETED", within=ACK_WAIT_S + 30)
