"""With PostgreSQL down, commands get `unavailable` at once, and service resumes by itself."""

from pathlib import Path

from tests.support.calls import Reply, call, ok
from tests.support.own_service import own_service
from tests.support.polling import eventually


async def test_commands_get_unavailable_while_postgres_is_down(tmp_path: Path) -> None:
    async with own_service(tmp_path) as own:
        agent = await ok(own.nc, "agent.create", {"name": "a", "type": "t"})
        own.postgres.kill()

        for subject, body in [
            ("agent.get", {"agent_id": agent["agent_id"]}),
            ("agent.create", {"name": "b", "type": "t"}),
            ("agent.pause", {"agent_id": agent["agent_id"]}),
        ]:
            reply = await call(own.nc, subject, body, timeout=15)
            assert reply.error_code == "unavailable", (subject, reply.body)
            assert reply.status == 503

        own.postgres.restart()

        def recovered(reply: Reply) -> bool:
            assert reply.error_code in (None, "unavailable"), reply.body
            return reply.error_code is None

        reply = await eventually(
            lambda: call(own.nc, "agent.get", {"agent_id": agent["agent_id"]}),
            recovered,
            within=20,
            what="agent.get answered after PostgreSQL restarted",
            interval=0.2,
        )
        assert reply.body == agent
        created = await ok(own.nc, "agent.create", {"name": "after", "type": "t"})
        assert created["status"] == "CREATED"
