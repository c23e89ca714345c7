"""Reading AGENT_EVENTS in tests: every message on a subject, or waiting for some to arrive."""

import json
from dataclasses import dataclass
from typing import Any

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from agent_orchestrator.contracts import subjects
from tests.support.polling import eventually


@dataclass(frozen=True)
class StreamEvent:
    """One message of AGENT_EVENTS."""

    seq: int
    subject: str
    msg_id: str | None
    envelope: dict[str, Any]


async def read_events(
    js: JetStreamContext, subject: str = subjects.EVENTS_SUBJECTS
) -> list[StreamEvent]:
    """Every message of AGENT_EVENTS on ``subject``, in stream order (ephemeral pull consumer)."""
    info = await js.stream_info(subjects.EVENTS_STREAM, subjects_filter=subject)
    expected = sum((info.state.subjects or {}).values())
    sub = await js.pull_subscribe(
        subject,
        stream=subjects.EVENTS_STREAM,
        config=ConsumerConfig(
            ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL, inactive_threshold=30.0
        ),
    )
    events: list[StreamEvent] = []
    try:
        while len(events) < expected:
            try:
                batch = await sub.fetch(500, timeout=2.0)
            except nats.errors.TimeoutError:
                break
            for msg in batch:
                events.append(
                    StreamEvent(
                        seq=msg.metadata.sequence.stream,
                        subject=msg.subject,
                        msg_id=(msg.headers or {}).get(subjects.MSG_ID_HEADER),
                        envelope=json.loads(msg.data),
                    )
                )
    finally:
        await sub.unsubscribe()
    assert len(events) == expected, f"read {len(events)} of {expected} messages of {subject}"
    return events


async def wait_for_events(
    js: JetStreamContext, subject: str, count: int, *, within: float = 10.0
) -> list[StreamEvent]:
    """The events on ``subject`` once there are at least ``count`` (the relay is asynchronous)."""
    return await eventually(
        lambda: read_events(js, subject),
        lambda events: len(events) >= count,
        within=within,
        what=f"{count} events on {subject}",
    )
