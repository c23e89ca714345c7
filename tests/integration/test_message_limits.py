"""One runaway sender cannot fill the stream: its backlog is capped with a clear error."""

import uuid
from pathlib import Path

import pytest

from agent_orchestrator.client import OrchestratorClient, ServiceUnavailable
from agent_orchestrator.contracts import subjects
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
