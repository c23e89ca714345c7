"""Embedded nats-server and PostgreSQL processes for `agent-orchestrator dev` and the tests.

Each server is a child process of the caller with its data under one folder that survives
restarts. `stop()` shuts it down cleanly, `kill()` SIGKILLs its whole process tree (for fault
tests), `restart()` brings it back on the same port with the same data, also after a kill.

On Linux a child gets PR_SET_PDEATHSIG, so it is signalled when the thread that started it dies:
call `start()` from a long-lived thread (normally the main thread), and a SIGKILLed caller leaves
no orphan servers behind. Children run in their own session, so Ctrl-C in a terminal reaches the
caller only, which then stops them in order.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Self

from agent_orchestrator.runtime.nats_server import EmbeddedNats, nats_server_executable
from agent_orchestrator.runtime.postgres_server import (
    POSTGRES_SYSTEM_USER,
    EmbeddedPostgres,
    postgres_bin_dir,
)
from agent_orchestrator.runtime.process import EmbeddedServerError, free_port

__all__ = [
    "POSTGRES_SYSTEM_USER",
    "EmbeddedNats",
    "EmbeddedPostgres",
    "EmbeddedServerError",
    "EmbeddedServers",
    "free_port",
    "nats_server_executable",
    "postgres_bin_dir",
]


class EmbeddedServers:
    """nats-server and PostgreSQL under one data folder, started together, stopped in reverse."""

    def __init__(
        self,
        data_dir: Path,
        *,
        nats_port: int = 0,
        postgres_port: int = 0,
        host: str = "127.0.0.1",
    ) -> None:
        self.nats = EmbeddedNats(data_dir, port=nats_port, host=host)
        self.postgres = EmbeddedPostgres(data_dir, port=postgres_port, host=host)

    @property
    def nats_url(self) -> str:
        """URL of the nats-server."""
        return self.nats.url

    @property
    def database_url(self) -> str:
        """DSN of PostgreSQL."""
        return self.postgres.url

    def start(self) -> tuple[str, str]:
        """Start both; return (nats_url, database_url). Nothing is left running on failure."""
        try:
            self.nats.start()
            self.postgres.start()
        except BaseException:
            self.stop()
            raise
        return self.nats_url, self.database_url

    def stop(self) -> None:
        """Stop PostgreSQL, then nats-server (reverse start order)."""
        try:
            self.postgres.stop()
        finally:
            self.nats.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
