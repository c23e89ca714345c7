"""agent.send written in batches: concurrent sends share one statement, and each caller still
gets its own reply or its own error (real NATS and PostgreSQL)."""

import asyncio

import asyncpg

from agent_orchestrator.client import OrchestratorClient, RequestFailed
from agent_orchestrator.contracts.communications import Communication
from agent_orchestrator.service import Service
from tests.support.agents import sdk_agent, unique

SENDS = 60


async def test_concurrent_sends_share_statements_and_each_gets_its_reply(
    client: OrchestratorClient, service: Service, db: asyncpg.Pool
) -> None:
    project = unique("batch")
    senders = [await sdk_agent(client, project) for _ in range(3)]
    recipient = await sdk_agent(client, project)
    stats = service.repositories.communications.send_stats
    before = (stats.batches, stats.items)
    replies = await asyncio.gather(
        *(
            client.send(senders[i % 3], recipient, content={"n": i}, idempotency_key=f"k{i}")
            for i in range(SENDS)
        )
    )
    assert [r.content for r in replies] == [{"n": i} for i in range(SENDS)]
    assert len({r.communication_id for r in replies}) == SENDS
    items, batches = stats.items - before[1], stats.batches - before[0]
    assert items == SENDS
    assert batches < SENDS  # at least two sends shared a statement
    rows = await db.fetch(
        "SELECT communication_id FROM communications WHERE to_agent_id = $1", replies[0].to_agent_id
    )
    assert {r["communication_id"] for r in rows} == {r.communication_id for r in replies}
    # A repeat of a key returns the first reply, also when sent together with new ones.
    again = await asyncio.gather(
        *(
            client.send(senders[i % 3], recipient, content={"n": i}, idempotency_key=f"k{i}")
            for i in range(5)
        ),
        client.send(senders[0], recipient, content={"n": "new"}),
    )
    assert [a.communication_id for a in again[:5]] == [r.communication_id for r in replies[:5]]
    assert again[5].communication_id not in {r.communication_id for r in replies}


async def test_a_refused_send_fails_only_its_caller(client: OrchestratorClient) -> None:
    project = unique("batch")
    sender = await sdk_agent(client, project)
    live = await sdk_agent(client, project)
    ended = await sdk_agent(client, project)
    await client.change("agent.terminate", ended)
    outcomes = await asyncio.gather(
        *(client.send(sender, live, content=i) for i in range(10)),
        client.send(sender, ended, content="late"),
        *(client.send(sender, live, content=i) for i in range(10, 20)),
        return_exceptions=True,
    )
    refused = outcomes.pop(10)
    assert isinstance(refused, RequestFailed)
    assert refused.code == "invalid_transition"
    assert all(isinstance(o, Communication) for o in outcomes)
    assert sorted(o.content for o in outcomes if isinstance(o, Communication)) == list(range(20))
