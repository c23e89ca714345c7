"""Tracing is configured by the standard OTEL_* variables, and is off unless they ask for it."""

import pytest
from opentelemetry import context
from opentelemetry.sdk.resources import SERVICE_NAME
from opentelemetry.sdk.trace import TracerProvider

from agent_orchestrator.observability import child_span, current_trace_id, tracer_provider_from_env
from agent_orchestrator.observability.tracing import get_tracer, shutdown, traced_context

OTEL_VARIABLES = (
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_tracing_is_off_without_otel_variables() -> None:
    assert tracer_provider_from_env("svc") is None


@pytest.mark.parametrize("exporter", ["none", " none "])
def test_exporter_none_keeps_tracing_off(monkeypatch: pytest.MonkeyPatch, exporter: str) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", exporter)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    assert tracer_provider_from_env("svc") is None


def test_sdk_disabled_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert tracer_provider_from_env("svc") is None


def test_console_exporter_names_the_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    provider = tracer_provider_from_env("svc")
    assert isinstance(provider, TracerProvider)
    assert provider.resource.attributes[SERVICE_NAME] == "svc"
    shutdown(provider)


def test_otel_service_name_overrides_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "orchestrator-eu")
    provider = tracer_provider_from_env("svc")
    assert isinstance(provider, TracerProvider)
    assert provider.resource.attributes[SERVICE_NAME] == "orchestrator-eu"
    shutdown(provider)


def test_an_unknown_exporter_is_refused_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    with pytest.raises(ValueError, match="zipkin"):
        tracer_provider_from_env("svc")


def test_child_spans_exist_only_inside_a_traced_context() -> None:
    assert current_trace_id() is None
    with child_span("untraced") as nothing:
        assert nothing is None
        assert current_trace_id() is None
    provider = TracerProvider()
    tracer = get_tracer(provider)
    root = tracer.start_span("root")
    token = context.attach(traced_context(tracer, root))
    try:
        with child_span("child") as span:
            assert span.parent.span_id == root.get_span_context().span_id
            assert current_trace_id() == format(root.get_span_context().trace_id, "032x")
    finally:
        context.detach(token)
        root.end()
