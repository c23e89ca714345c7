"""Templates over NATS: validation, gap-free versions under races, applying, deleting."""

import asyncio
import json
import uuid
from typing import Any

import asyncpg
import nats.aio.client

from tests.support.agents import initialized
from tests.support.calls import call, ok

NC = nats.aio.client.Client
SCHEMA = {
    "type": "object",
    "properties": {
        "model": {"type": "string"},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "limits": {"type": "object", "properties": {"tokens": {"type": "integer"}}},
    },
    "required": ["model"],
}


async def new_template(nc: NC, **fields: Any) -> Any:
    body = {
        "name": f"tpl-{uuid.uuid4()}",
        "agent_type": "llm",
        "config_schema": SCHEMA,
        "default_configuration": {"model": "small", "limits": {"tokens": 100}},
        "prompt_template": "You are {role}.",
        **fields,
    }
    return await ok(nc, "template.create", body)


async def count(db: asyncpg.Pool, table: str) -> int:
    return int(await db.fetchval(f"SELECT count(*) FROM {table}"))


async def test_invalid_schemas_defaults_and_configurations_store_nothing(
    nc: NC, db: asyncpg.Pool
) -> None:
    before = (await count(db, "templates"), await count(db, "agents"))
    bad_schema = await call(
        nc,
        "template.create",
        {"name": "x", "agent_type": "llm", "config_schema": {"type": "nope", "required": 1}},
    )
    assert bad_schema.error_code == "validation_error"
    assert {d["path"] for d in bad_schema.body["error"]["details"]} == {
        "config_schema.type",
        "config_schema.required",
    }
    bad_defaults = await call(
        nc,
        "template.create",
        {
            "name": "x",
            "agent_type": "llm",
            "config_schema": SCHEMA,
            "default_configuration": {"temperature": 9, "limits": {"tokens": "lots"}},
        },
    )
    assert bad_defaults.error_code == "validation_error"
    assert {d["path"] for d in bad_defaults.body["error"]["details"]} == {
        "default_configuration",
        "default_configuration.temperature",
        "default_configuration.limits.tokens",
    }
    assert (await count(db, "templates"), await count(db, "agents")) == before

    template = await new_template(nc)
    before = await count(db, "agents")
    bad_agent = await call(
        nc,
        "agent.create",
        {
            "name": "a",
            "template_id": template["template_id"],
            "configuration": {"temperature": -1, "model": 3},
        },
    )
    assert bad_agent.error_code == "validation_error"
    assert {d["path"] for d in bad_agent.body["error"]["details"]} == {
        "configuration.model",
        "configuration.temperature",
    }
    assert await count(db, "agents") == before


async def test_an_agent_from_a_template_gets_merged_configuration(nc: NC) -> None:
    template = await new_template(nc)
    agent = await ok(
        nc,
        "agent.create",
        {
            "name": "a",
            "template_id": template["template_id"],
            "configuration": {"temperature": 1.5, "limits": {"burst": 2}},
        },
    )
    assert agent["type"] == "llm"
    assert agent["configuration"] == {
        "model": "small",
        "temperature": 1.5,
        "limits": {"tokens": 100, "burst": 2},
    }
    assert agent["prompt_template"] == "You are {role}."
    assert (agent["template_id"], agent["template_version"]) == (template["template_id"], 1)
    listed = await ok(nc, "agent.list", {"template_id": template["template_id"]})
    assert [a["agent_id"] for a in listed["items"]] == [agent["agent_id"]]
    mismatch = await call(
        nc, "agent.create", {"name": "b", "type": "other", "template_id": template["template_id"]}
    )
    assert mismatch.error_code == "validation_error"


async def test_twenty_racing_updates_make_gap_free_versions(nc: NC) -> None:
    template = await new_template(nc)
    replies = await asyncio.gather(
        *(
            ok(
                nc,
                "template.update",
                {
                    "template_id": template["template_id"],
                    "description": f"rev {i}",
                    "changelog": f"change {i}",
                },
            )
            for i in range(20)
        )
    )
    assert sorted(r["version"] for r in replies) == list(range(2, 22))
    versions = await ok(nc, "template.versions", {"template_id": template["template_id"]})
    assert [v["version"] for v in versions["items"]] == list(range(1, 22))
    assert all(v["latest_version"] == 21 for v in versions["items"])
    same = await ok(
        nc,
        "template.update",
        {
            "template_id": template["template_id"],
            "description": versions["items"][-1]["description"],
        },
    )
    assert same["version"] == 21  # no change, no new version


async def test_an_agent_keeps_its_version_when_the_template_moves_on(nc: NC) -> None:
    template = await new_template(nc)
    tid = template["template_id"]
    agent = await ok(nc, "agent.create", {"name": "old", "template_id": tid})
    strict = {**SCHEMA, "properties": {**SCHEMA["properties"], "model": {"enum": ["large"]}}}
    await ok(
        nc,
        "template.update",
        {"template_id": tid, "default_configuration": {"model": "small", "limits": {}}},
    )
    v3 = await ok(
        nc,
        "template.update",
        {"template_id": tid, "config_schema": strict, "default_configuration": {"model": "large"}},
    )
    assert v3["version"] == 3
    again = await ok(nc, "agent.get", {"agent_id": agent["agent_id"]})
    assert again["template_version"] == 1
    # Updates are validated against the agent's own version (1), where "small" is fine.
    updated = await ok(
        nc, "agent.update", {"agent_id": agent["agent_id"], "configuration": {"temperature": 1}}
    )
    assert updated["configuration"] == {
        "model": "small",
        "limits": {"tokens": 100},
        "temperature": 1,
    }
    refused = await call(
        nc, "agent.update", {"agent_id": agent["agent_id"], "configuration": {"temperature": 7}}
    )
    assert refused.error_code == "validation_error"
    v1 = await ok(nc, "template.get", {"template_id": tid, "version": 1})
    assert v1["default_configuration"] == {"model": "small", "limits": {"tokens": 100}}
    pinned = await ok(
        nc, "agent.create", {"name": "pinned", "template_id": tid, "template_version": 1}
    )
    assert pinned["template_version"] == 1
    latest = await call(nc, "agent.create", {"name": "new", "template_id": tid})
    assert latest.body["template_version"] == 3


async def test_a_deleted_template_makes_no_new_agents_but_old_ones_work(nc: NC) -> None:
    template = await new_template(nc)
    tid = template["template_id"]
    agent = await ok(nc, "agent.create", {"name": "before", "template_id": tid})
    assert await ok(nc, "template.delete", {"template_id": tid}) == {
        "template_id": tid,
        "deleted": True,
    }
    refused = await call(nc, "agent.create", {"name": "after", "template_id": tid})
    assert refused.error_code == "validation_error"
    assert "deleted" in refused.body["error"]["message"]
    assert (await ok(nc, "template.get", {"template_id": tid}))["deleted_at"] is not None
    listed = await ok(nc, "template.list", {"agent_type": "llm", "limit": 500})
    assert tid not in [t["template_id"] for t in listed["items"]]
    await ok(nc, "agent.initialize", {"agent_id": agent["agent_id"]})
    # The name is free again for a new live template.
    await new_template(nc, name=template["name"])


async def test_names_are_unique_per_agent_type_among_live_templates(nc: NC) -> None:
    template = await new_template(nc)
    dup = await call(nc, "template.create", {"name": template["name"], "agent_type": "llm"})
    assert dup.error_code == "conflict"
    other_type = await ok(nc, "template.create", {"name": template["name"], "agent_type": "tool"})
    assert other_type["agent_type"] == "tool"


async def test_template_list_filters_and_pages(nc: NC) -> None:
    kind = f"kind-{uuid.uuid4()}"
    made = [
        await new_template(
            nc, agent_type=kind, config_schema={"type": "object"}, default_configuration={}
        )
        for _ in range(3)
    ]
    first = await ok(nc, "template.list", {"agent_type": kind, "limit": 2})
    rest = await ok(
        nc, "template.list", {"agent_type": kind, "limit": 2, "cursor": first["next_cursor"]}
    )
    ids = [t["template_id"] for t in first["items"] + rest["items"]]
    assert ids == [t["template_id"] for t in reversed(made)]
    assert rest["next_cursor"] is None


async def test_template_changes_are_published_as_events(nc: NC) -> None:
    template = await new_template(nc)
    tid = template["template_id"]
    await ok(nc, "template.update", {"template_id": tid, "description": "v2"})
    await ok(nc, "template.delete", {"template_id": tid})
    sub = await nc.jetstream().subscribe(f"template.event.{tid}.>", ordered_consumer=True)
    seen = []
    for _ in range(3):
        msg = await sub.next_msg(timeout=5)
        event = json.loads(msg.data)
        assert msg.headers is not None
        assert msg.headers["Nats-Msg-Id"] == event["event_id"]
        seen.append((event["type"], event["version"]))
    assert seen == [("created", 1), ("updated", 2), ("deleted", 2)]
    await sub.unsubscribe()


async def test_unknown_templates_and_versions_are_not_found(nc: NC) -> None:
    template = await new_template(nc)
    for subject, body in [
        ("template.get", {"template_id": str(uuid.uuid4())}),
        ("template.get", {"template_id": template["template_id"], "version": 9}),
        ("template.update", {"template_id": str(uuid.uuid4()), "name": "x"}),
        ("template.versions", {"template_id": str(uuid.uuid4())}),
        ("template.delete", {"template_id": str(uuid.uuid4())}),
        ("agent.create", {"name": "a", "template_id": str(uuid.uuid4())}),
    ]:
        reply = await call(nc, subject, body)
        assert reply.error_code == "not_found", (subject, reply.body)


async def test_initialization_checks_the_configuration_against_the_template(
    nc: NC, db: asyncpg.Pool
) -> None:
    template = await new_template(nc)
    good = await ok(nc, "agent.create", {"name": "good", "template_id": template["template_id"]})
    bad = await ok(nc, "agent.create", {"name": "drifted", "template_id": template["template_id"]})
    # A configuration changed behind the service's back no longer fits the schema.
    await db.execute(
        "UPDATE agents SET configuration = '{\"model\": 42}' WHERE agent_id = $1",
        uuid.UUID(bad["agent_id"]),
    )
    for agent in (good, bad):
        await ok(nc, "agent.initialize", {"agent_id": agent["agent_id"]})
    states = [await initialized(nc, a["agent_id"], within=15) for a in (good, bad)]
    assert states[0]["status"] == "READY"
    assert states[1]["status"] == "ERROR"
    assert "configuration.model" in states[1]["status_reason"]
