"""A service SIGKILLed in the middle of ingesting AGENT_OUTGOING loses and doubles nothing:
after a restart every message sent without a request is recorded once, its event published
once, and delivered once, in per-sender order."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import nats
import pytest

from agent_orchestrator.client import Inbox, OrchestratorClient
from tests.support.agents import sdk_agent, unique
from tests.support.polling import eventually
from tests.support.service_process import OwnServers, ServiceProcess, own_servers

pytestmark = pytest.mark.slow

SENDERS = 4
PER_SENDER = 1000
TOTAL = SENDERS * PER_SENDER


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[OwnServers]:
    """A nats-server and a PostgreSQL of this test alone."""
    with own_servers(tmp_path) as own:
        yield own


@pytest.fixture
def service(servers: OwnServers, tmp_path: Path) -> Iterator[ServiceProcess]:
    """The service as a child process (not started); killed at teardown, before the servers."""
    proc = ServiceProcess(servers.nats_url, servers.database_url, tmp_path / "service.log")
    try:
        yield proc
    finally:
        proc.kill()


async def test_a_service_killed_mid_ingest_loses_and_doubles_no_message(
    servers: OwnServers, service: ServiceProcess
) -> None:
    await service.start_and_wait()
    async with contextlib.AsyncExitStack() as cleanup:
        nc = await nats.connect(servers.nats_url)
        cleanup.push_async_callback(nc.close)
        db = await asyncpg.connect(servers.database_url)
        cleanup.push_async_callback(db.close)
        client = OrchestratorClient(nc, timeout=10)
        project = unique("crash")
        recipient = await sdk_agent(client, project)
        senders = [await sdk_agent(client, project) for _ in range(SENDERS)]
        service.kill()  # the stream takes the messages while no service runs

        async def send_all(sender: str) -> list[uuid.UUID]:
            return [
                await client.send_direct(sender, recipient, content={"n": n})
                for n in range(PER_SENDER)
            ]

        sent = [cid for ids in await asyncio.gather(*map(send_all, senders)) for cid in ids]

        async def recorded() -> int:
            return int(await db.fetchval("SELECT count(*) FROM communications"))

        service.start()
        at_kill = await eventually(
            recorded, lambda n: n > 0, within=30, what="ingest started", interval=0.005
        )
        service.kill()
        assert at_kill < TOTAL, "the ingest ended before the kill: nothing was tested"
        await service.start_and_wait()
        await eventually(recorded, lambda n: n >= TOTAL, within=60, what="every message recorded")

        assert await recorded() == TOTAL
        assert {
            r["communication_id"]
            for r in await db.fetch("SELECT communication_id FROM communications")
        } == set(sent)
        events = await db.fetchval(
            "SELECT count(*) FROM outbox WHERE subject LIKE 'agent.event.%.message_sent'"
        )
        assert events == TOTAL  # one message_sent each, none twice

        counts: Counter[uuid.UUID] = Counter()
        order: dict[uuid.UUID, list[int]] = defaultdict(list)
        async with Inbox(nc, recipient, client=client, batch=100) as inbox:
            for _ in range(TOTAL):
                message = await inbox.next(timeout=20)
                assert message is not None
                counts[message.communication_id] += 1
                order[message.from_agent_id].append(message.content["n"])
                await message.ack()
            assert await inbox.next(timeout=1) is None
        assert set(counts) == set(sent)
        assert set(counts.values()) == {1}
        assert all(ns == list(range(PER_SENDER)) for ns in order.values())
