"""A prompt in flight to an adopted protocol agent survives a killed service: the attempt is
given up at its deadline and the prompt is sent again by the restarted service's adapter."""

import asyncio
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from synadia_ai.agent_service import AgentService, PromptStream
from synadia_ai.agents import Envelope

from agent_orchestrator.client import OrchestratorClient
from agent_orchestrator.client.protocol_adapter import adopt
from agent_orchestrator.contracts.agent_protocol import ProtocolAgentRef
from agent_orchestrator.contracts.tasks import TaskStatus
from tests.support.service_process import OwnServers, ServiceProcess, own_servers


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[OwnServers]:
    with own_servers(tmp_path) as own:
        yield own


async def test_a_prompt_lost_with_a_killed_service_is_sent_again(
    servers: OwnServers, tmp_path: Path
) -> None:
    service = ServiceProcess(
        servers.nats_url,
        servers.database_url,
        tmp_path / "service.log",
        env={"AO_TASK_HEARTBEAT_S": "2", "AO_SWEEP_S": "0.2"},
    )
    prompts: list[str] = []
    first_seen = asyncio.Event()
    release = asyncio.Event()

    async def slow_echo(envelope: Envelope, stream: PromptStream) -> None:
        prompts.append(envelope.prompt)
        first_seen.set()
        if len(prompts) == 1:
            await release.wait()  # answers only after the service that asked is dead
        await stream.send(f"echo {envelope.prompt}")

    host_nc = await nats.connect(servers.nats_url)
    host = AgentService(
        agent="echo", owner="acme", session_name="restart", nc=host_nc, heartbeat_interval_s=1
    )
    host.on_prompt(slow_echo)
    await host.start()
    nc = await nats.connect(servers.nats_url)
    try:
        await service.start_and_wait()
        client = OrchestratorClient(nc)
        agent = await adopt(
            client, ProtocolAgentRef(agent="echo", owner="acme", session_name="restart")
        )
        task = await client.execute(agent.agent_id, "hello", max_attempts=3)
        await asyncio.wait_for(first_seen.wait(), 20)

        service.kill()
        release.set()  # its answer goes to the dead service's inbox: lost
        await service.start_and_wait()

        done = await client.wait_for_task(task.task_id, timeout=40)
        assert done.status is TaskStatus.SUCCEEDED, service.log_tail()
        assert done.result == {"text": "echo hello"}
        assert done.attempts == 2
        assert prompts == ["hello", "hello"]  # at least once: the prompt was sent again
    finally:
        service.kill()
        await host.stop()
        await host_nc.close()
        await nc.close()
