"""One runaway sender cannot fill the stream: its backlog is capped with a clear error."""

import asyncio
import uuid
from pathlib import Path

import asyncpg
import pytest

from agent_orchestrator.client import OrchestratorClient, ServiceUnavailable
from agent_orchestrator.contracts import subjects
from agent_orchestrator.contracts.agents import CreateAgent
from tests.support.agents import sdk_agent
from tests.support.calls import call
from tests.support.own_service import own_service
from tests.support.polling import eventually


async def test_a_sender_over_its_backlog_is_refused_until_recipients_catch_up(
    tmp_path: Path,
) -> None:
    async with own_service(tmp_path, max_sender_backlog=3) as own:
        client = OrchestratorClient(own.nc)

        sender, slow = await sdk_agent(client, "p"), await sdk_agent(client, "p", start=False)
        sent = [await client.send(sender, slow, content=i) for i in range(3)]

        refused = await call(
            own.nc, subjects.AGENT_SEND, {"from_agent_id": sender, "to_agent_id": slow}
        )
        assert refused.error_code == "unavailable"
        assert refused.status == 503
        assert refused.body["error"]["details"] == {
            "reason": "sender_backlog_full",
            "backlog": 3,
            "limit": 3,
        }
        # A broadcast that would go over the limit is refused whole.
        await sdk_agent(client, "p")
        await client.mark_delivered(sent[0].communication_id)
        await sdk_agent(client, "p")
        with pytest.raises(ServiceUnavailable) as over:
            await client.send(sender, broadcast=True, content="to both")
        assert over.value.details["reason"] == "sender_backlog_full"

        stored = await client.communications(sender)
        assert len(stored.items) == 3
        js = own.nc.jetstream()
        # The stream holds only what the log says waits (the sweep catches up).
        await eventually(
            lambda: js.stream_info(subjects.MESSAGES_STREAM),
            lambda info: info.state.messages == 2,
            within=10,
            what="2 messages in AGENT_MESSAGES",
        )

        # Once a recipient catches up, the sender may send again.
        await client.mark_delivered(sent[1].communication_id)
        again = await client.send(sender, slow, content="room again")
        assert again.to_agent_id == uuid.UUID(slow)


async def test_the_backlog_limit_is_exact_under_concurrent_sends(tmp_path: Path) -> None:
    async with own_service(tmp_path, max_sender_backlog=10, handler_max_workers=32) as own:
        # Every send holds its transaction a little after inserting, so concurrent sends
        # overlap for sure: each must still see what the others committed.
        db = await asyncpg.connect(own.service.settings.database_url)
        await db.execute(SLOW_INSERTS)
        await db.close()
        client = OrchestratorClient(own.nc)
        sender = await client.create_agent(CreateAgent(name="s", type="t", project_id="p"))
        await client.start_agent(sender.agent_id)
        slow = await client.create_agent(CreateAgent(name="r", type="t", project_id="p"))
        body = {"from_agent_id": str(sender.agent_id), "to_agent_id": str(slow.agent_id)}
        replies = await asyncio.gather(
            *(call(own.nc, subjects.AGENT_SEND, body, timeout=30) for _ in range(30))
        )
        assert {r.error_code for r in replies} <= {None, "unavailable"}
        assert sum(r.error_code is None for r in replies) == 10
        stored = await client.communications(sender.agent_id, limit=500)
        assert len(stored.items) == 10


SLOW_INSERTS = """
CREATE FUNCTION linger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_sleep(0.05); RETURN NULL; END $$;
CREATE TRIGGER linger AFTER INSERT ON communications FOR EACH STATEMENT EXECUTE FUNCTION linger();
"""
