"""Messages sent without a request (agent.outgoing.<sender> → the ingest → the inbox), on real
NATS and PostgreSQL: recorded and delivered in order, refused ones FAILED with the reason and
never delivered."""

import asyncio
import uuid

import nats.aio.client

from agent_orchestrator.client import Inbox, OrchestratorClient, RequestFailed
from agent_orchestrator.contracts import subjects
from agent_orchestrator.contracts.communications import Communication, CommunicationStatus
from agent_orchestrator.handlers.communications import MessageLimits
from agent_orchestrator.handlers.direct_sends import DirectSends
from agent_orchestrator.handlers.message_ingest import MessageIngest
from agent_orchestrator.service import Service
from tests.support.agents import sdk_agent, unique
from tests.support.polling import eventually
from tests.support.queues import subject_is_empty

NC = nats.aio.client.Client
Status = CommunicationStatus
PER_SENDER = 30


async def recorded(
    client: OrchestratorClient, communication_id: uuid.UUID, status: Status
) -> Communication:
    """The message once the log holds it with ``status``."""

    async def get() -> Communication | None:
        try:
            return await client.get_communication(communication_id)
        except RequestFailed as exc:
            if exc.code != "not_found":
                raise
            return None

    found = await eventually(
        get,
        lambda c: c is not None and c.status is status,
        within=10,
        what=f"{communication_id} {status}",
    )
    assert found is not None
    return found


async def test_direct_sends_are_recorded_and_delivered_in_per_sender_order(
    nc: NC, client: OrchestratorClient
) -> None:
    project = unique("direct")
    senders = [await sdk_agent(client, project) for _ in range(2)]
    recipient = await sdk_agent(client, project)

    async def send_all(sender: str) -> list[uuid.UUID]:
        return [
            await client.send_direct(sender, recipient, content={"n": n}, correlation_id="c")
            for n in range(PER_SENDER)
        ]

    sent = await asyncio.gather(*map(send_all, senders))
    first = await recorded(client, sent[0][0], Status.SENT)
    assert (first.from_agent_id, first.to_agent_id) == (uuid.UUID(senders[0]), uuid.UUID(recipient))
    assert first.content == {"n": 0}
    assert first.correlation_id == "c"
    got: dict[uuid.UUID, list[int]] = {uuid.UUID(s): [] for s in senders}
    ids = []
    async with Inbox(nc, recipient, batch=10) as inbox:
        for _ in range(2 * PER_SENDER):
            message = await inbox.next(timeout=10)
            assert message is not None
            got[message.from_agent_id].append(message.content["n"])
            ids.append(message.communication_id)
            await message.ack()
        assert await inbox.next(timeout=1) is None  # nothing twice
    assert all(ns == list(range(PER_SENDER)) for ns in got.values())
    assert sorted(ids) == sorted(i for s in sent for i in s)
    await recorded(client, sent[1][-1], Status.DELIVERED)


async def test_a_refused_direct_send_ends_failed_with_its_reason_and_is_never_delivered(
    nc: NC, client: OrchestratorClient, service: Service
) -> None:
    project = unique("direct")
    sender = await sdk_agent(client, project)
    recipient = await sdk_agent(client, project)
    ended = await sdk_agent(client, project)
    stranger = await sdk_agent(client, unique("other"))
    await client.change(subjects.AGENT_TERMINATE, ended)
    too_big = "x" * (service.settings.max_message_bytes + 1)
    refused = {
        "unknown": await client.send_direct(sender, uuid.uuid4(), content=1),
        "terminated": await client.send_direct(sender, ended, content=2),
        "too big": await client.send_direct(sender, recipient, content=too_big),
        "another project": await client.send_direct(sender, stranger, content=3),
        "unknown reply_to": await client.send_direct(
            sender, recipient, content=4, reply_to=uuid.uuid4()
        ),
    }
    fine = await client.send_direct(sender, recipient, content="fine")
    reasons = {
        what: (await recorded(client, cid, Status.FAILED)).status_reason
        for what, cid in refused.items()
    }
    assert "does not exist" in (reasons["unknown"] or "")
    assert "TERMINATED" in (reasons["terminated"] or "")
    assert "too large" in (reasons["too big"] or "").lower() or "limit" in (
        reasons["too big"] or ""
    )
    assert "does not exist" in (reasons["another project"] or "")
    assert "does not exist" in (reasons["unknown reply_to"] or "")
    async with Inbox(nc, recipient) as inbox:
        message = await inbox.next(timeout=10)
        assert message is not None
        assert message.communication_id == fine
        await message.ack()
        assert await inbox.next(timeout=1) is None
    for agent in (ended, stranger):
        assert await subject_is_empty(nc, subjects.MESSAGES_STREAM, subjects.inbox_subject(agent))


async def test_a_repeated_publish_of_one_message_is_one_message(
    nc: NC, client: OrchestratorClient
) -> None:
    project = unique("direct")
    sender, recipient = await sdk_agent(client, project), await sdk_agent(client, project)
    communication_id = await client.send_direct(sender, recipient, content="once")
    again = await client.send_direct(
        sender, recipient, content="once", communication_id=communication_id
    )
    assert again == communication_id
    await recorded(client, communication_id, Status.SENT)
    async with Inbox(nc, recipient) as inbox:
        message = await inbox.next(timeout=10)
        assert message is not None
        assert message.communication_id == communication_id
        await message.ack()
        assert await inbox.next(timeout=1) is None


async def test_one_instance_at_a_time_leads_the_ingest(nc: NC, service: Service) -> None:
    ingest = service.ingest
    assert ingest is not None
    await eventually(
        lambda: asyncio.sleep(0, ingest.is_leader), bool, within=10, what="the ingest leading"
    )
    other = MessageIngest(
        service.settings.database_url,
        nc.jetstream(),
        DirectSends(
            communications=service.repositories.communications,
            limits=MessageLimits(max_content_bytes=1000, max_sender_backlog=10),
            inbox=service.queues.inbox,
        ),
    )
    running = asyncio.create_task(other.run())
    try:
        await asyncio.sleep(1.5)
        assert not other.is_leader
        assert ingest.is_leader
    finally:
        other.stop()
        await asyncio.wait_for(running, 5)


async def test_a_message_postgresql_cannot_hold_ends_failed_and_does_not_block_the_rest(
    nc: NC, client: OrchestratorClient
) -> None:
    project = unique("direct")
    sender, recipient = await sdk_agent(client, project), await sdk_agent(client, project)
    poison = await client.send_direct(sender, recipient, content="nul \u0000 byte")
    after = await client.send_direct(sender, recipient, content="after")
    failed = await recorded(client, poison, Status.FAILED)
    assert "cannot be stored" in (failed.status_reason or "")
    assert failed.content is None
    await recorded(client, after, Status.SENT)
    async with Inbox(nc, recipient) as inbox:
        message = await inbox.next(timeout=10)
        assert message is not None
        assert message.communication_id == after
        await message.ack()
