"""A bridge app of a test's own (its settings), in process, on the session's NATS connection."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import nats.aio.client

from agent_orchestrator.bridge import BridgeSettings, create_app
from tests.support.servers import ServerUrls

#: An HS256 secret the bridge accepts: 51 bytes, many distinct characters.
SECRET = "k9-" + "0123456789abcdef" * 3


@asynccontextmanager
async def bridge(
    nc: nats.aio.client.Client, servers: ServerUrls, **settings: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of a bridge app made with ``settings``."""
    app = create_app(BridgeSettings(nats_url=servers.nats_url, **settings), nc=nc)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as client:
        yield client
