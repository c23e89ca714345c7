"""Defects a probe of the running service found on NATS (issue 22, part 2), each closed.

Numbers, nesting, headers and project boundaries that once slipped through: every case is
answered with the contract's error and changes nothing, and the rightful call still works.
"""

import json
import uuid

import asyncpg
import nats.aio.client
import pytest

from agent_orchestrator.client import OrchestratorClient
from agent_orchestrator.contracts.agents import CreateAgent
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


def scope(project: str) -> dict[str, str]:
    return {"Project-Scope": project}


async def started(client: OrchestratorClient, project: str) -> str:
    made = await client.create_agent(CreateAgent(name="a", type="t", project_id=project))
    await client.start_agent(made.agent_id)
    return str(made.agent_id)


async def test_templates_belong_to_a_project_and_global_ones_to_operators(nc: NC) -> None:
    mine, theirs = f"mine-{uuid.uuid4()}", f"theirs-{uuid.uuid4()}"
    body = {"name": f"t-{uuid.uuid4()}", "agent_type": "llm"}
    own = await ok(nc, "template.create", body, headers=scope(mine))
    assert own["project_id"] == mine
    template_id = own["template_id"]
    unknown = {"template_id": str(uuid.uuid4())}
    for subject, extra in [
        ("template.get", {}),
        ("template.versions", {}),
        ("template.update", {"changelog": "theirs now"}),
        ("template.delete", {}),
    ]:
        reply = await call(
            nc, subject, {"template_id": template_id, **extra}, headers=scope(theirs)
        )
        assert reply.error_code == "not_found", (subject, reply.body)
        as_unknown = await call(nc, subject, {**unknown, **extra}, headers=scope(theirs))
        assert reply.body["error"]["message"].replace(template_id, "X") == as_unknown.body["error"][
            "message"
        ].replace(unknown["template_id"], "X")
    made = await call(
        nc,
        "agent.create",
        {"name": "a", "type": "llm", "template_id": template_id},
        headers=scope(theirs),
    )
    assert made.error_code == "not_found"
    listed = await ok(
        nc, "template.list", {"agent_type": "llm", "limit": 500}, headers=scope(theirs)
    )
    assert template_id not in {t["template_id"] for t in listed["items"]}
    # The owner may change and use it.
    await ok(
        nc, "template.update", {"template_id": template_id, "changelog": "v2"}, headers=scope(mine)
    )
    await ok(
        nc,
        "agent.create",
        {"name": "a", "type": "llm", "template_id": template_id},
        headers=scope(mine),
    )

    shared = await ok(nc, "template.create", {"name": f"g-{uuid.uuid4()}", "agent_type": "llm"})
    assert shared["project_id"] is None
    gid = shared["template_id"]
    assert (await ok(nc, "template.get", {"template_id": gid}, headers=scope(theirs)))[
        "version"
    ] == 1
    for subject, extra in [("template.update", {"changelog": "mine"}), ("template.delete", {})]:
        refused = await call(nc, subject, {"template_id": gid, **extra}, headers=scope(theirs))
        assert refused.error_code == "forbidden", refused.body
    assert (await ok(nc, "template.get", {"template_id": gid}))["deleted_at"] is None
    await ok(nc, "template.update", {"template_id": gid, "changelog": "by an operator"})
    # The same name in two projects: no leak, no block.
    again = await ok(nc, "template.create", body, headers=scope(theirs))
    assert again["project_id"] == theirs


async def test_idempotency_keys_are_a_namespace_per_project(nc: NC) -> None:
    a, b = f"a-{uuid.uuid4()}", f"b-{uuid.uuid4()}"

    async def create(project: str, key: str, name: str) -> dict[str, str]:
        headers = {**scope(project), "Idempotency-Key": key}
        made: dict[str, str] = await ok(
            nc, "agent.create", {"name": name, "type": "t"}, headers=headers
        )
        return made

    key = f"key-{uuid.uuid4()}"
    first = await create(a, key, "x")
    # The same key and body from another project: its own agent, not project a's reply.
    same = await create(b, key, "x")
    assert same["project_id"] == b
    assert same["agent_id"] != first["agent_id"]
    assert (await create(a, key, "x"))["agent_id"] == first["agent_id"]  # a's repeat
    # Another body under a key another project used: no 409 that says the key exists.
    other_key = f"key-{uuid.uuid4()}"
    await create(a, other_key, "x")
    assert (await create(b, other_key, "y"))["project_id"] == b


async def test_reply_to_another_projects_message_is_not_found_like_an_unknown_id(
    nc: NC, client: OrchestratorClient
) -> None:
    a1, a2 = await started(client, f"a-{uuid.uuid4()}"), None
    project_a = (await client.get_agent(a1)).project_id
    assert project_a is not None
    a2 = await started(client, project_a)
    message = await client.send(a1, a2, content="for a2 only")
    project_b = f"b-{uuid.uuid4()}"
    b1, b2 = await started(client, project_b), await started(client, project_b)
    unknown = str(uuid.uuid4())
    replies = []
    for reply_to in (str(message.communication_id), unknown):
        replies.append(
            await call(
                nc,
                "agent.send",
                {"from_agent_id": b1, "to_agent_id": b2, "reply_to": reply_to},
            )
        )
    theirs, nowhere = replies
    assert (theirs.error_code, theirs.status) == ("not_found", 404)
    assert (nowhere.error_code, nowhere.status) == ("not_found", 404)
    assert theirs.body["error"]["message"].replace(str(message.communication_id), "X") == (
        nowhere.body["error"]["message"].replace(unknown, "X")
    )
