"""Per-project quotas (issue 22, defect 6): one project using up its own share leaves the
others theirs, and the error says which quota and which setting."""

import uuid
from pathlib import Path

from agent_orchestrator.client import OrchestratorClient
from agent_orchestrator.contracts.agents import CreateAgent
from tests.support.calls import Reply, call, ok
from tests.support.own_service import own_service
from tests.support.polling import eventually


def refused(reply: Reply, quota: str, setting: str) -> None:
    assert (reply.error_code, reply.status) == ("quota_exceeded", 429), reply.body
    assert reply.body["error"]["details"]["quota"] == quota
    assert reply.body["error"]["details"]["setting"] == setting


async def test_each_project_has_its_own_quotas(tmp_path: Path) -> None:
    async with own_service(
        tmp_path,
        project_max_agents=3,
        project_max_tasks_in_flight=2,
        project_max_waiting_messages=2,
        project_max_requests_per_s=0,
    ) as own:
        nc, client = own.nc, OrchestratorClient(own.nc)
        greedy, modest = f"greedy-{uuid.uuid4()}", f"modest-{uuid.uuid4()}"

        def as_(project: str) -> dict[str, str]:
            return {"Project-Scope": project}

        keyed = {**as_(greedy), "Idempotency-Key": "first"}
        made = [
            await ok(
                nc,
                "agent.create",
                {"name": f"a{i}", "type": "t"},
                headers=keyed if i == 0 else as_(greedy),
            )
            for i in range(3)
        ]
        over = await call(nc, "agent.create", {"name": "a4", "type": "t"}, headers=as_(greedy))
        refused(over, "agents", "AO_PROJECT_MAX_AGENTS")
        # A repeat of a request that succeeded still gets its reply.
        repeat = await ok(nc, "agent.create", {"name": "a0", "type": "t"}, headers=keyed)
        assert repeat["agent_id"] == made[0]["agent_id"]
        # The other project is untouched by the first one's use.
        mine = await ok(nc, "agent.create", {"name": "m", "type": "t"}, headers=as_(modest))
        # Operators (no project scope) are not counted.
        await client.create_agent(CreateAgent(name="op", type="t", project_id=greedy))
        # A terminated agent frees its place.
        first = made[0]["agent_id"]
        await ok(nc, "agent.terminate", {"agent_id": first}, headers=as_(greedy))
        assert await call(nc, "agent.create", {"name": "a5", "type": "t"}, headers=as_(greedy))

        # Tasks in flight: the agent stays CREATED, so its tasks wait (queued).
        worker = made[1]["agent_id"]
        await client.start_agent(worker)
        for _ in range(2):
            await ok(nc, "agent.execute", {"agent_id": worker, "input": 1}, headers=as_(greedy))
        refused(
            await call(nc, "agent.execute", {"agent_id": worker}, headers=as_(greedy)),
            "tasks_in_flight",
            "AO_PROJECT_MAX_TASKS_IN_FLIGHT",
        )

        # Messages waiting: the recipient is not ACTIVE, so they wait.
        sender, idle = made[1]["agent_id"], made[2]["agent_id"]
        send = {"from_agent_id": sender, "to_agent_id": idle}
        for _ in range(2):
            await ok(nc, "agent.send", send, headers=as_(greedy))
        refused(
            await call(nc, "agent.send", send, headers=as_(greedy)),
            "waiting_messages",
            "AO_PROJECT_MAX_WAITING_MESSAGES",
        )
        # Sent without a request, the same quota ends the message FAILED, with the reason.
        direct = await client.send_direct(sender, idle, content="one too many")
        failed = await eventually(
            lambda: call(nc, "communication.get", {"communication_id": str(direct)}),
            lambda reply: reply.error_code is None,
            within=10,
            what="the direct message recorded",
        )
        assert failed.body["status"] == "FAILED"
        assert "AO_PROJECT_MAX_WAITING_MESSAGES" in failed.body["status_reason"]
        assert mine["project_id"] == modest


async def test_a_project_over_its_request_rate_is_refused_alone(tmp_path: Path) -> None:
    async with own_service(tmp_path, project_max_requests_per_s=5) as own:
        nc = own.nc
        busy, calm = f"busy-{uuid.uuid4()}", f"calm-{uuid.uuid4()}"
        replies = [
            await call(nc, "agent.list", {}, headers={"Project-Scope": busy}) for _ in range(8)
        ]
        codes = [r.error_code for r in replies]
        assert codes[:5] == [None] * 5
        refused(replies[-1], "requests_per_s", "AO_PROJECT_MAX_REQUESTS_PER_S")
        assert (
            await call(nc, "agent.list", {}, headers={"Project-Scope": calm})
        ).error_code is None
        assert (await call(nc, "agent.list", {})).error_code is None  # an operator
