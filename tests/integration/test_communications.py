"""Messages between agents over real NATS and PostgreSQL, received with the client SDK."""

import asyncio
import contextlib
import uuid
from collections import defaultdict
from typing import Any

import asyncpg
import nats.aio.client
import nats.errors
import pytest
from nats.js.errors import NotFoundError

from agent_orchestrator.client import Inbox, OrchestratorClient, QueueClosed, RequestFailed
from agent_orchestrator.contracts import subjects
from agent_orchestrator.contracts.agents import AgentStatus
from agent_orchestrator.contracts.communications import (
    Communication,
    CommunicationStatus,
    Direction,
)
from tests.support.agents import new_agent, sdk_agent, unique
from tests.support.calls import call, ok
from tests.support.events import read_events, wait_for_events
from tests.support.polling import eventually
from tests.support.queues import raw_receiver

NC = nats.aio.client.Client
Status = CommunicationStatus


async def wait_for_status(
    client: OrchestratorClient, communication_id: Any, status: Status, within: float = 10.0
) -> Communication:
    return await eventually(
        lambda: client.get_communication(communication_id),
        lambda found: found.status is status,
        within=within,
        what=f"communication {communication_id} {status}",
    )


async def wait_inbox_empty(nc: NC, agent_id: str, *, within: float = 5.0) -> None:
    """Wait until AGENT_MESSAGES holds nothing for the agent (the sweep removes what ended)."""
    js = nc.jetstream()

    async def waiting() -> dict[str, int]:
        info = await js.stream_info(
            subjects.MESSAGES_STREAM, subjects_filter=subjects.inbox_subject(agent_id)
        )
        return info.state.subjects or {}

    await eventually(waiting, lambda left: not left, within=within, what=f"inbox of {agent_id}")


async def receive_until_closed(inbox: Inbox, within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while True:
            await inbox.next(timeout=1)


async def test_a_message_reaches_the_recipient_and_its_ack_records_delivered(
    nc: NC, client: OrchestratorClient
) -> None:
    p = unique("p")
    alice, bob = await sdk_agent(client, p), await sdk_agent(client, p)
    sent = await client.send(alice, bob, type="greeting", content={"text": "hello"})
    assert (sent.status, sent.to_agent_id, sent.project_id) == (Status.SENT, uuid.UUID(bob), p)

    async with Inbox(nc, bob) as inbox:
        message = await inbox.next(timeout=10)
        assert message is not None
        assert (message.communication_id, message.type) == (sent.communication_id, "greeting")
        assert message.content == {"text": "hello"}
        assert str(message.from_agent_id) == alice
        delivered = await message.ack()
        assert await inbox.next(timeout=1.5) is None  # nothing delivered twice

    assert delivered.status is Status.DELIVERED
    assert delivered.delivered_at is not None
    assert (await client.get_communication(sent.communication_id)).status is Status.DELIVERED
    await wait_inbox_empty(nc, bob)
    js = nc.jetstream()
    [sent_event] = await wait_for_events(js, subjects.event_subject(alice, "message_sent"), 1)
    [done_event] = await wait_for_events(js, subjects.event_subject(bob, "message_delivered"), 1)
    assert sent_event.envelope["data"]["communication_id"] == str(sent.communication_id)
    assert done_event.envelope["data"]["status"] == "DELIVERED"
    assert sent_event.msg_id == sent_event.envelope["event_id"]


async def test_per_pair_order_is_kept(nc: NC, client: OrchestratorClient) -> None:
    p = unique("p")
    recipient = await sdk_agent(client, p)
    senders = [await sdk_agent(client, p) for _ in range(3)]

    async def send_in_order(sender: str) -> None:
        for i in range(25):
            await client.send(sender, recipient, content={"n": i})

    await asyncio.gather(*(send_in_order(s) for s in senders))
    seen: dict[str, list[int]] = defaultdict(list)
    async with Inbox(nc, recipient, batch=10) as inbox:
        while sum(map(len, seen.values())) < 75:
            message = await inbox.next(timeout=10)
            assert message is not None
            assert isinstance(message.content, dict)
            seen[str(message.from_agent_id)].append(int(message.content["n"]))  # type: ignore[arg-type]
            await message.ack()
    assert {s: seen[s] for s in senders} == {s: list(range(25)) for s in senders}


async def test_a_broadcast_reaches_every_active_agent_of_the_project_and_no_other(
    nc: NC, client: OrchestratorClient
) -> None:
    p = unique("p")
    sender = await sdk_agent(client, p)
    listeners = sorted([await sdk_agent(client, p) for _ in range(3)])
    paused = await sdk_agent(client, p)
    await client.change(subjects.AGENT_PAUSE, paused)
    not_started = await sdk_agent(client, p, start=False)
    elsewhere = await sdk_agent(client)

    summary = await client.send(sender, broadcast=True, type="news", content="tea is ready")
    assert summary.to_agent_id is None
    assert summary.broadcast_id == summary.communication_id
    assert summary.recipients is not None
    assert sorted(str(r.to_agent_id) for r in summary.recipients) == listeners
    copies = {str(r.to_agent_id): r.communication_id for r in summary.recipients}

    for listener in listeners:
        async with Inbox(nc, listener) as inbox:
            message = await inbox.next(timeout=10)
            assert message is not None
            assert message.communication_id == copies[listener]
            assert message.communication.broadcast_id == summary.communication_id
            await message.ack()
    for agent in (paused, not_started, elsewhere, sender):
        page = await client.communications(agent, direction=Direction.RECEIVED)
        assert page.items == []

    again = await client.get_communication(summary.communication_id)
    assert again.status is Status.DELIVERED
    assert again.recipients is not None
    assert {r.status for r in again.recipients} == {Status.DELIVERED}
    sent = await client.communications(sender, direction=Direction.SENT)
    assert {c.communication_id for c in sent.items} == set(copies.values())


async def test_a_broadcast_to_a_project_without_listeners_sends_nothing(
    client: OrchestratorClient,
) -> None:
    sender = await sdk_agent(client)
    summary = await client.send(sender, broadcast=True, content=1)
    assert summary.recipients == []
    assert (await client.communications(sender)).items == []


async def test_request_and_response_are_linked_by_reply_to_and_correlation_id(
    nc: NC, client: OrchestratorClient
) -> None:
    p = unique("p")
    asker, answerer = await sdk_agent(client, p), await sdk_agent(client, p)
    question = await client.send(
        asker, answerer, type="question", content="6*7?", correlation_id="conv-1"
    )
    async with Inbox(nc, answerer) as inbox:
        received = await inbox.next(timeout=10)
        assert received is not None
        answer = await received.reply(42)
        await received.ack()
    assert (answer.reply_to, answer.correlation_id) == (question.communication_id, "conv-1")
    assert (answer.type, str(answer.to_agent_id)) == ("response", asker)
    async with Inbox(nc, asker) as inbox:
        got = await inbox.next(timeout=10)
        assert got is not None
        assert got.content == 42
        assert got.communication.reply_to == question.communication_id
        await got.ack()

    # Only the recipient of a message can answer it.
    with pytest.raises(RequestFailed) as refused:
        await client.send(asker, answerer, reply_to=question.communication_id)
    assert refused.value.code == "validation_error"
    unknown = await call(
        nc,
        subjects.AGENT_SEND,
        {"from_agent_id": answerer, "to_agent_id": asker, "reply_to": str(uuid.uuid4())},
    )
    assert unknown.error_code == "not_found"


async def test_a_resent_message_with_the_same_idempotency_key_is_not_doubled(
    nc: NC, client: OrchestratorClient
) -> None:
    p = unique("p")
    a, b = await sdk_agent(client, p), await sdk_agent(client, p)
    key = str(uuid.uuid4())
    first, second = await asyncio.gather(
        client.send(a, b, content="once", idempotency_key=key),
        client.send(a, b, content="once", idempotency_key=key),
    )
    assert first.communication_id == second.communication_id
    assert len((await client.communications(b)).items) == 1
    other = await call(
        nc,
        subjects.AGENT_SEND,
        {"from_agent_id": a, "to_agent_id": b, "content": "twice"},
        headers={subjects.IDEMPOTENCY_KEY_HEADER: key},
    )
    assert other.error_code == "conflict"
    async with Inbox(nc, b) as inbox:
        message = await inbox.next(timeout=10)
        assert message is not None
        assert message.communication_id == first.communication_id
        await message.ack()
        assert await inbox.next(timeout=1.5) is None


async def test_a_message_to_a_paused_agent_waits_until_it_is_active(
    nc: NC, client: OrchestratorClient
) -> None:
    p = unique("p")
    a, b = await sdk_agent(client, p), await sdk_agent(client, p)
    await client.change(subjects.AGENT_PAUSE, b)
    sent = await client.send(a, b, content="after the break")
    async with Inbox(nc, b) as inbox:
        assert await inbox.next(timeout=2) is None
        await client.change(subjects.AGENT_ACTIVATE, b)
        message = await inbox.next(timeout=10)
        assert message is not None
        assert message.communication_id == sent.communication_id
        await message.ack()


async def test_a_message_never_acknowledged_ends_failed_after_max_deliveries(
    nc: NC, client: OrchestratorClient
) -> None:
    p = unique("p")
    a, b = await sdk_agent(client, p), await sdk_agent(client, p)
    sent = await client.send(a, b, content="ignore me")
    sub = await raw_receiver(
        nc.jetstream(),
        subjects.MESSAGES_STREAM,
        subjects.inbox_consumer(b),
        subjects.inbox_subject(b),
    )
    deliveries = 0
    async with asyncio.timeout(20):
        # A receiver that keeps asking but never acknowledges: the server fails the message
        # when it would deliver it once more than the test service's maximum of 3.
        while (await client.get_communication(sent.communication_id)).status is Status.SENT:
            with contextlib.suppress(nats.errors.TimeoutError):
                deliveries += len(await sub.fetch(1, timeout=1.5))
    assert deliveries == 3
    failed = await wait_for_status(client, sent.communication_id, Status.FAILED)
    assert failed.status_reason == "not acknowledged after 3 deliveries"
    [event] = await wait_for_events(nc.jetstream(), subjects.event_subject(b, "message_failed"), 1)
    assert event.envelope["data"]["status"] == "FAILED"
    await wait_inbox_empty(nc, b)
    await sub.unsubscribe()


async def test_an_expired_message_ends_expired_and_is_never_received(
    nc: NC, client: OrchestratorClient
) -> None:
    p = unique("p")
    a, b = await sdk_agent(client, p), await sdk_agent(client, p)
    await client.change(subjects.AGENT_PAUSE, b)
    sent = await client.send(a, b, content="too late", ttl_s=1)
    assert sent.expires_at is not None
    assert sent.ttl_s == 1
    expired = await wait_for_status(client, sent.communication_id, Status.EXPIRED)
    assert expired.status_reason == "ttl expired"
    await client.change(subjects.AGENT_ACTIVATE, b)
    async with Inbox(nc, b) as inbox:
        assert await inbox.next(timeout=2) is None
    [event] = await wait_for_events(nc.jetstream(), subjects.event_subject(b, "message_failed"), 1)
    assert event.envelope["data"]["status"] == "EXPIRED"
    refused = await call(
        nc, subjects.COMMUNICATION_DELIVERED, {"communication_id": str(sent.communication_id)}
    )
    assert refused.error_code == "conflict"


async def test_terminating_a_recipient_fails_its_waiting_messages_and_closes_its_inbox(
    nc: NC, client: OrchestratorClient
) -> None:
    p = unique("p")
    a, b = await sdk_agent(client, p), await sdk_agent(client, p)
    await client.change(subjects.AGENT_PAUSE, b)
    waiting = [await client.send(a, b, content=i) for i in range(2)]
    inbox = await Inbox(nc, b).open()
    await client.change(subjects.AGENT_TERMINATE, b)
    for sent in waiting:
        failed = await wait_for_status(client, sent.communication_id, Status.FAILED)
        assert failed.status_reason == "recipient terminated"
    with pytest.raises(QueueClosed):
        await receive_until_closed(inbox)
    await inbox.close()
    with pytest.raises(NotFoundError):  # a clean stop removes the inbox consumer
        await nc.jetstream().consumer_info(subjects.MESSAGES_STREAM, subjects.inbox_consumer(b))
    await wait_inbox_empty(nc, b)
    for body in ({"from_agent_id": a, "to_agent_id": b}, {"from_agent_id": b, "to_agent_id": a}):
        refused = await call(nc, subjects.AGENT_SEND, body)
        assert refused.error_code == "invalid_transition", refused.body


async def test_deleting_a_recipient_fails_its_waiting_messages(
    nc: NC, client: OrchestratorClient
) -> None:
    p = unique("p")
    a, b = await sdk_agent(client, p), await sdk_agent(client, p, start=False)
    sent = await client.send(a, b, content="never read")
    await ok(nc, subjects.AGENT_DELETE, {"agent_id": b})
    failed = await wait_for_status(client, sent.communication_id, Status.FAILED)
    assert failed.status_reason == "recipient deleted"
    missing = await call(nc, subjects.AGENT_SEND, {"from_agent_id": a, "to_agent_id": b})
    assert missing.error_code == "not_found"


async def test_delivered_over_nats_is_idempotent_and_takes_the_message_out_of_the_inbox(
    nc: NC, client: OrchestratorClient
) -> None:
    p = unique("p")
    a, b = await sdk_agent(client, p), await sdk_agent(client, p)
    await client.change(subjects.AGENT_PAUSE, b)
    sent = await client.send(a, b, content="read elsewhere")
    body = {"communication_id": str(sent.communication_id)}
    first = await ok(nc, subjects.COMMUNICATION_DELIVERED, body)
    second = await ok(nc, subjects.COMMUNICATION_DELIVERED, body)
    assert first == second
    assert first["status"] == "DELIVERED"
    await wait_inbox_empty(nc, b)
    await client.change(subjects.AGENT_ACTIVATE, b)
    async with Inbox(nc, b) as inbox:
        assert await inbox.next(timeout=2) is None
    events = await read_events(nc.jetstream(), subjects.event_subject(b, "message_delivered"))
    assert len(events) == 1


async def test_communications_lists_by_direction_and_status_newest_first_in_pages(
    nc: NC, client: OrchestratorClient
) -> None:
    p = unique("p")
    me, other = await sdk_agent(client, p), await sdk_agent(client, p)
    outgoing = [await client.send(me, other, content=i) for i in range(3)]
    incoming = [await client.send(other, me, content=i) for i in range(2)]
    to_self = await client.send(me, me, content="note to self")
    await client.mark_delivered(incoming[0].communication_id)

    def ids(items: list[Communication]) -> list[uuid.UUID]:
        return [c.communication_id for c in items]

    everything = [*outgoing, *incoming, to_self]
    both = await client.communications(me)
    assert ids(both.items) == ids(everything)[::-1]
    sent = await client.communications(me, direction=Direction.SENT)
    assert ids(sent.items) == ids([*outgoing, to_self])[::-1]
    received = await client.communications(me, direction=Direction.RECEIVED)
    assert ids(received.items) == ids([*incoming, to_self])[::-1]
    delivered = await client.communications(me, status=Status.DELIVERED)
    assert ids(delivered.items) == [incoming[0].communication_id]

    pages: list[uuid.UUID] = []
    cursor = None
    while True:
        page = await client.communications(me, limit=2, cursor=cursor)
        pages += ids(page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert pages == ids(everything)[::-1]


async def test_content_over_the_limit_is_payload_too_large_and_stores_nothing(
    nc: NC, client: OrchestratorClient, db: asyncpg.Pool
) -> None:
    p = unique("p")
    a, b = await sdk_agent(client, p), await sdk_agent(client, p)
    body = {"from_agent_id": a, "to_agent_id": b, "content": "x" * (64 * 1024)}
    reply = await call(nc, subjects.AGENT_SEND, body)
    assert reply.error_code == "payload_too_large"
    assert reply.status == 413
    count = await db.fetchval(
        "SELECT count(*) FROM communications WHERE from_agent_id = $1", uuid.UUID(a)
    )
    assert count == 0


async def test_unknown_agents_and_communications_are_not_found(nc: NC) -> None:
    agent = await new_agent(nc)
    unknown = str(uuid.uuid4())
    for subject, body in (
        (subjects.AGENT_SEND, {"from_agent_id": unknown, "to_agent_id": agent}),
        (subjects.AGENT_SEND, {"from_agent_id": agent, "to_agent_id": unknown}),
        (subjects.AGENT_SEND, {"from_agent_id": unknown, "broadcast": True}),
        (subjects.COMMUNICATION_DELIVERED, {"communication_id": unknown}),
        (subjects.COMMUNICATION_GET, {"communication_id": unknown}),
        (subjects.AGENT_COMMUNICATIONS, {"agent_id": unknown}),
    ):
        reply = await call(nc, subject, body)
        assert reply.error_code == "not_found", (subject, body, reply.body)


async def test_an_agent_receives_nothing_before_it_is_active(
    nc: NC, client: OrchestratorClient
) -> None:
    p = unique("p")
    a = await sdk_agent(client, p)
    b = await sdk_agent(client, p, start=False)
    sent = await client.send(a, b, content="early")
    await client.change(subjects.AGENT_INITIALIZE, b)
    await client.wait_for_status(b, AgentStatus.READY)
    async with Inbox(nc, b) as inbox:
        assert await inbox.next(timeout=1.5) is None
        await client.change(subjects.AGENT_ACTIVATE, b)
        message = await inbox.next(timeout=10)
        assert message is not None
        assert message.communication_id == sent.communication_id
        await message.ack()


async def test_a_receiver_that_confirmed_but_died_before_its_ack_does_not_see_it_again(
    nc: NC, client: OrchestratorClient
) -> None:
    p = unique("p")
    a, b = await sdk_agent(client, p), await sdk_agent(client, p)
    sent = await client.send(a, b, content="confirmed, never acked")
    sub = await raw_receiver(
        nc.jetstream(),
        subjects.MESSAGES_STREAM,
        subjects.inbox_consumer(b),
        subjects.inbox_subject(b),
    )
    [held] = await sub.fetch(1, timeout=10)
    await client.mark_delivered(sent.communication_id, ack_follows=True)
    await sub.unsubscribe()  # "dies" holding it: the server delivers it again after ack wait
    async with Inbox(nc, b) as inbox:
        assert await inbox.next(timeout=3) is None  # the log says DELIVERED: acked, skipped
    assert held.metadata.num_delivered == 1
    await wait_inbox_empty(nc, b)


async def test_handover_lets_messages_through_only_while_active_and_records_confirmations(
    nc: NC, client: OrchestratorClient
) -> None:
    """communication.handover, as a worker in any language uses it: the delivery check refuses
    everything while the recipient is PAUSED, accepts what is still SENT once it is ACTIVE, and
    records confirmations DELIVERED in one request; a confirmed message offered again (a
    redelivery) comes back as ended."""
    p = unique("p")
    a, b = await sdk_agent(client, p), await sdk_agent(client, p)
    sent = [await client.send(a, b, content=i) for i in range(3)]
    ids = [m.communication_id for m in sent]
    await client.change(subjects.AGENT_PAUSE, b)

    paused = await client.hand_over(b, offered=ids)
    assert (paused.status, paused.accepted, paused.ended) == (AgentStatus.PAUSED, [], [])

    active = await client.change(subjects.AGENT_ACTIVATE, b)
    check = await client.hand_over(b, offered=ids)
    assert (check.status, check.version) == (AgentStatus.ACTIVE, active.version)
    assert (check.accepted, check.ended) == (ids, [])

    confirmed = await client.hand_over(b, offered=[uuid.uuid4()], delivered=ids[:2])
    assert [(c.communication_id, c.status) for c in confirmed.confirmed] == [
        (i, Status.DELIVERED) for i in ids[:2]
    ]
    assert len(confirmed.ended) == 1  # not a message of this agent
    again = await client.hand_over(b, offered=ids, delivered=ids[:1])
    assert (again.accepted, again.ended) == (ids[2:], ids[:2])
    assert [c.status for c in again.confirmed] == [Status.DELIVERED]  # a repeat changes nothing
    listed = await client.communications(b, direction=Direction.RECEIVED)
    assert {m.communication_id: m.status for m in listed.items} == {
        ids[0]: Status.DELIVERED,
        ids[1]: Status.DELIVERED,
        ids[2]: Status.SENT,
    }
    await wait_for_events(nc.jetstream(), subjects.event_subject(b, "message_delivered"), 2)


async def test_an_inbox_creates_its_consumer_from_the_stream_settings_and_removes_it(
    nc: NC, client: OrchestratorClient
) -> None:
    """The worker's consumer: filtered on the agent's inbox, configured from the stream's
    metadata (the service's settings), gone when the inbox closes; none before."""
    b = await sdk_agent(client)
    js = nc.jetstream()
    name = subjects.inbox_consumer(b)
    with pytest.raises(NotFoundError):
        await js.consumer_info(subjects.MESSAGES_STREAM, name)
    async with Inbox(nc, b):
        info = await js.consumer_info(subjects.MESSAGES_STREAM, name)
        meta = (await js.stream_info(subjects.MESSAGES_STREAM)).config.metadata or {}
        assert info.config.filter_subject == subjects.inbox_subject(b)
        assert info.config.max_deliver == 3  # the test service's AO_MESSAGE_MAX_DELIVERIES
        assert meta["agent-orchestrator.max_deliveries"] == "3"
        assert info.config.inactive_threshold == float(
            meta["agent-orchestrator.inactive_threshold_s"]
        )
    with pytest.raises(NotFoundError):
        await js.consumer_info(subjects.MESSAGES_STREAM, name)
