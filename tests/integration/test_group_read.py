"""Group read against a real PostgreSQL: concurrent agent reads share queries, each caller
gets its own agent (or NotFound), and a read sees what committed before it was asked for."""

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from agent_orchestrator.client import OrchestratorClient
from agent_orchestrator.contracts import subjects
from agent_orchestrator.contracts.agents import Agent, CreateAgent
from agent_orchestrator.domain.errors import NotFound
from agent_orchestrator.domain.ids import new_id
from agent_orchestrator.service import Service
from agent_orchestrator.storage.agents import AgentRepository
from agent_orchestrator.storage.group_read import GroupRead
from agent_orchestrator.storage.postgres import Database
from tests.support.servers import ServerUrls


@pytest_asyncio.fixture
async def agents(service: Service, servers: ServerUrls) -> AsyncIterator[AgentRepository]:
    db = Database(servers.database_url, max_size=4)
    await db.open()
    yield AgentRepository(db)
    await db.close()


async def test_concurrent_reads_share_queries(
    agents: AgentRepository, client: OrchestratorClient
) -> None:
    created = [
        await client.create_agent(CreateAgent(name=f"read-{i}", type="group-read"))
        for i in range(5)
    ]
    ids = [a.agent_id for a in created] * 4  # each asked for by several callers
    unknown = new_id()

    results = await asyncio.gather(
        *(agents.get(i) for i in [*ids, unknown]), return_exceptions=True
    )

    assert [r.agent_id for r in results[:-1]] == ids  # type: ignore[union-attr]
    assert isinstance(results[-1], NotFound)
    assert agents._reads.queries < len(ids)


async def test_a_read_sees_a_write_committed_before_it(
    agents: AgentRepository, client: OrchestratorClient
) -> None:
    agent = await client.create_agent(CreateAgent(name="fresh", type="group-read"))
    await client.request(
        subjects.AGENT_UPDATE, {"agent_id": str(agent.agent_id), "name": "renamed"}, Agent
    )
    assert (await agents.get(agent.agent_id)).name == "renamed"


async def test_a_failed_query_fails_each_caller_of_its_batch() -> None:
    async def broken(keys: list[int]) -> dict[int, str]:
        await asyncio.sleep(0)
        raise ConnectionResetError("gone")

    reads: GroupRead[int, str] = GroupRead(broken)
    results = await asyncio.gather(*(reads.get(k) for k in range(3)), return_exceptions=True)
    assert all(isinstance(r, ConnectionResetError) for r in results)
    with pytest.raises(ConnectionResetError):
        await reads.get(7)  # the next batch runs again
