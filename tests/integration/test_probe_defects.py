"""Defects a probe of the running service found on NATS (issue 22, part 2), each closed.

Numbers, nesting, headers and project boundaries that once slipped through: every case is
answered with the contract's error and changes nothing, and the rightful call still works.
"""

import json
import uuid

import asyncpg
import nats.aio.client
import pytest

from tests.support.calls import call, ok

NC = nats.aio.client.Client

NON_FINITE = [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1E+999", b"1" * 400 + b".5"]


async def new_agent(nc: NC, project: str | None = None) -> str:
    body = {"name": "probed", "type": "t", **({"project_id": project} if project else {})}
    return str((await ok(nc, "agent.create", body))["agent_id"])


@pytest.mark.parametrize("number", NON_FINITE, ids=[n.decode()[:12] for n in NON_FINITE])
async def test_non_finite_numbers_are_validation_errors_everywhere(
    nc: NC, db: asyncpg.Pool, number: bytes
) -> None:
    agent_id = await new_agent(nc)
    await ok(nc, "agent.state.update", {"agent_id": agent_id, "state": {"keep": 1}})
    cases = [
        ("agent.create", b'{"name": "n", "type": "t", "metadata": {"x": %s}}' % number),
        (
            "agent.state.update",
            b'{"agent_id": "%s", "state": {"keep": %s}}'
            % (
                agent_id.encode(),
                number,
            ),
        ),
        (
            "agent.update",
            b'{"agent_id": "%s", "configuration": {"x": [%s]}}'
            % (
                agent_id.encode(),
                number,
            ),
        ),
        ("agent.execute", b'{"agent_id": "%s", "input": {"x": %s}}' % (agent_id.encode(), number)),
    ]
    names_before = await db.fetchval("SELECT count(*) FROM agents WHERE name = 'n'")
    for subject, payload in cases:
        reply = await call(nc, subject, raw=payload)
        assert reply.error_code == "validation_error", (subject, reply.body)
        assert "finite" in reply.body["error"]["message"]
    assert await db.fetchval("SELECT count(*) FROM agents WHERE name = 'n'") == names_before
    state = await ok(nc, "agent.state.get", {"agent_id": agent_id})
    assert state["state"] == {"keep": 1}  # not merged to null, so not deleted


async def test_large_finite_numbers_and_words_like_nan_in_text_are_fine(nc: NC) -> None:
    agent = await ok(
        nc,
        "agent.create",
        {"name": "NaN Infinity e999", "type": "t", "metadata": {"big": 1e300, "tiny": 1e-300}},
    )
    assert agent["metadata"] == {"big": 1e300, "tiny": 1e-300}


@pytest.mark.parametrize("subject", ["agent-orchestrator.asyncapi", "$SRV.PING", "$SRV.INFO"])
async def test_subjects_without_a_body_answer_whatever_the_body(nc: NC, subject: str) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    for payload in (deep, b"\xff\xfe", b'{"a": NaN}'):
        msg = await nc.request(subject, payload, timeout=5)
        assert msg.data
        assert "Nats-Service-Error" not in (msg.headers or {})


async def test_a_deeply_nested_command_is_a_validation_error(nc: NC) -> None:
    deep = b'{"name": "a", "type": "t", "metadata": {"x": ' + b"[" * 5000 + b"]" * 5000 + b"}}"
    reply = await call(nc, "agent.create", raw=deep)
    assert reply.error_code == "validation_error"


@pytest.mark.parametrize("scope", ["", "p" * 201, "p" * 50_000])
async def test_a_project_scope_is_validated_like_a_project_id(
    nc: NC, db: asyncpg.Pool, scope: str
) -> None:
    name = f"scoped-{uuid.uuid4()}"
    reply = await call(
        nc, "agent.create", {"name": name, "type": "t"}, headers={"Project-Scope": scope}
    )
    assert reply.error_code == "validation_error", reply.body
    assert "Project-Scope" in reply.body["error"]["message"]
    assert await db.fetchval("SELECT count(*) FROM agents WHERE name = $1", name) == 0
    fine = await ok(
        nc, "agent.create", {"name": name, "type": "t"}, headers={"Project-Scope": "p" * 200}
    )
    assert fine["project_id"] == "p" * 200


def test_the_refusal_reads_the_body_once_only_when_it_may_hold_one() -> None:
    from agent_orchestrator.contracts.json_values import refused_value

    assert refused_value(json.dumps({"a": 1.5, "b": "text"}).encode()) is None
    assert refused_value(b'{"a": "NaN"}') is None
    assert refused_value(b'{"a": [1, {"b": NaN}]}') is not None
