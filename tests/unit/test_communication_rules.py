"""The messaging rules, without I/O."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from agent_orchestrator.contracts.agents import AgentStatus
from agent_orchestrator.contracts.communications import CommunicationStatus, SendMessage
from agent_orchestrator.contracts.events import EventKind
from agent_orchestrator.domain import communications as rules
from agent_orchestrator.domain.agents import AgentRef
from agent_orchestrator.domain.errors import (
    Conflict,
    InvalidTransition,
    PayloadTooLarge,
    ValidationFailed,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
Status = CommunicationStatus


def party(status: AgentStatus = AgentStatus.ACTIVE, project: str | None = "p") -> AgentRef:
    return AgentRef(uuid.uuid4(), project, status, 3)


def direct(sender: AgentRef, recipient: AgentRef, **fields: object) -> SendMessage:
    return SendMessage.model_validate(
        {"from_agent_id": sender.agent_id, "to_agent_id": recipient.agent_id, **fields}
    )


def test_a_direct_send_makes_one_message_and_its_event_on_the_sender() -> None:
    sender, recipient = party(), party()
    out = rules.compose(
        direct(sender, recipient, content={"a": 1}, ttl_s=60), sender, [recipient],
        answered=None, now=NOW,
    )  # fmt: skip
    [message] = out.messages
    assert out.reply == message
    assert (message.to_agent_id, message.status, message.content) == (
        recipient.agent_id,
        Status.SENT,
        {"a": 1},
    )
    assert message.expires_at == NOW + timedelta(seconds=60)
    [event] = out.events
    assert (event.type, event.agent_id, event.version) == (
        EventKind.MESSAGE_SENT,
        sender.agent_id,
        3,
    )
    assert event.data["communication_id"] == str(message.communication_id)


def test_a_broadcast_makes_a_copy_per_recipient_and_answers_with_a_summary() -> None:
    sender, listeners = party(), [party(), party()]
    request = SendMessage(from_agent_id=sender.agent_id, broadcast=True, content="hi")
    out = rules.compose(request, sender, listeners, answered=None, now=NOW)
    assert [m.to_agent_id for m in out.messages] == [p.agent_id for p in listeners]
    assert len({m.communication_id for m in out.messages}) == 2
    assert {m.broadcast_id for m in out.messages} == {out.reply.communication_id}
    assert out.reply.to_agent_id is None
    assert out.reply.recipients is not None
    assert [r.communication_id for r in out.reply.recipients] == [
        m.communication_id for m in out.messages
    ]
    assert rules.broadcast_summary(out.messages) == out.reply


@pytest.mark.parametrize("who", ["sender", "recipient"])
def test_a_terminated_agent_neither_sends_nor_receives(who: str) -> None:
    sender, recipient = party(), party()
    if who == "sender":
        sender = party(AgentStatus.TERMINATED)
    else:
        recipient = party(AgentStatus.TERMINATED)
    with pytest.raises(InvalidTransition, match=who):
        rules.compose(direct(sender, recipient), sender, [recipient], answered=None, now=NOW)


def test_a_reply_must_answer_a_message_to_the_sender_and_inherits_its_correlation() -> None:
    asker, answerer = party(), party()
    question = rules.compose(
        direct(asker, answerer, correlation_id="c-1"), asker, [answerer], answered=None, now=NOW
    ).reply
    answer = rules.compose(
        direct(answerer, asker, reply_to=str(question.communication_id)),
        answerer,
        [asker],
        answered=question,
        now=NOW,
    ).reply
    assert (answer.reply_to, answer.correlation_id) == (question.communication_id, "c-1")
    own = rules.compose(
        direct(answerer, asker, reply_to=str(question.communication_id), correlation_id="mine"),
        answerer,
        [asker],
        answered=question,
        now=NOW,
    ).reply
    assert own.correlation_id == "mine"
    with pytest.raises(ValidationFailed):
        rules.compose(direct(asker, answerer), asker, [answerer], answered=question, now=NOW)


@pytest.mark.parametrize(
    "fields",
    [{}, {"to_agent_id": str(uuid.uuid4()), "broadcast": True}, {"ttl_s": 0}, {"type": ""}],
)
def test_send_requests_need_exactly_one_target_and_sane_fields(fields: dict[str, object]) -> None:
    body = {"from_agent_id": str(uuid.uuid4()), **fields}
    if "to_agent_id" not in fields and "broadcast" not in fields and fields:
        body["to_agent_id"] = str(uuid.uuid4())
    with pytest.raises(ValidationError):
        SendMessage.model_validate(body)


def test_content_is_measured_as_json() -> None:
    rules.check_content_size("x" * 8, 10)  # "xxxxxxxx" with its quotes is 10 bytes
    with pytest.raises(PayloadTooLarge):
        rules.check_content_size("x" * 9, 10)
    rules.check_content_size("é" * 4, 10)  # 8 bytes of UTF-8 and 2 quotes
    with pytest.raises(PayloadTooLarge):
        rules.check_content_size("é" * 5, 10)


def test_delivery_is_idempotent_and_final_statuses_are_final() -> None:
    sender, recipient = party(), party()
    sent = rules.compose(
        direct(sender, recipient), sender, [recipient], answered=None, now=NOW
    ).reply
    delivered = rules.deliver(sent, NOW)
    assert delivered is not None
    assert (delivered.status, delivered.delivered_at) == (Status.DELIVERED, NOW)
    assert rules.deliver(delivered, NOW) is None
    failed = rules.end(sent, Status.FAILED, "gone", NOW)
    with pytest.raises(Conflict):
        rules.deliver(failed, NOW)
    assert rules.outcome_event(failed, recipient, NOW).type is EventKind.MESSAGE_FAILED
    assert rules.outcome_event(delivered, recipient, NOW).type is EventKind.MESSAGE_DELIVERED


@given(st.lists(st.sampled_from(list(Status)), min_size=1, max_size=6))
def test_a_broadcast_is_sent_while_any_copy_is_and_delivered_only_when_all_are(
    statuses: list[CommunicationStatus],
) -> None:
    summary = rules.summary_status(statuses)
    assert (summary is Status.SENT) == (Status.SENT in statuses)
    assert (summary is Status.DELIVERED) == all(s is Status.DELIVERED for s in statuses)
    if Status.SENT not in statuses and Status.FAILED in statuses:
        assert summary is Status.FAILED


def decide(
    sender: AgentRef, recipient: AgentRef | None, to: uuid.UUID | None = None, **fields: object
) -> rules.Outgoing:
    """A message sent without a request, decided."""
    body = SendMessage.model_validate(
        {
            "from_agent_id": sender.agent_id,
            "to_agent_id": to or (recipient.agent_id if recipient else uuid.uuid4()),
            **fields,
        }
    )
    return rules.decide_direct(
        body,
        uuid.UUID(int=7),
        sender,
        recipient,
        answered=None,
        max_content_bytes=100,
        now=NOW,
    )


def test_a_message_sent_without_a_request_keeps_the_senders_id_and_goes_out_sent() -> None:
    sender, recipient = party(), party(AgentStatus.PAUSED)
    out = decide(sender, recipient, content="hi", ttl_s=5)
    (message,) = out.messages
    assert message.communication_id == uuid.UUID(int=7)
    assert message.status is Status.SENT
    assert message.expires_at == NOW + timedelta(seconds=5)
    assert [e.type for e in out.events] == [EventKind.MESSAGE_SENT]


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("unknown", "does not exist"),
        ("other project", "does not exist"),
        ("terminated", "TERMINATED"),
        ("too big", "message content"),
        ("unknown reply_to", "does not exist"),
    ],
)
def test_a_refused_message_is_recorded_failed_with_agent_sends_reason(
    case: str, reason: str
) -> None:
    sender = party()
    recipient: AgentRef | None = {
        "unknown": None,
        "other project": party(project="q"),
        "terminated": party(AgentStatus.TERMINATED),
    }.get(case, party())
    fields: dict[str, object] = {"content": "x" * 200} if case == "too big" else {}
    if case == "unknown reply_to":
        fields["reply_to"] = str(uuid.uuid4())
    out = decide(sender, recipient, **fields)
    (message,) = out.messages
    assert message.status is Status.FAILED
    assert reason in (message.status_reason or "")
    assert [(e.type, e.agent_id) for e in out.events] == [
        (EventKind.MESSAGE_FAILED, sender.agent_id)
    ]
