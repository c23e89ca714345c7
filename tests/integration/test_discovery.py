"""`nats micro` sees the service: $SRV.PING / INFO / STATS with every command subject."""

import json
import uuid
from typing import Any

import nats.aio.client

from agent_orchestrator.service import Service
from tests.support.calls import call, ok

NC = nats.aio.client.Client


async def ask(nc: NC, subject: str) -> Any:
    return json.loads((await nc.request(subject, b"", timeout=5)).data)


async def test_ping_and_info_name_the_service_and_list_every_command(
    nc: NC, service: Service
) -> None:
    ping = await ask(nc, "$SRV.PING.agent-orchestrator")
    assert ping["type"] == "io.nats.micro.v1.ping_response"
    assert (ping["name"], ping["id"]) == ("agent-orchestrator", service.stats.instance_id)
    info = await ask(nc, f"$SRV.INFO.agent-orchestrator.{ping['id']}")
    subjects = {e["subject"] for e in info["endpoints"]}
    assert subjects == {spec.subject for spec in service.commands}
    assert {"agent.create", "agent.state.update", "template.update"} <= subjects
    assert {e["queue_group"] for e in info["endpoints"]} == {"agent-orchestrator"}


async def test_stats_count_requests_and_error_replies(nc: NC) -> None:
    def get_stats(stats: Any) -> Any:
        return next(e for e in stats["endpoints"] if e["subject"] == "agent.get")

    before = get_stats(await ask(nc, "$SRV.STATS.agent-orchestrator"))
    agent = await ok(nc, "agent.create", {"name": "seen", "type": "t"})
    await ok(nc, "agent.get", {"agent_id": agent["agent_id"]})
    missing = await call(nc, "agent.get", {"agent_id": str(uuid.uuid4())})
    assert missing.error_code == "not_found"
    bad = await call(nc, "agent.get", raw=b"not json")
    assert bad.error_code == "validation_error"
    after = get_stats(await ask(nc, "$SRV.STATS.agent-orchestrator"))
    assert after["num_requests"] - before["num_requests"] == 3
    assert after["num_errors"] - before["num_errors"] == 2
    assert after["last_error"].startswith("400:")
    assert after["processing_time"] > before["processing_time"]
