"""Agents of Synadia's NATS agent protocol, served by its official host SDK
(``synadia-ai-agent-service``), adopted by agent-orchestrator: tasks go to them as prompts,
their streamed replies become progress and results, their questions INPUT_REQUIRED, their
heartbeats our liveness."""

import asyncio
import json
import sys
import uuid
from asyncio.subprocess import PIPE
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import nats
import pytest
from synadia_ai.agent_service import AgentService, PromptStream
from synadia_ai.agents import Envelope, StatusChunk

from agent_orchestrator.client import OrchestratorClient, RequestFailed
from agent_orchestrator.client.protocol_adapter import adopt
from agent_orchestrator.contracts.agent_protocol import ProtocolAgentRef
from agent_orchestrator.contracts.agents import AgentStatus
from agent_orchestrator.contracts.errors import ErrorCode
from agent_orchestrator.contracts.tasks import TaskStatus
from tests.support.events import wait_for_events
from tests.support.servers import ServerUrls


async def shout(envelope: Envelope, stream: PromptStream) -> None:
    """Streams the prompt back in capitals, word by word; asks before a word `ask`."""
    for word in envelope.prompt.split():
        if word == "ask":
            answer = await stream.ask("which word?", timeout=30)
            word = answer.prompt
        await stream.send(StatusChunk(status=f"at {word}"))
        await stream.send(word.upper() + " ")
    if "fail" in envelope.prompt:
        raise ValueError("told to fail")


@asynccontextmanager
async def hosted(servers: ServerUrls, session: str) -> AsyncIterator[AgentService]:
    nc = await nats.connect(servers.nats_url)
    service = AgentService(
        agent="shouter",
        owner="acme",
        session_name=session,
        nc=nc,
        heartbeat_interval_s=1,
        keepalive_interval_s=None,
    )
    service.on_prompt(shout)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()
        await nc.close()


def new_ref() -> ProtocolAgentRef:
    return ProtocolAgentRef(agent="shouter", owner="acme", session_name=f"s-{uuid.uuid4().hex[:8]}")


async def test_an_adopted_agent_takes_tasks_as_prompts(
    servers: ServerUrls, client: OrchestratorClient
) -> None:
    js = client.nc.jetstream()
    ref = new_ref()
    async with hosted(servers, ref.session_name):
        agent = await adopt(client, ref)
        assert (agent.type, agent.project_id, agent.name) == ("shouter", "acme", ref.session_name)
        assert agent.status is AgentStatus.ACTIVE
        task = await client.execute(agent.agent_id, {"text": "to be or not"})
        done = await client.wait_for_task(task.task_id, timeout=20)
        assert done.status is TaskStatus.SUCCEEDED
        assert done.result == {"text": "TO BE OR NOT "}
        # Each status chunk and each response chunk was a progress message.
        progress = await wait_for_events(js, f"agent.event.{agent.agent_id}.task_progress", 8)
        messages = [e.envelope["data"]["message"] for e in progress]
        assert messages[:4] == ["at to", "TO ", "at be", "BE "]

        failing = await client.execute(agent.agent_id, "please fail")
        failed = await client.wait_for_task(failing.task_id, timeout=20)
        assert failed.status is TaskStatus.FAILED
        assert "500" in str(failed.error)


async def test_a_query_of_an_adopted_agent_is_input_required(
    servers: ServerUrls, client: OrchestratorClient
) -> None:
    ref = new_ref()
    async with hosted(servers, ref.session_name):
        agent = await adopt(client, ref)
        task = await client.execute(agent.agent_id, "say ask")
        waiting = await client.wait_for_task(task.task_id, TaskStatus.INPUT_REQUIRED, timeout=20)
        assert waiting.input_request is not None
        assert waiting.input_request.prompt == "which word?"
        await client.provide_input(task.task_id, "hello")
        done = await client.wait_for_task(task.task_id, timeout=20)
        assert done.result == {"text": "SAY HELLO "}


async def test_an_adopted_agent_that_stops_beating_is_heartbeat_lost(
    servers: ServerUrls, client: OrchestratorClient
) -> None:
    ref = new_ref()
    async with hosted(servers, ref.session_name):
        agent = await adopt(client, ref)
        await asyncio.sleep(1.5)  # a beat or two is recorded
    lost = await client.wait_for_status(agent.agent_id, AgentStatus.ERROR, timeout=20)
    assert lost.status_reason == "heartbeat_lost"


async def test_adopting_an_agent_nobody_serves_is_not_found(client: OrchestratorClient) -> None:
    with pytest.raises(RequestFailed) as refused:
        await adopt(client, new_ref())
    assert refused.value.code is ErrorCode.NOT_FOUND


async def test_the_adopt_command_creates_and_starts_the_agent(
    servers: ServerUrls, client: OrchestratorClient
) -> None:
    ref = new_ref()
    async with hosted(servers, ref.session_name):
        command = "from agent_orchestrator.cli import main; main()"
        args = ["adopt", ref.agent, ref.owner, ref.session_name, "--nats", servers.nats_url]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", command, *args, stdout=PIPE, stderr=PIPE
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        adopted = json.loads(out)
        assert adopted["metadata"]["protocol_agent"] == ref.model_dump()
        assert adopted["status"] == "ACTIVE"
        task = await client.execute(adopted["agent_id"], "hi")
        done = await client.wait_for_task(task.task_id, timeout=20)
        assert done.result == {"text": "HI "}
