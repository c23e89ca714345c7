"""A service instance on servers of its own, for tests that break or reconfigure things."""

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import nats.aio.client
from opentelemetry.trace import TracerProvider

from agent_orchestrator.handlers.initialization import InitializationStep
from agent_orchestrator.runtime import EmbeddedNats, EmbeddedPostgres
from agent_orchestrator.service import Service
from agent_orchestrator.settings import Settings


@dataclass
class OwnService:
    """Handles on everything the test owns."""

    nats: EmbeddedNats
    postgres: EmbeddedPostgres
    service: Service
    nc: nats.aio.client.Client


@asynccontextmanager
async def own_service(
    tmp: Path,
    *,
    init_steps: Sequence[InitializationStep] = (),
    tracer_provider: TracerProvider | None = None,
    **settings: Any,
) -> AsyncIterator[OwnService]:
    """Start nats-server, PostgreSQL and one service, all private to the caller."""
    nats_server = EmbeddedNats(tmp)
    postgres = EmbeddedPostgres(tmp, extra_args=("-c", "fsync=off"))
    nats_url = nats_server.start()
    try:
        database_url = postgres.start()
        try:
            service = Service(
                Settings(
                    nats_url=nats_url,
                    database_url=database_url,
                    init_job_ack_wait_s=2.0,
                    outbox_sweep_s=0.5,
                    **settings,
                ),
                init_steps=init_steps,
                tracer_provider=tracer_provider,
            )
            await service.start()
            try:
                nc = await nats.connect(nats_url)
                try:
                    yield OwnService(nats_server, postgres, service, nc)
                finally:
                    await nc.close()
            finally:
                await service.stop()
        finally:
            postgres.stop()
    finally:
        nats_server.stop()
