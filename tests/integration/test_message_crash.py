"""A recipient that crashes holding unacknowledged messages loses none and doubles none."""

import asyncio
import signal
import sys
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import asyncpg
import nats.aio.client
import pytest

from agent_orchestrator.client import OrchestratorClient
from agent_orchestrator.contracts import subjects
from tests.support.agents import sdk_agent, unique
from tests.support.queues import subject_is_empty
from tests.support.servers import ServerUrls

pytestmark = pytest.mark.slow

SENDERS = 10
PER_SENDER = 100
TOTAL = SENDERS * PER_SENDER


async def run_recipient(
    servers: ServerUrls, agent_id: str, out: Path, crash_after: int | None = None
) -> tuple[int, str]:
    """Run the recipient program to its end: (exit code, what it printed on stderr)."""
    args = [servers.nats_url, agent_id, str(out), str(TOTAL)]
    if crash_after is not None:
        args.append(str(crash_after))
    log = out.with_suffix(f".{crash_after}.log")
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.support.recipient_program", *args, stderr=stderr
        )
        try:
            async with asyncio.timeout(120):
                code = await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    return code, log.read_text()


async def test_a_thousand_messages_arrive_exactly_once_across_a_recipient_crash(
    nc: nats.aio.client.Client,
    client: OrchestratorClient,
    servers: ServerUrls,
    db: asyncpg.Pool,
    tmp_path: Path,
) -> None:
    project = unique("crash")
    target = await sdk_agent(client, project, name="recipient")
    senders = [await sdk_agent(client, project, name=f"sender-{i}") for i in range(SENDERS)]

    async def send_all(sender: str) -> list[str]:
        return [
            str((await client.send(sender, target, content={"n": n})).communication_id)
            for n in range(PER_SENDER)
        ]

    sent = [cid for ids in await asyncio.gather(*map(send_all, senders)) for cid in ids]

    out = tmp_path / "handled.txt"
    code, stderr = await run_recipient(servers, target, out, crash_after=TOTAL // 2)
    assert code == -signal.SIGKILL, stderr
    assert len(out.read_text().splitlines()) == TOTAL // 2
    code, stderr = await run_recipient(servers, target, out)
    assert code == 0, stderr

    lines = [line.split() for line in out.read_text().splitlines()]
    counts = Counter(cid for cid, _, _ in lines)
    assert sorted(counts) == sorted(sent)  # every message arrived...
    assert set(counts.values()) == {1}  # ...exactly once
    by_sender: dict[str, list[int]] = defaultdict(list)
    for _, sender, n in lines[: TOTAL // 2]:
        by_sender[sender].append(int(n))
    assert all(ns == sorted(ns) for ns in by_sender.values())  # in per-pair order

    statuses = await db.fetch(
        "SELECT status, count(*) FROM communications WHERE to_agent_id = $1 GROUP BY status",
        uuid.UUID(target),
    )
    assert {r["status"]: r["count"] for r in statuses} == {"DELIVERED": TOTAL}
    assert await subject_is_empty(nc, subjects.MESSAGES_STREAM, subjects.inbox_subject(target))
