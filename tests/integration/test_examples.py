"""The README's tour script runs end to end against the real service."""

import asyncio
import sys
from pathlib import Path

from agent_orchestrator.service import Service
from tests.support.servers import ServerUrls

ROOT = Path(__file__).resolve().parents[2]


async def test_the_lifecycle_tour_runs(service: Service, servers: ServerUrls) -> None:
    # Async on purpose: the session's service runs on this test's event loop.
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "examples" / "lifecycle_tour.py"),
        servers.nats_url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, stderr.decode()
    out = stdout.decode()
    assert "job done   -> READY" in out
    assert "agent.terminate  -> TERMINATED (version 7)" in out
    assert out.count("history v") == 7
    assert out.count("event agent.event.") == 7
    assert ".terminated  version=7" in out


async def test_the_talking_agents_talk(service: Service, servers: ServerUrls) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "examples" / "talking_agents.py"),
        servers.nats_url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, stderr.decode()
    *answers, log = stdout.decode().splitlines()
    assert answers == [
        "'hello there' has 2 words",
        "'how many words is this' has 5 words",
        "'one' has 1 words",
    ]
    # Questions and answers interleave as they happen; all six were delivered.
    entries = log.removeprefix("counter's log: ").split(", ")
    assert sorted(entries) == ["question DELIVERED"] * 3 + ["response DELIVERED"] * 3
