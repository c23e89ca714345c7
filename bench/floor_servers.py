"""Floors that bench/commands.py measures the service against: the cheapest FastStream + asyncpg
server doing a command's database work, one per process, written the way a plain FastStream
user would write it.

    python bench/floor_servers.py read NATS_URL DATABASE_URL SUBJECT [ROWS]
    python bench/floor_servers.py write NATS_URL DATABASE_URL SUBJECT

`read` (F_read): at start, creates table `floor_read` (agent_id uuid primary key, doc jsonb)
and, when it is empty, fills it with ROWS (default 1000) rows whose `doc` is an agent as
agent.get returns it (the Agent contract, same fields and sizes as the bench's agents); then
answers `{"agent_id": ...}` with that row's `doc`, read by primary key, sent as read (no decode
/ re-encode).

`write` (F_write): at start, creates table `floor_write`, shaped like the service's `agents`
row; then, for every agent.create-shaped request, INSERTs one row (asyncpg outside a
transaction: autocommit, one commit each, PostgreSQL's default fsync / synchronous_commit) and
answers `{"agent_id": ..., "status": "CREATED"}`.

Both: one NatsBroker subscriber in a queue group, JSON body validated into a pydantic model,
until SIGTERM/SIGINT. What differs from FastStream's and asyncpg's defaults is what a competent
user would set, and matches the service (agent_orchestrator/service.py, handlers/commands.py):
- `max_workers` = the service's `handler_max_workers` default (concurrent requests a subject);
- an asyncpg pool sized like the service's (`db_pool_min` - `db_pool_max` defaults);
- FastStream's per-message access log at DEBUG, i.e. off, as in the service and the FastStream
  echo (its default INFO logs two lines per message).
The event loop is asyncio's default, as in the service and the echoes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
from commands import agent_body
from faststream.nats import NatsBroker
from pydantic import BaseModel

from agent_orchestrator.contracts.agents import Agent
from agent_orchestrator.settings import Settings

QUEUE_GROUP = "bench-floor"
#: Rows in F_read's table unless told; the load generator reads random ones.
ROWS = 1000
_DEFAULTS = Settings.model_fields
MAX_WORKERS: int = _DEFAULTS["handler_max_workers"].default
POOL_MIN: int = _DEFAULTS["db_pool_min"].default
POOL_MAX: int = _DEFAULTS["db_pool_max"].default

READ_TABLE = """CREATE TABLE IF NOT EXISTS floor_read (
    agent_id uuid  PRIMARY KEY,
    doc      jsonb NOT NULL
)"""
WRITE_TABLE = """CREATE TABLE IF NOT EXISTS floor_write (
    agent_id    uuid        PRIMARY KEY,
    name        text        NOT NULL,
    type        text        NOT NULL,
    description text,
    metadata    jsonb       NOT NULL DEFAULT '{}',
    status      text        NOT NULL,
    version     integer     NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
)"""


class AgentRef(BaseModel):
    """An agent.get request."""

    agent_id: uuid.UUID


class NewAgent(BaseModel):
    """An agent.create request, as the bench sends it."""

    name: str
    type: str
    description: str | None = None
    metadata: dict[str, Any] = {}


def agent_doc(agent_id: uuid.UUID, n: int) -> str:
    """An agent as agent.get returns one of the bench's agents (created, never changed)."""
    now = datetime.now(UTC)
    body = agent_body(f"bench-floor-{n:05d}")
    agent = Agent(
        agent_id=agent_id, status="CREATED", version=1, created_at=now, updated_at=now, **body
    )
    doc: str = agent.model_dump_json()
    return doc


async def fill_read_table(pool: asyncpg.Pool, rows: int) -> None:
    """Create F_read's table and give it `rows` rows (when it is empty)."""
    await pool.execute(READ_TABLE)
    if await pool.fetchval("SELECT count(*) FROM floor_read"):
        return
    ids = [uuid.uuid4() for _ in range(rows)]
    docs = [agent_doc(agent_id, n) for n, agent_id in enumerate(ids)]
    await pool.execute(
        "INSERT INTO floor_read (agent_id, doc) SELECT * FROM unnest($1::uuid[], $2::jsonb[])",
        ids,
        docs,
    )
    await pool.execute("ANALYZE floor_read")


def read_subscriber(broker: NatsBroker, pool: asyncpg.Pool, subject: str) -> None:
    """F_read: one primary-key read, the row's JSON as the reply."""

    @broker.subscriber(subject, queue=QUEUE_GROUP, max_workers=MAX_WORKERS)
    async def read(body: AgentRef) -> str | None:
        doc: str | None = await pool.fetchval(
            "SELECT doc FROM floor_read WHERE agent_id = $1", body.agent_id
        )
        return doc


def write_subscriber(broker: NatsBroker, pool: asyncpg.Pool, subject: str) -> None:
    """F_write: one INSERT per request, autocommit."""

    @broker.subscriber(subject, queue=QUEUE_GROUP, max_workers=MAX_WORKERS)
    async def write(body: NewAgent) -> dict[str, str]:
        agent_id = uuid.uuid4()
        now = datetime.now(UTC)
        await pool.execute(
            "INSERT INTO floor_write (agent_id, name, type, description, metadata, status,"
            " version, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'CREATED', 1, $6, $6)",
            agent_id,
            body.name,
            body.type,
            body.description,
            json.dumps(body.metadata),
            now,
        )
        return {"agent_id": str(agent_id), "status": "CREATED"}


async def serve(kind: str, nats_url: str, database_url: str, subject: str, rows: int) -> None:
    """Create the table, then serve `subject` until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    pool = await asyncpg.create_pool(database_url, min_size=POOL_MIN, max_size=POOL_MAX)
    try:
        broker = NatsBroker(nats_url, log_level=logging.DEBUG)
        if kind == "read":
            await fill_read_table(pool, rows)
            read_subscriber(broker, pool, subject)
        else:
            await pool.execute(WRITE_TABLE)
            write_subscriber(broker, pool, subject)
        await broker.start()
        await stop.wait()
        await broker.stop()
    finally:
        await pool.close()


def main(argv: list[str]) -> int:
    """Command-line entry point."""
    if len(argv) not in (4, 5) or argv[0] not in ("read", "write"):
        print(__doc__, file=sys.stderr)
        return 2
    kind, nats_url, database_url, subject = argv[:4]
    rows = int(argv[4]) if len(argv) == 5 else ROWS
    asyncio.run(serve(kind, nats_url, database_url, subject, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
