"""Our agents on Synadia's NATS agent protocol, seen through its official Python client
(``synadia-ai-agents``): discovered while ACTIVE with a running program, pinged, prompted (the
example word counter streams its answer), asked a question, and refused with an error."""

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import nats
import nats.aio.client
import pytest
from pydantic import JsonValue
from synadia_ai.agents import (
    Agent,
    Agents,
    DiscoverFilter,
    Envelope,
    HeartbeatPayload,
    ProtocolError,
    Query,
    ResponseChunk,
    StatusChunk,
)

from agent_orchestrator.client import OrchestratorClient, TaskRun
from agent_orchestrator.contracts.agents import AgentStatus, CreateAgent
from agent_orchestrator.contracts.tasks import TaskStatus
from tests.support.servers import ServerUrls
from tests.support.workers import example_agent, worker_running

NC = nats.aio.client.Client
FAST_BEATS = {"liveness": {"heartbeat_window_s": 3}}


async def new_active_agent(client: OrchestratorClient, kind: str = "word-counter") -> str:
    agent = await client.create_agent(
        CreateAgent(name="protocol test", type=kind, project_id="acme", configuration=FAST_BEATS)
    )
    await client.start_agent(agent.agent_id)
    return str(agent.agent_id)


async def found(agents: Agents, agent_id: str, *, present: bool = True) -> list[Agent]:
    """Discover the agent until it is (or is no longer) there."""
    async with asyncio.timeout(15):
        while True:
            hits = await agents.discover(filter=DiscoverFilter(session_name=agent_id))
            if bool(hits) == present:
                return hits
            await asyncio.sleep(0.2)


@asynccontextmanager
async def protocol_client(servers: ServerUrls) -> AsyncIterator[Agents]:
    nc = await nats.connect(servers.nats_url)
    agents = Agents(nc=nc)
    try:
        yield agents
    finally:
        await agents.close()
        await nc.close()


async def test_an_agent_is_discovered_while_active_with_its_program_running(
    servers: ServerUrls, client: OrchestratorClient, tmp_path: Path
) -> None:
    agent_id = await new_active_agent(client)
    log = tmp_path / "agent.log"
    async with (
        protocol_client(servers) as agents,
        example_agent(servers.nats_url, agent_id, log) as program,
    ):
        await found(agents, agent_id)
        program.kill()
        await found(agents, agent_id, present=False)  # a dead program takes its service


async def test_a_running_active_agent_is_discovered_pinged_and_answers_a_prompt(
    servers: ServerUrls, client: OrchestratorClient, tmp_path: Path
) -> None:
    agent_id = await new_active_agent(client)
    async with protocol_client(servers) as agents:
        assert await agents.discover(filter=DiscoverFilter(session_name=agent_id)) == []
        async with example_agent(servers.nats_url, agent_id, tmp_path / "agent.log"):
            (agent,) = await found(agents, agent_id)
            assert (agent.agent, agent.owner, agent.protocol_version) == (
                "word-counter",
                "acme",
                "0.3",
            )
            assert agent.prompt_subject == f"agents.prompt.word-counter.acme.{agent_id}"
            assert agent.prompt_endpoint.queue_group == "agents"
            assert agent.metadata["session"] == agent_id
            assert await agents.ping(agent.instance_id)

            chunks: list[Any] = []
            slowly = Envelope(prompt="to be or not to be", parameters={"seconds_per_word": 0.05})
            async for msg in agent.prompt(slowly):
                chunks.append(msg)
            statuses = [c.status for c in chunks if isinstance(c, StatusChunk)]
            assert statuses[0] == "ack"
            assert statuses[-1] == "done"
            assert any(s.startswith("progress ") for s in statuses)
            (answer,) = [c.text for c in chunks if isinstance(c, ResponseChunk)]
            assert json.loads(answer) == {"words": 6}

            page = await client.tasks(agent_id=agent_id)
            (task,) = page.items
            assert task.status is TaskStatus.SUCCEEDED
            assert task.input == {"text": "to be or not to be"}

            status = await agent.status()
            assert status.instance_id == agent.instance_id
            assert status.extras["status"] == "ACTIVE"
            assert status.interval_s == 1
            assert status.extras["agent_id"] == agent_id
            beats = await agents.connection.subscribe(f"agents.hb.word-counter.acme.{agent_id}")
            beat = HeartbeatPayload.model_validate_json((await beats.next_msg(timeout=5)).data)
            assert (beat.instance_id, beat.interval_s) == (agent.instance_id, 1)
            await beats.unsubscribe()

            await client.change("agent.pause", agent_id)
            await found(agents, agent_id, present=False)
            await client.change("agent.activate", agent_id)
            await found(agents, agent_id)
            await client.change("agent.terminate", agent_id)
            await found(agents, agent_id, present=False)


async def test_a_failing_task_and_a_bad_prompt_are_protocol_errors(
    servers: ServerUrls, client: OrchestratorClient
) -> None:
    async def refuse(run: TaskRun) -> JsonValue:
        raise ValueError("no words today")

    agent_id = await new_active_agent(client, "refuser")
    async with worker_running(servers, agent_id, refuse), protocol_client(servers) as agents:
        (agent,) = await found(agents, agent_id)
        with pytest.raises(
            ProtocolError, match="service error 500: task FAILED: ValueError: no words today"
        ):
            async for _ in agent.prompt("count these"):
                pass
        nc = agents.connection
        reply = await nc.request(agent.prompt_subject, b'{"prompt": ""}', timeout=5)
        assert reply.headers is not None
        assert reply.headers["Nats-Service-Error-Code"] == "400"


async def test_a_question_of_the_program_is_a_query_whose_answer_is_the_input(
    servers: ServerUrls, client: OrchestratorClient
) -> None:
    async def ask(run: TaskRun) -> JsonValue:
        return {"region": await run.ask("eu or us?")}

    agent_id = await new_active_agent(client, "asker")
    async with worker_running(servers, agent_id, ask), protocol_client(servers) as agents:
        (agent,) = await found(agents, agent_id)
        texts = []
        async for msg in agent.prompt("where?"):
            if isinstance(msg, Query):
                assert msg.prompt == "eu or us?"
                (task,) = (await client.tasks(agent_id=agent_id)).items
                assert task.status is TaskStatus.INPUT_REQUIRED
                await msg.reply("eu")
            elif isinstance(msg, ResponseChunk):
                texts.append(msg.text)
        assert [json.loads(t) for t in texts] == [{"region": "eu"}]
        got = await client.get_agent(agent_id)
        assert got.status is AgentStatus.ACTIVE


async def test_a_repeated_prompt_with_one_idempotency_key_is_one_task(
    servers: ServerUrls, client: OrchestratorClient
) -> None:
    async def count(run: TaskRun) -> JsonValue:
        return {"words": len(str(run.input["text"]).split())}

    agent_id = await new_active_agent(client, "counter")
    async with worker_running(servers, agent_id, count), protocol_client(servers) as agents:
        (agent,) = await found(agents, agent_id)
        nc = agents.connection

        async def prompt() -> list[bytes]:
            inbox = nc.new_inbox()
            sub = await nc.subscribe(inbox)
            headers = {"Idempotency-Key": f"k-{agent_id}"}
            await nc.publish(agent.prompt_subject, b"one two three", reply=inbox, headers=headers)
            chunks = []
            while (msg := await sub.next_msg(timeout=10)).data:
                chunks.append(msg.data)
            await sub.unsubscribe()
            return chunks

        def responses(chunks: list[bytes]) -> list[Any]:
            return [json.loads(c)["data"] for c in chunks if json.loads(c)["type"] == "response"]

        first, again = await prompt(), await prompt()
        assert responses(first) == responses(again) == ['{"words": 3}']
        assert len((await client.tasks(agent_id=agent_id)).items) == 1
