"""Agent runtime state over NATS: concurrent merges, compare-and-set, history, limits."""

import asyncio
import json
import logging
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats.aio.client
import nats.errors
import pytest
from nats.js.errors import KeyNotFoundError

from agent_orchestrator.client import OrchestratorClient, RequestFailed
from agent_orchestrator.contracts.errors import ErrorCode
from agent_orchestrator.contracts.events import Event, EventKind
from agent_orchestrator.contracts.limits import MIB, STATE_ENVELOPE_BYTES
from agent_orchestrator.settings import Settings
from agent_orchestrator.storage.state import encode_state
from tests.support.agents import new_agent
from tests.support.calls import call, ok
from tests.support.own_service import own_service

NC = nats.aio.client.Client


async def test_state_starts_empty_and_merges_by_rfc_7396(nc: NC) -> None:
    agent_id = await new_agent(nc)
    empty = await ok(nc, "agent.state.get", {"agent_id": agent_id})
    assert (empty["state"], empty["revision"], empty["updated_at"]) == ({}, 0, None)
    first = await ok(
        nc,
        "agent.state.update",
        {"agent_id": agent_id, "state": {"goal": "read", "memory": {"a": 1, "b": 2}}},
    )
    second = await ok(
        nc,
        "agent.state.update",
        {"agent_id": agent_id, "state": {"memory": {"b": None, "c": 3}, "step": 1}},
    )
    assert second["state"] == {"goal": "read", "memory": {"a": 1, "c": 3}, "step": 1}
    assert second["revision"] > first["revision"] > 0
    replaced = await ok(
        nc, "agent.state.update", {"agent_id": agent_id, "state": {"only": True}, "mode": "replace"}
    )
    assert replaced["state"] == {"only": True}
    assert (await ok(nc, "agent.state.get", {"agent_id": agent_id}))["state"] == {"only": True}


async def test_fifty_concurrent_merges_of_distinct_keys_all_survive(nc: NC) -> None:
    agent_id = await new_agent(nc)
    replies = await asyncio.gather(
        *(
            ok(nc, "agent.state.update", {"agent_id": agent_id, "state": {f"k{i}": i}})
            for i in range(50)
        )
    )
    assert len({r["revision"] for r in replies}) == 50
    state = (await ok(nc, "agent.state.get", {"agent_id": agent_id}))["state"]
    assert state == {f"k{i}": i for i in range(50)}


async def test_a_stale_expected_revision_is_a_conflict_and_changes_nothing(nc: NC) -> None:
    agent_id = await new_agent(nc)
    first = await ok(
        nc, "agent.state.update", {"agent_id": agent_id, "state": {"x": 1}, "expected_revision": 0}
    )
    reply = await call(
        nc, "agent.state.update", {"agent_id": agent_id, "state": {"x": 2}, "expected_revision": 0}
    )
    assert reply.error_code == "conflict"
    assert reply.body["error"]["details"] == {"expected_revision": 0, "revision": first["revision"]}
    current = await ok(nc, "agent.state.get", {"agent_id": agent_id})
    assert (current["state"], current["revision"]) == ({"x": 1}, first["revision"])
    ok_cas = await ok(
        nc,
        "agent.state.update",
        {"agent_id": agent_id, "state": {"x": 3}, "expected_revision": first["revision"]},
    )
    assert ok_cas["state"] == {"x": 3}


async def test_history_lists_earlier_revisions_newest_first(nc: NC) -> None:
    agent_id = await new_agent(nc)
    for step in range(3):
        await ok(nc, "agent.state.update", {"agent_id": agent_id, "state": {"step": step}})
    history = await ok(nc, "agent.state.history", {"agent_id": agent_id, "limit": 2})
    assert [item["state"] for item in history["items"]] == [{"step": 2}, {"step": 1}]
    revisions = [item["revision"] for item in history["items"]]
    assert revisions == sorted(revisions, reverse=True)


async def test_history_of_a_state_never_written_is_empty(nc: NC) -> None:
    # Found by schemathesis: nats-py raises NoKeysError (not KeyNotFoundError) for the history
    # of a key never written, which became 503 "JetStream is unavailable".
    agent_id = await new_agent(nc)
    assert await ok(nc, "agent.state.history", {"agent_id": agent_id}) == {"items": []}


async def test_state_of_a_terminated_agent_is_read_only(nc: NC) -> None:
    agent_id = await new_agent(nc)
    await ok(nc, "agent.state.update", {"agent_id": agent_id, "state": {"kept": 1}})
    await ok(nc, "agent.terminate", {"agent_id": agent_id})
    reply = await call(nc, "agent.state.update", {"agent_id": agent_id, "state": {"kept": 2}})
    assert reply.error_code == "invalid_transition"
    assert (await ok(nc, "agent.state.get", {"agent_id": agent_id}))["state"] == {"kept": 1}


async def test_merges_past_the_state_limit_are_payload_too_large(
    nc: NC, settings: Settings
) -> None:
    agent_id = await new_agent(nc)
    chunk = "x" * MIB
    for i in range(settings.max_state_bytes // len(chunk) + 1):
        reply = await call(
            nc, "agent.state.update", {"agent_id": agent_id, "state": {f"c{i}": chunk}}
        )
        if reply.error_code is not None:
            break
    assert reply.error_code == "payload_too_large"
    assert "(AO_MAX_STATE_BYTES)" in reply.body["error"]["message"]
    assert reply.body["error"]["message"].startswith("state is ")
    state = (await ok(nc, "agent.state.get", {"agent_id": agent_id}))["state"]
    assert f"c{i}" not in state
    assert len(state) == i  # the ones before went in


async def test_a_one_mib_state_is_written_in_one_update(nc: NC) -> None:
    # Far above AO_MAX_REQUEST_BYTES (256 KiB): a state request may be as large as a state.
    agent_id = await new_agent(nc)
    big = {"notes": "n" * MIB, "step": 1}
    written = await ok(nc, "agent.state.update", {"agent_id": agent_id, "state": big})
    assert written["state"] == big
    replaced = await ok(
        nc,
        "agent.state.update",
        {"agent_id": agent_id, "state": {"notes": "r" * MIB}, "mode": "replace"},
    )
    assert replaced["revision"] > written["revision"]
    assert (await ok(nc, "agent.state.get", {"agent_id": agent_id}))["state"]["notes"] == "r" * MIB


async def test_a_state_request_over_the_state_limit_names_ao_max_state_bytes(
    nc: NC, settings: Settings
) -> None:
    agent_id = await new_agent(nc)
    state = {"blob": "x" * (settings.max_state_bytes + 100 * 1024)}
    reply = await call(nc, "agent.state.update", {"agent_id": agent_id, "state": state})
    assert reply.error_code == "payload_too_large"
    assert reply.status == 413
    error = reply.body["error"]
    assert "(AO_MAX_STATE_BYTES)" in error["message"], error
    assert error["details"]["setting"] == "AO_MAX_STATE_BYTES"
    assert error["details"]["limit"] == settings.max_state_bytes + STATE_ENVELOPE_BYTES
    assert (await ok(nc, "agent.state.get", {"agent_id": agent_id}))["revision"] == 0


async def test_a_state_just_over_the_limit_in_one_request_is_refused_by_the_state_check(
    nc: NC, settings: Settings
) -> None:
    # The request fits its envelope allowance; the stored state would not fit the limit.
    agent_id = await new_agent(nc)
    state = {"blob": "x" * settings.max_state_bytes}
    reply = await call(nc, "agent.state.update", {"agent_id": agent_id, "state": state})
    assert reply.error_code == "payload_too_large"
    assert reply.body["error"]["message"].startswith("state is ")
    assert reply.body["error"]["details"]["limit"] == settings.max_state_bytes
    assert "(AO_MAX_STATE_BYTES)" in reply.body["error"]["message"]


async def test_the_sdk_refuses_a_request_over_the_servers_max_payload(
    client: OrchestratorClient, nc: NC
) -> None:
    agent_id = await new_agent(nc)
    with pytest.raises(RequestFailed) as refused:
        await client.update_state(agent_id, {"blob": "x" * (nc.max_payload + 1)})
    assert refused.value.code is ErrorCode.PAYLOAD_TOO_LARGE
    assert "max_payload" in refused.value.message
    assert refused.value.details["limit"] == nc.max_payload


async def test_unknown_agents_have_no_state(nc: NC) -> None:
    unknown = "01a2137c-0000-7000-8000-000000000000"
    for subject, body in [
        ("agent.state.get", {}),
        ("agent.state.update", {"state": {}}),
        ("agent.state.history", {}),
    ]:
        reply = await call(nc, subject, {"agent_id": unknown, **body})
        assert reply.error_code == "not_found", subject


async def test_each_update_publishes_one_state_updated_event(nc: NC) -> None:
    agent_id = await new_agent(nc)
    revisions = [
        (await ok(nc, "agent.state.update", {"agent_id": agent_id, "state": {"n": n}}))["revision"]
        for n in range(3)
    ]
    sub = await nc.jetstream().subscribe(
        f"agent.event.{agent_id}.state_updated", ordered_consumer=True
    )
    seen: list[Any] = []
    for _ in range(3):
        seen.append(json.loads((await sub.next_msg(timeout=5)).data)["data"]["revision"])
    assert seen == revisions
    await sub.unsubscribe()


async def test_concurrent_writers_get_every_event_once_in_revision_order(
    nc: NC, settings: Settings
) -> None:
    """Eight agents, each written by its own caller without pause, many more revisions each
    than the bucket keeps (AO_STATE_HISTORY): the publisher keeps up, so no revision loses its
    event, none is doubled, and each agent's events come in revision order. (A single key
    written faster than the publisher reads loses the events of revisions the bucket dropped
    unread: see docs/fault-tests.md.)"""
    agents = [await new_agent(nc) for _ in range(8)]
    per_agent = settings.state_history * 4

    async def writer(agent_id: str) -> list[int]:
        return [
            int(
                (await ok(nc, "agent.state.update", {"agent_id": agent_id, "state": {f"k{n}": n}}))[
                    "revision"
                ]
            )
            for n in range(per_agent)
        ]

    written = await asyncio.gather(*(writer(agent_id) for agent_id in agents))
    for agent_id, revisions in zip(agents, written, strict=True):
        sub = await nc.jetstream().subscribe(
            f"agent.event.{agent_id}.state_updated", ordered_consumer=True
        )
        seen = [
            json.loads((await sub.next_msg(timeout=10)).data)["data"]["revision"]
            for _ in range(per_agent)
        ]
        await sub.unsubscribe()
        assert seen == revisions, f"events of {agent_id}: {seen} for revisions {revisions}"


async def test_deleting_an_agent_removes_its_state(nc: NC) -> None:
    agent_id = await new_agent(nc)
    await ok(nc, "agent.state.update", {"agent_id": agent_id, "state": {"secret": 1}})
    await ok(nc, "agent.delete", {"agent_id": agent_id})
    kv = await nc.jetstream().key_value("agent_state")
    try:
        entries = await kv.history(agent_id)
    except KeyNotFoundError:
        entries = []
    assert [e for e in entries if e.value] == []


async def test_a_written_revision_gets_its_event_even_if_the_writer_died_right_after(
    nc: NC,
) -> None:
    """The event travels with the revision: writing the KV value alone (as a service killed
    just after its write would have) still publishes it, once."""
    agent = await ok(nc, "agent.create", {"name": "orphan-write", "type": "t"})
    now = datetime.now(UTC)
    event = Event(
        event_id=uuid.uuid4(),
        type=EventKind.STATE_UPDATED,
        agent_id=agent["agent_id"],
        occurred_at=now,
        version=1,
        data={"mode": "merge", "actor": "crashed-writer"},
    )
    kv = await nc.jetstream().key_value("agent_state")
    revision = await kv.put(agent["agent_id"], encode_state({"k": 1}, now, event))
    sub = await nc.jetstream().subscribe(
        f"agent.event.{agent['agent_id']}.state_updated", ordered_consumer=True
    )
    published = json.loads((await sub.next_msg(timeout=5)).data)
    assert published["data"] == {"mode": "merge", "actor": "crashed-writer", "revision": revision}
    with pytest.raises(nats.errors.TimeoutError):
        await sub.next_msg(timeout=1)
    await sub.unsubscribe()


async def test_a_state_right_at_the_limit_is_written_with_compare_and_set(
    nc: NC, settings: Settings
) -> None:
    # A CAS write carries a header besides the value; JetStream counts both against the
    # bucket's message size, so a value just under the limit must still go in.
    agent_id = await new_agent(nc)
    first = await ok(nc, "agent.state.update", {"agent_id": agent_id, "state": {"blob": ""}})
    kv = await nc.jetstream().key_value("agent_state")
    overhead = len((await kv.get(agent_id)).value or b"")
    blob = "x" * (settings.max_state_bytes - overhead - 10)
    written = await ok(
        nc,
        "agent.state.update",
        {"agent_id": agent_id, "state": {"blob": blob}, "expected_revision": first["revision"]},
        timeout=10,
    )
    assert len((await kv.get(agent_id)).value or b"") > settings.max_state_bytes - 100
    assert written["revision"] > first["revision"]


async def test_the_service_warns_when_max_payload_is_below_the_state_limit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="agent_orchestrator.service")
    limits = {"max_state_bytes": 16 * MIB, "max_checkpoint_bytes": 32 * MIB}
    async with own_service(tmp_path, **limits) as own:
        assert own.nc.max_payload == 8 * MIB  # the embedded server's
    warnings = [r.getMessage() for r in caplog.records if r.name == "agent_orchestrator.service"]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(
        "the NATS server's max_payload is 8 MiB, below the 16 MiB + 64 KiB that "
        "AO_MAX_STATE_BYTES=16 MiB needs"
    )
    assert "(max_payload: 17MB) or lower AO_MAX_STATE_BYTES" in warnings[0]


async def test_the_history_of_large_states_is_cut_to_fit_one_reply(
    nc: NC, settings: Settings
) -> None:
    # Two revisions of 2/3 of the limit would not fit in one NATS message (there was no reply).
    agent_id = await new_agent(nc)
    size = settings.max_state_bytes * 2 // 3
    for c in "abc":
        body = {"agent_id": agent_id, "state": {"x": c * size}, "mode": "replace"}
        await ok(nc, "agent.state.update", body, timeout=10)
    history = await ok(nc, "agent.state.history", {"agent_id": agent_id, "limit": 3}, timeout=10)
    assert [item["state"]["x"][0] for item in history["items"]] == ["c"]


async def write_elsewhere(nc: NC, agent_id: str, state: dict[str, Any]) -> int:
    """Write a revision straight to the bucket, as another service instance would."""
    kv = await nc.jetstream().key_value("agent_state")
    current = await kv.get(agent_id)
    event = Event(
        event_id=uuid.uuid4(),
        type=EventKind.STATE_UPDATED,
        agent_id=agent_id,
        occurred_at=datetime.now(UTC),
        version=1,
        data={"mode": "merge", "actor": "another-instance"},
    )
    value = encode_state(state, datetime.now(UTC), event)
    return await kv.update(agent_id, value, last=current.revision)


async def test_a_merge_after_another_instances_write_keeps_that_write(nc: NC) -> None:
    """The service merges into the revision it wrote last without reading it again; when
    another instance wrote since, the compare-and-set fails and it merges into what is there."""
    agent_id = await new_agent(nc)
    await ok(nc, "agent.state.update", {"agent_id": agent_id, "state": {"mine": 1}})
    await write_elsewhere(nc, agent_id, {"mine": 1, "theirs": 2})
    merged = await ok(nc, "agent.state.update", {"agent_id": agent_id, "state": {"next": 3}})
    assert merged["state"] == {"mine": 1, "theirs": 2, "next": 3}
    assert (await ok(nc, "agent.state.get", {"agent_id": agent_id}))["state"] == merged["state"]


async def test_expected_revision_is_checked_against_the_bucket_not_the_last_write_here(
    nc: NC,
) -> None:
    agent_id = await new_agent(nc)
    mine = await ok(nc, "agent.state.update", {"agent_id": agent_id, "state": {"a": 1}})
    theirs = await write_elsewhere(nc, agent_id, {"a": 1, "b": 2})
    stale = await call(
        nc,
        "agent.state.update",
        {"agent_id": agent_id, "state": {"c": 3}, "expected_revision": mine["revision"]},
    )
    assert stale.error_code == "conflict"
    assert stale.body["error"]["details"] == {
        "expected_revision": mine["revision"],
        "revision": theirs,
    }
    fresh = await ok(
        nc,
        "agent.state.update",
        {"agent_id": agent_id, "state": {"c": 3}, "expected_revision": theirs},
    )
    assert fresh["state"] == {"a": 1, "b": 2, "c": 3}
