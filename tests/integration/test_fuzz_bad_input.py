"""Random bytes, random JSON and near-valid bodies on every command subject: each request gets
a contract reply (never a timeout), and rejected requests change nothing."""

import json
import uuid
from typing import Any

import asyncpg
import nats.aio.client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_orchestrator.contracts.errors import ErrorCode
from agent_orchestrator.service import Service
from tests.support.calls import call

NC = nats.aio.client.Client
CODES = {str(c) for c in ErrorCode}
# Tables no background job writes to, so a count that moved was moved by the request.
TABLES = ("agents", "templates", "template_versions", "communications", "tasks")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=15,
)
FIELD_NAMES = [
    "agent_id",
    "name",
    "type",
    "status",
    "state",
    "mode",
    "template_id",
    "version",
    "cursor",
    "limit",
    "checkpoint_id",
    "interval_s",
    "keep_last",
    "expected_version",
    "configuration",
    "from_agent_id",
    "to_agent_id",
    "broadcast",
    "content",
    "communication_id",
    "direction",
    "ttl_s",
    "task_id",
    "attempt",
    "progress",
    "input",
    "result",
    "error",
]
near_valid = st.dictionaries(st.sampled_from(FIELD_NAMES), json_values, max_size=5)
bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    near_valid.map(lambda v: json.dumps(v).encode()),
)


async def snapshot(db: asyncpg.Pool) -> dict[str, int]:
    return {t: int(await db.fetchval(f"SELECT count(*) FROM {t}")) for t in TABLES}


def is_contract_reply(body: Any) -> bool:
    if isinstance(body, dict) and set(body) == {"error"}:
        error = body["error"]
        return error.get("code") in CODES and isinstance(error.get("message"), str)
    return isinstance(body, dict)  # a success reply is the resource itself


async def test_every_subject_answers_garbage_with_a_contract_error(
    nc: NC, service: Service, db: asyncpg.Pool
) -> None:
    subjects = [spec.subject for spec in service.commands]
    seen_errors = 0

    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(subject=st.sampled_from(subjects), payload=bodies)
    def one(subject: str, payload: bytes) -> None:
        payloads.append((subject, payload))

    payloads: list[tuple[str, bytes]] = []
    one()
    for subject, payload in payloads:
        before = await snapshot(db)
        reply = await call(nc, subject, raw=payload, timeout=5)
        assert is_contract_reply(reply.body), (subject, payload, reply.body)
        if reply.error_code is not None:
            seen_errors += 1
            assert reply.error_code != "internal", (subject, payload, reply.body)
            assert "Nats-Service-Error-Code" in reply.headers
            assert await snapshot(db) == before, (subject, payload, reply.body)
    assert seen_errors > len(payloads) // 2


async def test_unknown_ids_in_every_subject_are_not_found_and_change_nothing(
    nc: NC, service: Service, db: asyncpg.Pool
) -> None:
    before = await snapshot(db)
    for spec in service.commands:
        fields = spec.request.model_fields
        ids = [
            n
            for n in ("agent_id", "template_id", "communication_id", "from_agent_id", "task_id")
            if n in fields and fields[n].is_required()
        ]
        if not ids:
            continue  # create and list take no id to look up
        body: dict[str, Any] = {name: str(uuid.uuid4()) for name in ids}
        if "to_agent_id" in fields:
            body["to_agent_id"] = str(uuid.uuid4())
        required = (
            ("state", {}),
            ("status", "READY"),
            ("attempt", 1),
            ("error", "x"),
            ("prompt", "?"),
            ("input", "x"),
            ("url", "https://hook.example/a2a"),
            ("config_id", "default"),
        )
        for name, value in required:
            if name in fields and fields[name].is_required():
                body[name] = value
        if "interval_s" in fields:
            body["interval_s"] = 1
        reply = await call(nc, spec.subject, body)
        assert reply.error_code == "not_found", (spec.subject, reply.body)
    assert await snapshot(db) == before
