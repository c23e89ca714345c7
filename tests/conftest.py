"""Session fixtures: real nats-server and PostgreSQL, one running service, clients.

Tests isolate themselves by the unique ids of what they create, so they share one service.
"""

from collections.abc import AsyncIterator, Iterator

import asyncpg
import httpx
import nats
import nats.aio.client
import pytest
import pytest_asyncio

from agent_orchestrator.bridge import BridgeSettings, create_app
from agent_orchestrator.bridge.server import EmbeddedBridge
from agent_orchestrator.client import OrchestratorClient
from agent_orchestrator.runtime import free_port
from agent_orchestrator.service import Service
from agent_orchestrator.settings import Settings
from tests.support.servers import ServerUrls, session_servers


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerUrls]:
    """Real servers for the whole session (env URLs, Docker, or embedded binaries)."""
    with session_servers(tmp_path_factory.mktemp("servers")) as urls:
        yield urls


@pytest.fixture(scope="session")
def settings(servers: ServerUrls) -> Settings:
    """Service settings for tests: short redelivery and sweep times."""
    return Settings(
        nats_url=servers.nats_url,
        database_url=servers.database_url,
        init_job_ack_wait_s=2.0,
        outbox_sweep_s=0.5,
        message_ack_wait_s=1.0,
        message_max_deliveries=3,
        sweep_s=0.2,
        task_heartbeat_s=2.0,
    )


@pytest_asyncio.fixture(scope="session")
async def service(settings: Settings) -> AsyncIterator[Service]:
    """One running service instance shared by the session."""
    svc = Service(settings)
    await svc.start()
    yield svc
    await svc.stop()


@pytest_asyncio.fixture(scope="session")
async def nc(service: Service, servers: ServerUrls) -> AsyncIterator[nats.aio.client.Client]:
    """A plain nats-py connection, as a user of the service would have."""
    client = await nats.connect(servers.nats_url)
    yield client
    await client.close()


@pytest.fixture(scope="session")
def client(nc: nats.aio.client.Client) -> OrchestratorClient:
    """The SDK's typed client on the session's connection."""
    return OrchestratorClient(nc)


@pytest_asyncio.fixture(scope="session")
async def db(service: Service, servers: ServerUrls) -> AsyncIterator[asyncpg.Pool]:
    """A pool for asserting on what the service stored."""
    pool = await asyncpg.create_pool(servers.database_url, min_size=1, max_size=4)
    assert pool is not None
    yield pool
    await pool.close()


@pytest_asyncio.fixture(scope="session")
async def http(nc: nats.aio.client.Client, servers: ServerUrls) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the bridge app, in process, sharing the session's NATS connection."""
    app = create_app(BridgeSettings(nats_url=servers.nats_url), nc=nc)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as client:
        yield client


@pytest_asyncio.fixture(scope="session")
async def bridge_url(
    service: Service, nc: nats.aio.client.Client, servers: ServerUrls
) -> AsyncIterator[str]:
    """The bridge as a real HTTP server (streaming needs one) on the session's loop, sharing the
    session's NATS connection."""
    bridge = EmbeddedBridge(BridgeSettings(nats_url=servers.nats_url), port=free_port(), nc=nc)
    url = await bridge.start()
    yield url
    await bridge.stop()
