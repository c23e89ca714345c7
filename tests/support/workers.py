"""Agent workers for tests: one in process, or the example agent program as a child process."""

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import nats

from agent_orchestrator.client import AgentWorker
from tests.support.servers import ServerUrls


@asynccontextmanager
async def worker_running(
    servers: ServerUrls | str, agent_id: str, handler: Any, *, concurrency: int = 1
) -> AsyncIterator[AgentWorker]:
    """An in-process AgentWorker on a connection of its own (to the session's servers, or to
    the NATS URL given), stopped with its tasks cancelled at the end."""
    url = servers if isinstance(servers, str) else servers.nats_url
    nc = await nats.connect(url)
    worker = AgentWorker(nc, agent_id, poll_s=0.2, concurrency=concurrency)
    worker.task(handler)
    running = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop(cancel_running=True)
        try:
            await asyncio.wait_for(running, 15)
        finally:
            await nc.close()


EXAMPLE_AGENT = Path(__file__).resolve().parents[2] / "examples" / "word_count_agent.py"
APPROVAL_AGENT = EXAMPLE_AGENT.with_name("approval_agent.py")


@asynccontextmanager
async def example_agent(
    nats_url: str, agent_id: str | None, log: Path, program: Path = EXAMPLE_AGENT
) -> AsyncIterator[asyncio.subprocess.Process]:
    """examples/word_count_agent.py as a child process (killed at the end if still running):
    serving ``agent_id``, or (None) an agent it creates itself, as the README's tour does.
    Its output is appended to ``log``. ``program``: another example agent with the same
    command line (``APPROVAL_AGENT``)."""
    serve = ["--agent-id", agent_id] if agent_id else []
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(program), "--nats", nats_url, *serve, stdout=out, stderr=out
        )
        try:
            yield proc
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
