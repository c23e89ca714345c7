import asyncio
import json

import nats.aio.client

from tests.support.calls import call, ok

NC = nats.aio.client.Client


async def active_agent(nc: NC, project: str) -> str:
    agent = await ok(nc, "agent.create", {"name": "a", "type": "t", "project_id": project})
    agent_id = agent["agent_id"]
    await ok(nc, "agent.initialize", {"agent_id": agent_id})
    for _ in range(100):
        if (await ok(nc, "agent.get", {"agent_id": agent_id}))["status"] == "READY":
            break
        await asyncio.sleep(0.05)
    await ok(nc, "agent.activate", {"agent_id": agent_id})
    return str(agent_id)


async def test_smoke(nc: NC) -> None:
    a = await active_agent(nc, "smoke")
    b = await active_agent(nc, "smoke")
    sent = await ok(nc, "agent.send", {"from_agent_id": a, "to_agent_id": b, "content": {"x": 1}})
    print(sent)
    assert sent["status"] == "SENT"
    await asyncio.sleep(0.5)
    js = nc.jetstream()
    sub = await js.pull_subscribe_bind(f"inbox-{b}", "AGENT_MESSAGES")
    msgs = await sub.fetch(1, timeout=5)
    body = json.loads(msgs[0].data)
    assert body["communication_id"] == sent["communication_id"]
    d = await ok(nc, "communication.delivered", {"communication_id": sent["communication_id"]})
    assert d["status"] == "DELIVERED"
    await msgs[0].ack()
    page = await ok(nc, "agent.communications", {"agent_id": b})
    assert [c["communication_id"] for c in page["items"]] == [sent["communication_id"]]
    bc = await ok(nc, "agent.send", {"from_agent_id": a, "broadcast": True, "content": "hi"})
    print(bc)
    assert [r["to_agent_id"] for r in bc["recipients"]] == [b]
    got = await ok(nc, "communication.get", {"communication_id": bc["communication_id"]})
    assert got["recipients"] == bc["recipients"]
    r = await call(nc, "agent.send", {"from_agent_id": a, "to_agent_id": b, "broadcast": True})
    assert r.error_code == "validation_error", r.body
