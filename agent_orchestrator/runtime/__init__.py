"""Processes the embedded default runs: nats-server and PostgreSQL under one data folder."""

from agent_orchestrator.runtime.embedded import (
    POSTGRES_SYSTEM_USER,
    EmbeddedNats,
    EmbeddedPostgres,
    EmbeddedServerError,
    EmbeddedServers,
    free_port,
    nats_server_executable,
    postgres_bin_dir,
)

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
