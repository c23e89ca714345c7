"""An in-process agent worker for tests that need one to take tasks."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import nats

from agent_orchestrator.client import AgentWorker
from tests.support.servers import ServerUrls


@asynccontextmanager
async def worker_running(
    servers: ServerUrls, agent_id: str, handler: Any
) -> AsyncIterator[AgentWorker]:
    """An in-process AgentWorker on a connection of its own."""
    nc = await nats.connect(servers.nats_url)
    worker = AgentWorker(nc, agent_id, poll_s=0.2)
    worker.task(handler)
    running = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await nc.close()
