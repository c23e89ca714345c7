"""Serving the bridge with uvicorn: alone (``agent-orchestrator bridge``) or inside ``dev``."""

import asyncio
import contextlib
import errno
import socket
from collections.abc import Iterator

import nats.aio.client
import uvicorn
from fastapi import FastAPI
from opentelemetry.trace import TracerProvider

from agent_orchestrator.bridge.app import create_app
from agent_orchestrator.bridge.settings import BridgeSettings

SHUTDOWN_GRACE_S = 5
"""How long a stopping bridge lets open requests (SSE streams, blocking A2A sends) finish."""


class BridgeStartError(RuntimeError):
    """The embedded bridge could not start serving (e.g. its port is taken)."""


class BridgePortInUse(BridgeStartError):
    """The embedded bridge's port is taken by another listener."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(f"the HTTP bridge cannot listen on {host}:{port}: address already in use")
        self.host = host
        self.port = port


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its host's event loop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class EmbeddedBridge:
    """The bridge served as a task of an already running event loop (``dev``)."""

    def __init__(
        self,
        settings: BridgeSettings,
        host: str = "127.0.0.1",
        port: int = 8000,
        nc: nats.aio.client.Client | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        config = uvicorn.Config(
            create_app(settings, nc=nc, tracer_provider=tracer_provider),
            host=host,
            port=port,
            log_level="warning",
            log_config=None,  # the host configured logging (AO_LOG_FORMAT)
            lifespan="on",
            # Open event streams and waiting A2A calls do not hold a shutdown up for long.
            timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
        )
        self._server = _EmbeddedServer(config)
        self._task: asyncio.Task[None] | None = None
        self.host = host
        self.port = port
        self.url = f"http://{host}:{port}"

    def _bind(self) -> socket.socket:
        """The listening socket, bound here so that a taken port is a plain, clean error."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise BridgePortInUse(self.host, self.port) from None
            raise BridgeStartError(f"the HTTP bridge cannot listen on {self.url}: {exc}") from exc
        self.port = sock.getsockname()[1]
        self.url = f"http://{self.host}:{self.port}"
        return sock

    async def _serve(self, sock: socket.socket) -> None:
        try:
            await self._server.serve(sockets=[sock])
        except SystemExit as exc:  # uvicorn exits when it cannot start up
            raise BridgeStartError(f"the HTTP bridge failed to start on {self.url}") from exc
        finally:
            sock.close()

    async def start(self) -> str:
        """Serve in the background; return the URL once it accepts connections."""
        self._task = asyncio.create_task(self._serve(self._bind()), name="http-bridge")
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise BridgeStartError(f"the HTTP bridge stopped before serving on {self.url}")
            await asyncio.sleep(0.02)
        return self.url

    async def stop(self) -> None:
        """Stop accepting, finish open requests, close the bridge's NATS connection."""
        if self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(Exception):
            await self._task
        self._task = None


def run_bridge(
    settings: BridgeSettings, host: str, port: int, *, app: FastAPI | None = None
) -> None:
    """Serve the bridge alone until SIGINT/SIGTERM (uvicorn's own signal handling)."""
    # No per-request access log: like the service, the bridge logs problems, not traffic.
    # Logging is configured by the caller (AO_LOG_LEVEL, AO_LOG_FORMAT), not by uvicorn.
    uvicorn.run(
        app or create_app(settings),
        host=host,
        port=port,
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
    )
