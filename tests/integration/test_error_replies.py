"""Every row of the error table of docs/errors.md that applies to agents, sent over NATS.

Each case checks the reply's body and ``Nats-Service-Error(-Code)`` headers and that nothing
was stored or changed.
"""

import json
import uuid
from typing import Any

import asyncpg
import nats.aio.client
import pytest

from agent_orchestrator.settings import Settings
from tests.support.calls import Reply, call, ok

NC = nats.aio.client.Client


def assert_error(reply: Reply, code: str, status: int) -> None:
    assert reply.error_code == code, reply.body
    assert reply.status == status
    assert (
        reply.headers["Nats-Service-Error"]
        == " ".join(reply.body["error"]["message"].split())[:500]
    )
    assert set(reply.body) == {"error"}


async def agent_count(db: asyncpg.Pool) -> int:
    return int(await db.fetchval("SELECT count(*) FROM agents"))


async def outbox_count(db: asyncpg.Pool, agent_id: str = "%") -> int:
    """Outbox rows of one agent, or creation events of all (background jobs add others)."""
    pattern = "agent.event.%.created" if agent_id == "%" else f"agent.event.{agent_id}.%"
    return int(await db.fetchval("SELECT count(*) FROM outbox WHERE subject LIKE $1", pattern))


BAD_CREATES: list[tuple[str, bytes]] = [
    ("not json", b"{name: nope"),
    ("not utf-8", b"\xff\xfe\xfd"),
    ("json but not an object", b"[1, 2, 3]"),
    ("a string", b'"agent"'),
    ("missing required fields", b"{}"),
    ("wrong type", json.dumps({"name": 5, "type": "echo"}).encode()),
    ("unknown field", json.dumps({"name": "a", "type": "echo", "colour": "red"}).encode()),
    (
        "configuration not an object",
        json.dumps({"name": "a", "type": "e", "configuration": 3}).encode(),
    ),
    ("empty name", json.dumps({"name": "", "type": "echo"}).encode()),
    ("name too long", json.dumps({"name": "x" * 201, "type": "echo"}).encode()),
    ("bad template id", json.dumps({"name": "a", "type": "e", "template_id": "nope"}).encode()),
]


@pytest.mark.parametrize(("case", "payload"), BAD_CREATES, ids=[c for c, _ in BAD_CREATES])
async def test_bad_input_is_a_validation_error_and_stores_nothing(
    nc: NC, db: asyncpg.Pool, case: str, payload: bytes
) -> None:
    before = (await agent_count(db), await outbox_count(db))
    reply = await call(nc, "agent.create", raw=payload)
    assert_error(reply, "validation_error", 400)
    assert (await agent_count(db), await outbox_count(db)) == before


async def test_validation_errors_list_every_failing_path(nc: NC) -> None:
    reply = await call(nc, "agent.create", {"name": 1, "type": 2, "extra": 3})
    assert_error(reply, "validation_error", 400)
    paths = {d["path"] for d in reply.body["error"]["details"]}
    assert paths == {"name", "type", "extra"}


async def test_a_bad_cursor_is_a_validation_error(nc: NC) -> None:
    reply = await call(nc, "agent.list", {"cursor": "definitely-not-ours"})
    assert_error(reply, "validation_error", 400)


@pytest.mark.parametrize(
    ("subject", "extra"),
    [
        ("agent.get", {}),
        ("agent.update", {"name": "x"}),
        ("agent.delete", {}),
        ("agent.history", {}),
        ("agent.initialize", {}),
        ("agent.activate", {}),
        ("agent.pause", {}),
        ("agent.terminate", {}),
        ("agent.status", {"status": "READY"}),
    ],
)
async def test_an_unknown_agent_is_not_found(
    nc: NC, db: asyncpg.Pool, subject: str, extra: dict[str, Any]
) -> None:
    agent_id = str(uuid.uuid4())
    reply = await call(nc, subject, {"agent_id": agent_id, **extra})
    assert_error(reply, "not_found", 404)
    assert await outbox_count(db, agent_id) == 0


async def test_a_stale_expected_version_is_a_conflict_and_changes_nothing(nc: NC) -> None:
    agent = await ok(nc, "agent.create", {"name": "a", "type": "echo"})
    reply = await call(
        nc, "agent.update", {"agent_id": agent["agent_id"], "name": "b", "expected_version": 7}
    )
    assert_error(reply, "conflict", 409)
    assert reply.body["error"]["details"] == {"expected_version": 7, "version": 1}
    assert await ok(nc, "agent.get", {"agent_id": agent["agent_id"]}) == agent


async def test_an_illegal_transition_is_refused_and_changes_nothing(
    nc: NC, db: asyncpg.Pool
) -> None:
    agent = await ok(nc, "agent.create", {"name": "a", "type": "echo"})
    before = await outbox_count(db, agent["agent_id"])
    reply = await call(nc, "agent.pause", {"agent_id": agent["agent_id"]})
    assert_error(reply, "invalid_transition", 409)
    assert reply.body["error"]["details"]["allowed"] == ["INITIALIZING", "TERMINATED"]
    assert await ok(nc, "agent.get", {"agent_id": agent["agent_id"]}) == agent
    assert await outbox_count(db, agent["agent_id"]) == before


async def test_a_request_over_the_size_limit_is_payload_too_large(
    nc: NC, db: asyncpg.Pool, settings: Settings
) -> None:
    before = await agent_count(db)
    big = {"name": "a", "type": "echo", "metadata": {"blob": "x" * settings.max_request_bytes}}
    reply = await call(nc, "agent.create", big)
    assert_error(reply, "payload_too_large", 413)
    assert "(AO_MAX_REQUEST_BYTES)" in reply.body["error"]["message"]
    assert reply.body["error"]["details"]["setting"] == "AO_MAX_REQUEST_BYTES"
    assert reply.body["error"]["details"]["limit"] == settings.max_request_bytes
    assert await agent_count(db) == before


async def test_an_idempotency_key_reused_for_another_body_is_a_conflict(
    nc: NC, db: asyncpg.Pool
) -> None:
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = await ok(nc, "agent.create", {"name": "one", "type": "echo"}, headers=key)
    before = await agent_count(db)
    reply = await call(nc, "agent.create", {"name": "two", "type": "echo"}, headers=key)
    assert_error(reply, "conflict", 409)
    assert await agent_count(db) == before
    assert (await ok(nc, "agent.create", {"name": "one", "type": "echo"}, headers=key)) == first


@pytest.mark.parametrize(
    ("subject", "body"),
    [
        (
            "agent.create",
            {"name": "a", "template_id": str(uuid.uuid4()), "template_version": 2**70},
        ),
        ("agent.update", {"agent_id": str(uuid.uuid4()), "name": "b", "expected_version": 2**40}),
        ("template.get", {"template_id": str(uuid.uuid4()), "version": 2**33}),
        (
            "agent.state.update",
            {"agent_id": str(uuid.uuid4()), "state": {}, "expected_revision": 2**64},
        ),
    ],
)
async def test_numbers_beyond_what_is_stored_are_validation_errors(
    nc: NC, subject: str, body: dict[str, Any]
) -> None:
    assert_error(await call(nc, subject, body), "validation_error", 400)


@pytest.mark.parametrize(
    ("subject", "body", "path"),
    [
        ("agent.checkpoint.create", {"recoverable": 1}, "recoverable"),
        ("agent.checkpoint.schedule", {"interval_s": True}, "interval_s"),
        ("agent.checkpoint.schedule", {"at": 4102444800}, "at"),
        ("agent.update", {"name": "b", "expected_version": "1"}, "expected_version"),
        ("agent.state.update", {"state": {}, "expected_revision": False}, "expected_revision"),
        ("agent.send", {"broadcast": "yes"}, "broadcast"),
    ],
)
async def test_body_scalars_are_not_converted_from_other_json_types(
    nc: NC, subject: str, body: dict[str, Any], path: str
) -> None:
    # The contract's JSON Schema says integer, boolean or date-time; pydantic's lax mode would
    # have read true, 1, "yes" or a number as one.
    agent = await ok(nc, "agent.create", {"name": "strict", "type": "echo"})
    id_field = "from_agent_id" if subject == "agent.send" else "agent_id"
    reply = await call(nc, subject, {id_field: agent["agent_id"], **body})
    assert_error(reply, "validation_error", 400)
    assert path in {d["path"] for d in reply.body["error"]["details"]}


async def test_a_forged_history_cursor_with_a_huge_version_is_a_validation_error(nc: NC) -> None:
    from agent_orchestrator.domain.cursor import encode_cursor

    agent = await ok(nc, "agent.create", {"name": "a", "type": "echo"})
    cursor = encode_cursor("after", 2**40)
    reply = await call(nc, "agent.history", {"agent_id": agent["agent_id"], "cursor": cursor})
    assert_error(reply, "validation_error", 400)


@pytest.mark.parametrize(
    "payload",
    [
        b'{"name": "a\\u0000b", "type": "echo"}',
        b'{"name": "a", "type": "echo", "metadata": {"k\\u0000": 1}}',
        b'{"name": "a", "type": "echo", "configuration": {"x": ["\\u0000"]}}',
    ],
)
async def test_nul_characters_are_validation_errors_and_store_nothing(
    nc: NC, db: asyncpg.Pool, payload: bytes
) -> None:
    before = await agent_count(db)
    assert_error(await call(nc, "agent.create", raw=payload), "validation_error", 400)
    assert await agent_count(db) == before


async def test_a_literal_backslash_u_in_text_is_fine(nc: NC) -> None:
    agent = await ok(nc, "agent.create", {"name": "\\u0000 is an escape", "type": "echo"})
    assert agent["name"] == "\\u0000 is an escape"
