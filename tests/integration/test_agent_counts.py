"""agent.count (GET /api/agent-counts) and agent.list's name filter."""

import httpx
import nats.aio.client

from tests.support.agents import unique
from tests.support.calls import call, ok

NC = nats.aio.client.Client


async def test_counts_by_status_and_template_version_follow_the_filters(
    nc: NC, http: httpx.AsyncClient
) -> None:
    kind = unique("count")
    template = await ok(nc, "template.create", {"name": f"t-{kind}", "agent_type": kind})
    template_id = template["template_id"]
    await ok(nc, "template.update", {"template_id": template_id, "description": "v2"})
    made = [
        await ok(
            nc,
            "agent.create",
            {"name": name, "type": kind, "template_id": template_id, "template_version": version},
        )
        for name, version in (("Scout", 1), ("scout-2", 2), ("builder", 2))
    ]
    await ok(nc, "agent.terminate", {"agent_id": made[2]["agent_id"]})

    counts = await ok(nc, "agent.count", {"type": kind})
    assert counts == {
        "total": 3,
        "by_status": {"CREATED": 2, "TERMINATED": 1},
        "by_template_version": {},
    }
    by_template = await ok(nc, "agent.count", {"template_id": template_id})
    assert by_template["by_template_version"] == {"1": 1, "2": 2}
    scouts = await ok(nc, "agent.count", {"type": kind, "name": "SCOUT"})
    assert (scouts["total"], scouts["by_status"]) == (2, {"CREATED": 2})

    over_http = await http.get("/api/agent-counts", params={"type": kind, "name": "scout"})
    assert over_http.status_code == 200, over_http.text
    assert over_http.json()["total"] == 2
    bad = await call(nc, "agent.count", {"status": "ACTIVE"})
    assert bad.error_code == "validation_error"


async def test_list_finds_agents_by_part_of_their_name_in_any_case(
    nc: NC, http: httpx.AsyncClient
) -> None:
    kind = unique("name")
    for name in ("Alpha one", "beta", "ALPHA two"):
        await ok(nc, "agent.create", {"name": name, "type": kind})
    page = await ok(nc, "agent.list", {"type": kind, "name": "alpha"})
    assert sorted(a["name"] for a in page["items"]) == ["ALPHA two", "Alpha one"]
    listed = await http.get("/api/agents", params={"type": kind, "name": "ha t"})
    assert [a["name"] for a in listed.json()["items"]] == ["ALPHA two"]
    empty = await call(nc, "agent.list", {"name": ""})
    assert empty.error_code == "validation_error"
