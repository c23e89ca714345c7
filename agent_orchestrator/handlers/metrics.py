"""Prometheus metrics of one service instance, served on a port of its own.

Request counts, error replies by contract error code and handler latency come from the
measurement that feeds ``$SRV.STATS`` (see ``handlers.discovery``). The rest is read when
Prometheus scrapes: the outbox backlog (one query), the PostgreSQL pool and the NATS
connection. Every instance has its own registry, so several can live in one process.
"""

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import asyncpg
import nats.aio.client
from prometheus_client import CollectorRegistry, Counter, Histogram, Info, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent_orchestrator.storage.outbox import OutboxBacklog, OutboxRelay, outbox_backlog

log = logging.getLogger(__name__)

LATENCY_BUCKETS_S = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
SCRAPE_QUERY_TIMEOUT_S = 2.0


class RequestMetrics:
    """Requests, error replies by code, and handler latency, per command subject."""

    def __init__(self, registry: CollectorRegistry, subjects: Iterable[str]) -> None:
        self._requests = Counter(
            "ao_requests", "Command requests handled, by subject.", ["subject"], registry=registry
        )
        self._errors = Counter(
            "ao_request_errors",
            "Error replies, by subject and contract error code.",
            ["subject", "code"],
            registry=registry,
        )
        self._latency = Histogram(
            "ao_request_duration_seconds",
            "Time from a request's arrival to its reply, by subject.",
            ["subject"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self._children: dict[str, tuple[Any, Any]] = {}
        self.declare(subjects)

    def declare(self, subjects: Iterable[str]) -> None:
        """Expose these subjects' series (at zero) before their first request."""
        for subject in subjects:
            self._child(subject)

    def _child(self, subject: str) -> tuple[Any, Any]:
        child = self._children.get(subject)
        if child is None:
            child = (self._requests.labels(subject), self._latency.labels(subject))
            self._children[subject] = child
        return child

    def observe(self, subject: str, elapsed_ns: int, code: str | None) -> None:
        """Count one request that took ``elapsed_ns``; ``code``: its error code, if any."""
        requests, latency = self._child(subject)
        requests.inc()
        latency.observe(elapsed_ns / 1e9)
        if code is not None:
            self._errors.labels(subject, code).inc()


@dataclass
class RuntimeSources:
    """What the scrape-time collector reads; each may be missing while the service starts."""

    loop: asyncio.AbstractEventLoop
    pool: Callable[[], asyncpg.Pool | None]
    connection: Callable[[], nats.aio.client.Client | None]
    relay: Callable[[], OutboxRelay | None]


class RuntimeCollector(Collector):
    """Outbox backlog, relay, PostgreSQL pool and NATS connection, read at scrape time."""

    def __init__(self, sources: RuntimeSources) -> None:
        self._sources = sources

    def collect(self) -> Iterable[Metric]:
        """The metrics now (called by the metrics server's thread)."""
        yield from self._outbox()
        yield from self._pool()
        yield from self._nats()

    def _backlog(self, pool: asyncpg.Pool) -> OutboxBacklog | None:
        loop = self._sources.loop
        if loop.is_closed() or _running_loop() is loop:
            return None  # only from the server's thread: the loop must be free to answer
        future = asyncio.run_coroutine_threadsafe(outbox_backlog(pool), loop)
        try:
            return future.result(timeout=SCRAPE_QUERY_TIMEOUT_S)
        except Exception as exc:
            future.cancel()
            log.debug("no outbox backlog for this scrape: %r", exc)
            return None

    def _outbox(self) -> Iterable[Metric]:
        relay = self._sources.relay()
        if relay is not None:
            yield GaugeMetricFamily(
                "ao_outbox_relay_leader",
                "1 when this instance's relay publishes the outbox (one leader at a time).",
                value=1 if relay.is_leader else 0,
            )
            yield CounterMetricFamily(
                "ao_outbox_published",
                "Outbox rows this instance's relay published to JetStream.",
                value=relay.published,
            )
        pool = self._sources.pool()
        backlog = self._backlog(pool) if pool is not None else None
        if backlog is not None:
            yield GaugeMetricFamily(
                "ao_outbox_pending",
                "Committed events and jobs not yet published to JetStream (all instances).",
                value=backlog.pending,
            )
            yield GaugeMetricFamily(
                "ao_outbox_oldest_pending_age_seconds",
                "How long the oldest unpublished outbox row has waited: the relay's lag.",
                value=backlog.oldest_age_s,
            )

    def _pool(self) -> Iterable[Metric]:
        pool = self._sources.pool()
        if pool is None:
            return
        size, idle = pool.get_size(), pool.get_idle_size()
        connections = GaugeMetricFamily(
            "ao_db_pool_connections", "PostgreSQL pool connections, by state.", labels=["state"]
        )
        connections.add_metric(["busy"], size - idle)
        connections.add_metric(["idle"], idle)
        yield connections
        yield GaugeMetricFamily(
            "ao_db_pool_max_connections", "Largest size of the pool.", value=pool.get_max_size()
        )

    def _nats(self) -> Iterable[Metric]:
        nc = self._sources.connection()
        if nc is None:
            return
        yield GaugeMetricFamily(
            "ao_nats_connected", "1 while connected to NATS.", value=1 if nc.is_connected else 0
        )
        stats = nc.stats
        yield CounterMetricFamily(
            "ao_nats_reconnects", "Reconnections to NATS.", value=stats.get("reconnects", 0)
        )
        messages = CounterMetricFamily(
            "ao_nats_messages", "NATS messages, by direction.", labels=["direction"]
        )
        sizes = CounterMetricFamily(
            "ao_nats_bytes", "NATS payload bytes, by direction.", labels=["direction"]
        )
        for direction in ("in", "out"):
            messages.add_metric([direction], stats.get(f"{direction}_msgs", 0))
            sizes.add_metric([direction], stats.get(f"{direction}_bytes", 0))
        yield messages
        yield sizes


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class ServiceMetrics:
    """The registry of one instance: request metrics, runtime metrics and build info."""

    def __init__(self, subjects: Iterable[str], *, version: str, instance_id: str) -> None:
        self.registry = CollectorRegistry()
        self.requests = RequestMetrics(self.registry, subjects)
        Info("ao_build", "Version and instance id of this service.", registry=self.registry).info(
            {"version": version, "instance_id": instance_id}
        )
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def watch(self, sources: RuntimeSources) -> None:
        """Also report the outbox, pool and connection when scraped."""
        self.registry.register(RuntimeCollector(sources))

    def serve(self, host: str, port: int) -> int:
        """Serve ``/metrics`` on ``host:port`` (0: a free port) in a thread; the bound port."""
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        bound: int = self._server.server_port
        return bound

    async def stop(self) -> None:
        """Stop serving (waits for the server's thread)."""
        server, self._server = self._server, None
        if server is not None:
            await asyncio.to_thread(server.shutdown)
            server.server_close()
