"""schemathesis against the bridge's own OpenAPI document: every operation, every phase.

The bridge is served by uvicorn on the session's event loop with the session's NATS connection
(like the SSE tests), in front of the real service. schemathesis's engine, the one behind
``st run``, runs in a worker thread so that the loop keeps serving: its coverage, fuzzing and
stateful phases (the examples phase has nothing to run: the document has no examples), with
links between operations inferred from the document and from ``Location`` headers. A fixed
seed, derandomized generation and a bounded number of cases per operation keep the run
repeatable and around half a minute.

Every built-in check runs, but for the exclusions below, each with its reason: no 5xx
(not_a_server_error), responses as documented (status_code, content_type, response_headers and
response_schema conformance), schema-invalid requests refused (negative_data_rejection,
missing_required_header), undocumented methods refused (unsupported_method,
allow_header_conformance), and, in stateful scenarios, use_after_free and
ensure_resource_availability. (ignored_auth and object_level_authorization have nothing to do:
authentication is off here.)

A failure is reported with schemathesis's own reproduction (a curl command per step).
"""

import asyncio
from typing import Any

import nats.aio.client
import schemathesis
import schemathesis.engine
from schemathesis.engine import events

NC = nats.aio.client.Client
MAX_REPORT_CHARS = 3000
# The A2A bindings of an agent (its card and the catalog are REST routes like the others).
A2A_BINDINGS = (
    r"^/a2a/agents/\{agent_id\}"  # the JSON-RPC binding
    r"(/(message|tasks|extendedAgentCard).*)?$"  # the HTTP+JSON binding
)  # generated bodies can be megabytes

# Longer than the bridge's own NATS timeout (5 s), so that a slow service shows as a 504.
REQUEST_TIMEOUT_S = 15.0

CONFIG: dict[str, Any] = {
    "seed": 20250601,
    "suppress-health-check": ["all"],
    "request-timeout": REQUEST_TIMEOUT_S,
    # Everything schemathesis writes stays in memory: no .schemathesis/ or .hypothesis/ here.
    "cache": {"enabled": False},
    "generation": {
        "mode": "all",  # schema-valid and schema-invalid requests
        "max-examples": 25,  # per operation, in the fuzzing phase
        "deterministic": True,  # derandomized: the same cases on every run
        "database": "none",
        "no-shrink": True,  # report the failing case as found: shrinking calls the service
    },
    "phases": {
        # Scenarios of up to 10 linked calls (create an agent, then use its id, ...).
        "stateful": {"max-steps": 10, "generation": {"max-examples": 50}},
    },
    "checks": {
        # Schema-valid requests that the service rejects by rules OpenAPI cannot express: an
        # opaque cursor it did not issue, NUL characters, If-Match syntax, a config_schema that
        # is not a JSON Schema, "exactly one of interval_s/at", "type is required without a
        # template", ids that name nothing (404, which schemathesis accepts anyway), ...
        # negative_data_rejection (schema-invalid requests must be rejected) stays on.
        "positive_data_acceptance": {"enabled": False},
    },
    "operations": [
        {
            # Deleted (retired) templates stay readable by design: agents made from them keep
            # pointing at their version.
            "include-path-regex": "^/api/templates/",
            "checks": {"use_after_free": {"enabled": False}},
        },
        {
            # DELETE /api/agents/{agent_id}/checkpoint deletes the agent's checkpoints; the list
            # of them stays, empty, by design (schemathesis reads the pair as one resource).
            "include-path": "/api/agents/{agent_id}/checkpoints",
            "checks": {"use_after_free": {"enabled": False}},
        },
        {
            # An event stream does not end: read one event, or what comes in 0.25 s.
            "include-path": "/api/events",
            "request-timeout": 0.25,
            "max-stream-events": 1,
            "generation": {"max-examples": 5},
        },
    ],
}


def _failures(event: events.EngineEvent) -> list[str]:
    """What one engine event says went wrong, each with how to reproduce it."""
    if isinstance(event, events.ScenarioFinished):
        found = []
        for checks in event.recorder.checks.values():
            for check in checks:
                if check.failure_info is None:
                    continue
                failure = check.failure_info.failure
                steps = check.failure_info.steps or []
                curl = "\n".join(step.curl for step in steps) or check.failure_info.code_sample
                report = (
                    f"[{event.phase.value}] {event.recorder.label}: {check.name}: "
                    f"{failure.title}\n{failure.message}\n{curl}"
                )
                found.append(report[:MAX_REPORT_CHARS])
        return found
    if isinstance(event, events.NonFatalError):
        return [f"[{event.phase}] {event.label}: error: {event.info.format()}"[:MAX_REPORT_CHARS]]
    if isinstance(event, events.FatalError):
        return [f"fatal: {event.exception!r}"]
    if isinstance(event, events.EngineFinished):
        stopped = []
        if event.stop_reason is not schemathesis.engine.StopReason.COMPLETED:
            stopped.append(f"the run stopped early: {event.stop_reason.value}")
        return stopped + [f"{f.title}\n{f.message}" for f in event.failures]
    return []


def run_schemathesis(base_url: str) -> tuple[list[str], set[str]]:
    """Run every phase against ``base_url``: the failures, and the operations not reached."""
    config = schemathesis.Config.from_dict(CONFIG)
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", config=config)
    # The A2A bindings speak A2A's protocol and error model (JSON-RPC errors, google.rpc
    # statuses), not this document's problem+json: the a2a-sdk client tests (test_a2a.py) and
    # the A2A TCK check them. Their cards and the catalog stay in.
    schema = schema.exclude(path_regex=A2A_BINDINGS)
    untested = {result.ok().label for result in schema.get_all_operations()}
    failures: list[str] = []
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            untested -= {node.value.operation.label for node in event.recorder.cases.values()}
        failures.extend(_failures(event))
    return failures, untested


async def test_schemathesis_finds_no_server_error_and_no_response_off_the_document(
    bridge_url: str,
) -> None:
    failures, untested = await asyncio.to_thread(run_schemathesis, bridge_url)
    assert not failures, f"{len(failures)} failures:\n\n" + "\n\n".join(failures)
    assert not untested, "operations schemathesis did not call"
