"""Metrics, traces and JSON logs of a service and bridge that have them turned on.

One service on servers of its own (so every request lands on it), with its metrics port on
and an in-memory span exporter; the bridge app in process, traced by the same provider.
"""

import io
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
import pytest_asyncio
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client.parser import text_string_to_metric_families

from agent_orchestrator.bridge import BridgeSettings, create_app
from agent_orchestrator.bridge.nats_client import BridgeState, nats_request
from agent_orchestrator.bridge.problems import ProblemError
from agent_orchestrator.observability import JsonFormatter
from agent_orchestrator.runtime import free_port
from tests.support.calls import call, ok
from tests.support.own_service import OwnService, own_service
from tests.support.polling import eventually

WAIT_S = 10.0


@dataclass
class Observed:
    """The service, its metrics URL, the traced bridge and the spans both finished."""

    own: OwnService
    metrics_url: str
    http: httpx.AsyncClient
    bridge: BridgeState
    spans: InMemorySpanExporter


@pytest_asyncio.fixture(scope="module")
async def observed(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Observed]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with own_service(
        tmp_path_factory.mktemp("observed"),
        tracer_provider=provider,
        metrics_port=free_port(),
        metrics_host="127.0.0.1",
    ) as own:
        assert own.service.metrics_url is not None
        app = create_app(BridgeSettings(nats_url=own.nats.url), nc=own.nc, tracer_provider=provider)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as http:
            yield Observed(own, own.service.metrics_url, http, app.state.bridge, exporter)
    provider.shutdown()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text exposition, by name and labels."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(
    scraped: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


async def scrape_service(observed: Observed) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with httpx.AsyncClient() as client:
        reply = await client.get(observed.metrics_url)
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    return samples(reply.text)


async def scrape_bridge(observed: Observed) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    reply = await observed.http.get("/metrics")
    assert reply.status_code == 200
    return samples(reply.text)


async def spans_until(
    observed: Observed, found: Callable[[list[ReadableSpan]], bool]
) -> list[ReadableSpan]:
    """The finished spans, once ``found`` holds for them (spans end just after replies)."""

    async def finished() -> list[ReadableSpan]:
        return list(observed.spans.get_finished_spans())

    return await eventually(
        finished, found, within=WAIT_S, what="the spans looked for", interval=0.05
    )


def of_trace(spans: list[ReadableSpan], trace_id: int) -> list[ReadableSpan]:
    return [s for s in spans if s.context is not None and s.context.trace_id == trace_id]


def children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    assert parent.context is not None
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


def named(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    matching = [s for s in spans if s.name == name]
    assert len(matching) == 1, [s.name for s in spans]
    return matching[0]


async def test_service_metrics_count_requests_errors_and_latency_per_subject(
    observed: Observed,
) -> None:
    nc = observed.own.nc
    before = await scrape_service(observed)
    # Every subject's series is declared up front, before its first request (``value`` would
    # read a missing one as 0, and another test of the module may have sent agent.update).
    assert ("ao_requests_total", frozenset({"subject": "agent.update"}.items())) in before
    agent = await ok(nc, "agent.create", {"name": "counted", "type": "t"})
    await ok(nc, "agent.get", {"agent_id": agent["agent_id"]})
    missing = await call(nc, "agent.get", {"agent_id": str(uuid.uuid4())})
    assert missing.error_code == "not_found"
    after = await scrape_service(observed)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("ao_requests_total", subject="agent.get") == 2
    assert moved("ao_requests_total", subject="agent.create") == 1
    assert moved("ao_request_errors_total", subject="agent.get", code="not_found") == 1
    assert moved("ao_request_errors_total", subject="agent.create", code="not_found") == 0
    assert moved("ao_request_duration_seconds_count", subject="agent.get") == 2
    assert moved("ao_request_duration_seconds_sum", subject="agent.get") > 0
    for name in (
        "ao_outbox_pending",
        "ao_outbox_oldest_pending_age_seconds",
        "ao_outbox_relay_leader",
        "ao_outbox_published_total",
        "ao_db_pool_max_connections",
        "ao_nats_connected",
    ):
        assert any(key[0] == name for key in after), name
    assert value(after, "ao_outbox_relay_leader") == 1  # the only instance leads
    assert value(after, "ao_nats_connected") == 1
    assert value(after, "ao_db_pool_connections", state="idle") >= 0
    assert (
        after[
            (
                "ao_build_info",
                frozenset(
                    {
                        "version": observed.own.service.stats.version,
                        "instance_id": observed.own.service.stats.instance_id,
                    }.items()
                ),
            )
        ]
        == 1
    )


async def test_service_metrics_and_srv_stats_share_one_measurement(observed: Observed) -> None:
    nc = observed.own.nc
    await ok(nc, "template.list", {})
    scraped = await scrape_service(observed)
    stats = json.loads((await nc.request("$SRV.STATS.agent-orchestrator", b"", timeout=5)).data)
    endpoint = next(e for e in stats["endpoints"] if e["subject"] == "template.list")
    assert value(scraped, "ao_requests_total", subject="template.list") == endpoint["num_requests"]
    assert value(
        scraped, "ao_request_duration_seconds_sum", subject="template.list"
    ) == pytest.approx(endpoint["processing_time"] / 1e9)


async def test_bridge_metrics_count_requests_by_route_method_and_status(
    observed: Observed,
) -> None:
    http = observed.http
    before = await scrape_bridge(observed)
    created = await http.post("/api/agents", json={"name": "via-http", "type": "t"})
    assert created.status_code == 201
    agent_id = created.json()["agent_id"]
    assert (await http.get(f"/api/agents/{agent_id}")).status_code == 200
    assert (await http.get(f"/api/agents/{uuid.uuid4()}")).status_code == 404
    assert (await http.get("/no/such/path")).status_code == 404
    after = await scrape_bridge(observed)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    one = "/api/agents/{agent_id}"
    assert moved("ao_bridge_requests_total", route="/api/agents", method="POST", status="201") == 1
    assert moved("ao_bridge_requests_total", route=one, method="GET", status="200") == 1
    assert moved("ao_bridge_requests_total", route=one, method="GET", status="404") == 1
    assert moved("ao_bridge_requests_total", route="<unmatched>", method="GET", status="404") == 1
    assert moved("ao_bridge_request_duration_seconds_count", route=one, method="GET") == 2
    assert moved("ao_bridge_nats_request_duration_seconds_count", subject="agent.get") == 2
    assert value(after, "ao_bridge_requests_in_progress") == 1  # this scrape itself


async def test_bridge_counts_nats_requests_without_reply_by_kind(observed: Observed) -> None:
    subject = f"bridge.test.{uuid.uuid4().hex}"
    with pytest.raises(ProblemError):
        await nats_request(observed.bridge, subject, b"{}")
    scraped = await scrape_bridge(observed)
    assert (
        value(scraped, "ao_bridge_nats_request_errors_total", subject=subject, kind="no_responders")
        == 1
    )


async def test_a_bridge_request_is_one_trace_from_http_through_the_handler_to_db(
    observed: Observed,
) -> None:
    created = await observed.http.post("/api/agents", json={"name": "traced", "type": "t"})
    agent_id = created.json()["agent_id"]
    observed.spans.clear()
    assert (await observed.http.get(f"/api/agents/{agent_id}")).status_code == 200

    def complete(spans: list[ReadableSpan]) -> bool:
        """The server span and, in its trace, the handler's (not a late one of an earlier
        test's request)."""
        return any(
            s.name == "GET /api/agents/{agent_id}"
            and s.context is not None
            and any(t.name == "agent.get process" for t in of_trace(spans, s.context.trace_id))
            for s in spans
        )

    spans = await spans_until(observed, complete)
    server = named(spans, "GET /api/agents/{agent_id}")
    assert server.kind is SpanKind.SERVER
    assert server.parent is None
    assert server.context is not None
    trace = of_trace(spans, server.context.trace_id)
    client = named(children(trace, server), "agent.get request")
    assert client.kind is SpanKind.CLIENT
    consumer = named(children(trace, client), "agent.get process")
    assert consumer.kind is SpanKind.CONSUMER
    assert consumer.attributes is not None
    assert consumer.attributes["messaging.destination.name"] == "agent.get"
    below = children(trace, consumer)
    db = [s for s in below if s.attributes and s.attributes.get("db.system.name") == "postgresql"]
    assert db
    assert all(s.kind is SpanKind.CLIENT for s in db)
    assert any("FROM agents" in str((s.attributes or {}).get("db.query.text")) for s in db)
    kv = [s for s in below if s.attributes and s.attributes.get("nats.kv.bucket")]
    # The heartbeat comes from the cache the bucket's stream feeds: no KV request per get.
    assert kv == []
    assert {s.context.trace_id for s in trace if s.context} == {server.context.trace_id}


async def test_state_writes_are_kv_spans_of_the_handler(observed: Observed) -> None:
    agent = await ok(observed.own.nc, "agent.create", {"name": "stateful", "type": "t"})
    observed.spans.clear()
    reply = await observed.http.put(
        f"/api/agents/{agent['agent_id']}/state", json={"state": {"step": 1}}
    )
    assert reply.status_code == 200
    spans = await spans_until(
        observed, lambda spans: any(s.name == "agent.state.update process" for s in spans)
    )
    consumer = named(spans, "agent.state.update process")
    kv = {s.name for s in children(spans, consumer) if s.name.startswith("kv.")}
    assert {"kv.get agent_state", "kv.create agent_state"} <= kv


async def test_a_nats_request_with_traceparent_continues_the_callers_trace(
    observed: Observed,
) -> None:
    agent = await ok(observed.own.nc, "agent.create", {"name": "continued", "type": "t"})
    trace_id, parent_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    headers = {"traceparent": f"00-{trace_id}-{parent_id}-01"}
    await ok(observed.own.nc, "agent.get", {"agent_id": agent["agent_id"]}, headers=headers)

    def continued(spans: list[ReadableSpan]) -> bool:
        return any(s.name == "agent.get process" for s in of_trace(spans, int(trace_id, 16)))

    trace = of_trace(await spans_until(observed, continued), int(trace_id, 16))
    consumer = named(trace, "agent.get process")
    assert consumer.parent is not None
    assert consumer.parent.is_remote
    assert consumer.parent.span_id == int(parent_id, 16)
    assert any(s.name == "SELECT" for s in children(trace, consumer))


async def test_error_replies_carry_the_trace_id_over_nats_and_http(observed: Observed) -> None:
    trace_id = uuid.uuid4().hex
    headers = {"traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"}
    reply = await call(
        observed.own.nc, "agent.get", {"agent_id": str(uuid.uuid4())}, headers=headers
    )
    assert reply.error_code == "not_found"
    assert reply.body["error"]["trace_id"] == trace_id
    assert reply.headers["Trace-Id"] == trace_id

    problem = await observed.http.get(f"/api/agents/{uuid.uuid4()}")
    assert problem.status_code == 404
    http_trace = problem.json()["trace_id"]
    spans = await spans_until(
        observed,
        lambda spans: any(
            s.name == "agent.get process" for s in of_trace(spans, int(http_trace, 16))
        ),
    )
    assert named(of_trace(spans, int(http_trace, 16)), "GET /api/agents/{agent_id}")


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """What the service logs at DEBUG, as JSON lines."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("agent_orchestrator.handlers")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def test_json_log_lines_of_a_traced_request_carry_its_trace_id(
    observed: Observed, json_log: io.StringIO
) -> None:
    trace_id = uuid.uuid4().hex
    headers = {"traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"}
    reply = await call(
        observed.own.nc, "agent.get", {"agent_id": str(uuid.uuid4())}, headers=headers
    )
    assert reply.body["error"]["trace_id"] == trace_id
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    mine = [line for line in lines if line.get("trace_id") == trace_id]
    assert mine, lines
    assert mine[0]["message"].startswith("agent.get answered not_found")
    assert mine[0]["level"] == "DEBUG"
    assert len(mine[0]["span_id"]) == 16
    assert {"time", "logger"} <= mine[0].keys()


def test_json_log_lines_outside_a_trace_have_no_trace_id() -> None:
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "plain %s", ("line",), None)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "plain line"
    assert "trace_id" not in line
