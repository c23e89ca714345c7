"""A three-node nats-server cluster with JetStream on loopback, and a PostgreSQL, for one test.

Each node is the project's own nats-server binary (``nats_server_executable``) with a store,
a client port, a cluster port and a monitoring port of its own, and routes to every node
(``cluster { name, listen, routes }``). ``NatsCluster.start`` returns once every node answers
``/healthz`` and all agree on a JetStream meta leader, so streams at R3 can be created at once.

Clients get every node's URL (``urls``; ``nats_url`` is the same comma-separated, as
``NATS_URL`` takes it) so that they fail over when one node dies. A system account (user
``sys``) is configured besides the application's account (the default for connections without
credentials), only so that the test can move the JetStream meta leader (``move_meta_leader``).

``lead_from`` moves the leadership of every stream and durable consumer to one node (so that
killing it hits them all). The monitoring endpoints (``/jsz``, ``/healthz``, ``/connz``) tell
the test who leads and who is connected where; they are read with plain urllib, so call them in
a thread from async code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import nats.aio.client
import nats.errors
from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo, StreamInfo

from agent_orchestrator.runtime import (
    EmbeddedNats,
    EmbeddedPostgres,
    free_port,
    nats_server_executable,
)

__all__ = [
    "ClusterNode",
    "ClusterServers",
    "NatsCluster",
    "all_consumers",
    "all_streams",
    "lead_from",
    "own_cluster_servers",
]

CLUSTER_NAME = "ao-test"
APP_USER = "ao"
SYS_USER = "sys"
_PASSWORD = "loopback-test-only"
_HTTP_TIMEOUT_S = 2.0
# Durability against a machine crash is not under test; a killed server still keeps its data.
_POSTGRES_ARGS = ("-c", "fsync=off")


def _q(value: str) -> str:
    """A string in nats-server's configuration syntax."""
    return json.dumps(value)


class ClusterNode(EmbeddedNats):
    """One node of the cluster: ``EmbeddedNats`` with a name, routes and a monitoring port.

    Its store, log and configuration are under ``data_dir`` like EmbeddedNats's; the ports are
    fixed at construction, so a killed node comes back where the others expect it.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        server_name: str,
        port: int,
        cluster_port: int,
        http_port: int,
        routes: Sequence[str],
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(data_dir, port=port, host=host)
        self.server_name = server_name
        self.cluster_port = cluster_port
        self.http_port = http_port
        self.routes = tuple(routes)

    def _command(self) -> list[str]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        routes = ", ".join(_q(r) for r in self.routes)
        self.config_path.write_text(
            f"""server_name: {_q(self.server_name)}
max_payload: {self.max_payload}
http: {_q(f"{self.host}:{self.http_port}")}
jetstream {{ store_dir: {_q(str(self.store_dir))} }}
cluster {{
  name: {_q(CLUSTER_NAME)}
  listen: {_q(f"{self.host}:{self.cluster_port}")}
  routes: [{routes}]
}}
accounts {{
  AO: {{ jetstream: enabled, users: [{{ user: {APP_USER}, password: {_q(_PASSWORD)} }}] }}
  SYS: {{ users: [{{ user: {SYS_USER}, password: {_q(_PASSWORD)} }}] }}
}}
system_account: SYS
no_auth_user: {APP_USER}
""",
            encoding="utf-8",
        )
        return [
            nats_server_executable(),
            "--config",
            str(self.config_path),
            "--addr",
            self.host,
            "--port",
            str(self.port),
        ]

    @property
    def sys_url(self) -> str:
        """URL with the system account's credentials."""
        return f"nats://{SYS_USER}:{_PASSWORD}@{self.host}:{self.port}"

    def monitor(self, path: str) -> dict[str, Any] | None:
        """A monitoring endpoint's JSON (``/jsz``, ``/healthz``, ``/connz?…``), also with an
        error status; None when the node does not answer."""
        url = f"http://{self.host}:{self.http_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=_HTTP_TIMEOUT_S) as reply:
                body = reply.read()
        except urllib.error.HTTPError as exc:  # /healthz answers 503 with its reason
            body = exc.read()
        except OSError:
            return None
        try:
            doc: dict[str, Any] = json.loads(body)
        except ValueError:
            return None
        return doc

    def health(self) -> str:
        """``ok`` when running and ``/healthz`` says so (JetStream current with the cluster),
        else why not."""
        if not self.is_running:
            return "not running"
        health = self.monitor("/healthz")
        if health is None:
            return "no answer"
        return "ok" if health.get("status") == "ok" else str(health.get("error", health))

    def meta_leader(self) -> str | None:
        """Who this node thinks leads the JetStream meta group."""
        jsz = self.monitor("/jsz") if self.is_running else None
        leader = ((jsz or {}).get("meta_cluster") or {}).get("leader")
        return str(leader) if leader else None

    def client_names(self) -> list[str]:
        """Names of the client connections this node holds (unnamed ones as '')."""
        connz = self.monitor("/connz?limit=1024") if self.is_running else None
        return [str(c.get("name", "")) for c in (connz or {}).get("connections", [])]


class NatsCluster:
    """``size`` nodes named n1, n2, … under ``root``; all ports picked once, up front."""

    def __init__(self, root: Path, size: int = 3, host: str = "127.0.0.1") -> None:
        ports: set[int] = set()
        while len(ports) < 3 * size:
            ports.add(free_port(host))
        picked = sorted(ports)
        client, cluster, http = picked[:size], picked[size : 2 * size], picked[2 * size :]
        routes = [f"nats-route://{host}:{p}" for p in cluster]
        self.nodes = [
            ClusterNode(
                Path(root) / f"n{i + 1}",
                server_name=f"n{i + 1}",
                port=client[i],
                cluster_port=cluster[i],
                http_port=http[i],
                routes=routes,
                host=host,
            )
            for i in range(size)
        ]

    @property
    def urls(self) -> list[str]:
        """Every node's client URL (what nats-py's ``servers`` takes)."""
        return [n.url for n in self.nodes]

    @property
    def nats_url(self) -> str:
        """Every node's URL, comma-separated (what ``NATS_URL`` takes)."""
        return ",".join(self.urls)

    def node(self, name: str) -> ClusterNode:
        """The node of that server name."""
        (node,) = [n for n in self.nodes if n.server_name == name]
        return node

    def start(self, within: float = 60.0) -> None:
        """Start every node, then wait until the cluster is healthy."""
        for node in self.nodes:
            node.start()
        self.wait_healthy(within)

    def stop(self) -> None:
        """Stop every node (SIGKILL one that does not stop in time); raise the first error."""
        errors = []
        for node in reversed(self.nodes):
            try:
                node.stop()
            except Exception as exc:
                node.kill()
                errors.append(exc)
        if errors:
            raise errors[0]

    def _meta_leaders(self) -> set[str | None]:
        return {n.meta_leader() for n in self.nodes if n.is_running}

    def meta_leader(self) -> str | None:
        """The meta leader every running node agrees on, else None."""
        seen = self._meta_leaders()
        return seen.pop() if len(seen) == 1 else None

    def wait_meta_leader(self, within: float = 60.0) -> str:
        """Wait until the running nodes agree on a meta leader that is one of them (after a
        node died: a new one is elected); return its name."""
        deadline = time.monotonic() + within
        while True:
            leader = self.meta_leader()
            if leader in {n.server_name for n in self.nodes if n.is_running}:
                assert leader is not None
                return leader
            if time.monotonic() > deadline:
                raise TimeoutError(f"no meta leader among the running nodes after {within} s")
            time.sleep(0.05)

    def wait_healthy(self, within: float = 60.0) -> str:
        """Wait until every running node is healthy and they agree on a meta leader that is
        one of them; return its name."""
        deadline = time.monotonic() + within
        while True:
            running = [n for n in self.nodes if n.is_running]
            leader = self.meta_leader()
            health = {n.server_name: n.health() for n in running}
            if (
                running
                and set(health.values()) == {"ok"}
                and leader in {n.server_name for n in running}
            ):
                assert leader is not None
                return leader
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"cluster not healthy within {within:.0f} s: meta leader {leader}, "
                    f"health by node: {health}"
                )
            time.sleep(0.1)

    async def move_meta_leader(self, to: str, *, within: float = 30.0) -> None:
        """Ask the meta leader to step down in favour of node ``to``, until it leads."""
        deadline = time.monotonic() + within
        nc = await nats.connect(
            [n.sys_url for n in self.nodes if n.is_running], allow_reconnect=False
        )
        try:
            while True:
                leaders = await asyncio.to_thread(self._meta_leaders)
                if leaders == {to}:
                    return
                if None not in leaders and len(leaders) == 1:
                    body = json.dumps({"placement": {"preferred": to}}).encode()
                    with contextlib.suppress(nats.errors.Error, TimeoutError):
                        await nc.request("$JS.API.META.LEADER.STEPDOWN", body, timeout=5.0)
                if time.monotonic() > deadline:
                    raise TimeoutError(f"meta leader is {leaders}, not {to}, after {within} s")
                await asyncio.sleep(0.5)
        finally:
            await nc.close()


@dataclass
class ClusterServers:
    """A nats-server cluster and a PostgreSQL that belong to one test."""

    cluster: NatsCluster
    postgres: EmbeddedPostgres

    @property
    def nats_urls(self) -> list[str]:
        """Every node's URL (for nats-py)."""
        return self.cluster.urls

    @property
    def nats_url(self) -> str:
        """Every node's URL, comma-separated (for ``NATS_URL``)."""
        return self.cluster.nats_url

    @property
    def database_url(self) -> str:
        """DSN of PostgreSQL."""
        return self.postgres.url


@contextlib.contextmanager
def own_cluster_servers(test_dir: Path, size: int = 3) -> Iterator[ClusterServers]:
    """Start a ``size``-node cluster and a PostgreSQL for one test; stop (or kill) all on exit.

    Like ``tests.support.service_process.own_servers`` (see there why the data is outside
    pytest's temp root): at exit each node's log is copied into ``test_dir`` as
    ``nats-<node>.log`` and the data is removed.
    """
    test_dir.mkdir(parents=True, exist_ok=True)
    data_dir = Path(tempfile.mkdtemp(prefix="ao-cluster-test-"))
    with contextlib.suppress(OSError):
        (test_dir / "servers").symlink_to(data_dir, target_is_directory=True)
    servers = ClusterServers(
        NatsCluster(data_dir, size), EmbeddedPostgres(data_dir, extra_args=_POSTGRES_ARGS)
    )
    try:
        servers.cluster.start()
        servers.postgres.start()
        yield servers
    finally:
        try:
            try:
                try:
                    servers.postgres.stop()
                except Exception:
                    servers.postgres.kill()
                    raise
            finally:
                servers.cluster.stop()
        finally:
            for node in servers.cluster.nodes:
                with contextlib.suppress(OSError):
                    shutil.copyfile(node.log_path, test_dir / f"nats-{node.server_name}.log")
            with contextlib.suppress(OSError):
                shutil.copyfile(data_dir / "postgres.log", test_dir / "postgres.log")
            with contextlib.suppress(OSError):
                (test_dir / "servers").unlink()
            shutil.rmtree(data_dir, ignore_errors=True)


async def lead_from(
    nc: nats.aio.client.Client, node: str, *, within: float = 60.0
) -> dict[str, str]:
    """Move the leadership of every stream of the account, and of every durable consumer of
    those streams, to ``node`` (leader step-downs naming it as the preferred server); return
    the groups that ``node`` does not lead when ``within`` runs out (group -> its leader)."""
    js = nc.jetstream()
    deadline = time.monotonic() + within
    while True:
        elsewhere: dict[str, str] = {}
        for stream in await all_streams(js):
            name = stream.config.name or ""
            leader = stream.cluster.leader if stream.cluster else None
            if leader != node:
                elsewhere[name] = str(leader)
                await _step_down(nc, f"$JS.API.STREAM.LEADER.STEPDOWN.{name}", node)
            for consumer in await all_consumers(js, name):
                if not consumer.config.durable_name:
                    continue
                leader = consumer.cluster.leader if consumer.cluster else None
                if leader != node:
                    elsewhere[f"{name} > {consumer.name}"] = str(leader)
                    await _step_down(
                        nc, f"$JS.API.CONSUMER.LEADER.STEPDOWN.{name}.{consumer.name}", node
                    )
        if not elsewhere or time.monotonic() > deadline:
            return elsewhere
        await asyncio.sleep(0.5)


async def _step_down(nc: nats.aio.client.Client, subject: str, preferred: str) -> None:
    body = json.dumps({"placement": {"preferred": preferred}}).encode()
    with contextlib.suppress(nats.errors.Error, TimeoutError):
        await nc.request(subject, body, timeout=5.0)


async def all_streams(js: JetStreamContext) -> list[StreamInfo]:
    """Every stream of the account (every page of the stream list)."""
    streams: list[StreamInfo] = []
    while page := await js.streams_info(offset=len(streams)):
        streams += page
    return streams


async def all_consumers(js: JetStreamContext, stream: str) -> list[ConsumerInfo]:
    """Every consumer of ``stream`` (every page of the consumer list)."""
    consumers: list[ConsumerInfo] = []
    while page := await js.consumers_info(stream, offset=len(consumers)):
        consumers += page
    return consumers
