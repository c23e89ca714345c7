"""Processes the embedded default runs: nats-server and PostgreSQL under one data folder."""

from agent_orchestrator.runtime.data_dir_lock import DataDirBusy, DataDirLock
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
from agent_orchestrator.runtime.ports import (
    PortHolder,
    busy_port_message,
    port_holder,
    port_is_free,
)
from agent_orchestrator.runtime.process import PortInUse

__all__ = [
    "POSTGRES_SYSTEM_USER",
    "DataDirBusy",
    "DataDirLock",
    "EmbeddedNats",
    "EmbeddedPostgres",
    "EmbeddedServerError",
    "EmbeddedServers",
    "PortHolder",
    "PortInUse",
    "busy_port_message",
    "free_port",
    "nats_server_executable",
    "port_holder",
    "port_is_free",
    "postgres_bin_dir",
]
