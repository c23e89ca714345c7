"""The job that publishes one event per state revision.

A state write stores, next to the state, the event it should cause, and the writer publishes
that event itself right after the write (``StateStore.announce``). This reader of the bucket's
own stream (durable consumer ``state-events``) is the backstop: it publishes every revision's
event again, with the same id derived from the revision, which AGENT_EVENTS drops as a
duplicate unless the writer died before publishing. So a state change that was written gets its
event exactly once.

Only the instance that leads the outbox relay reads, in batches: it publishes a batch pipelined
on one connection, so the stream stores the events in revision order, then acknowledges it.
Being quick matters: the bucket keeps ``AO_STATE_HISTORY`` revisions of a key, and a revision
dropped before it was read takes its event with it. Order holds except after a failure: a batch
whose reader died (or whose publish failed midway) is published again after later revisions;
every event carries its revision.
"""

import asyncio
import logging
from collections.abc import Callable

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import PubAck

from agent_orchestrator.contracts.events import Event
from agent_orchestrator.domain.agents import revision_event
from agent_orchestrator.handlers.pull_loop import RETRY_DELAY_S, PullLoop
from agent_orchestrator.storage.state import (
    STATE_EVENTS_BATCH,
    STATE_EVENTS_CONSUMER,
    STATE_STREAM,
    decode_event,
    publish_event,
)

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 5.0


def event_of(msg: Msg) -> Event | None:
    """The event a state-stream message asks for (None for deletes and purges)."""
    operation = (msg.headers or {}).get("KV-Operation")
    if operation in ("DEL", "PURGE") or not msg.data:
        return None
    stored = decode_event(msg.data)
    if stored is None:
        return None
    return revision_event(Event.model_validate(stored), msg.metadata.sequence.stream)


def state_event_publisher(
    js: Callable[[], JetStreamContext], leading: Callable[[], bool]
) -> PullLoop:
    """The loop that publishes state events while ``leading()`` (this instance leads the
    outbox relay); run it with the service's NATS connection."""
    return PullLoop(
        "state events",
        STATE_STREAM,
        STATE_EVENTS_CONSUMER,
        batch=STATE_EVENTS_BATCH,
        handle=lambda msgs: publish_batch(js(), msgs),
        active=leading,
    )


async def publish_batch(js: JetStreamContext, msgs: list[Msg]) -> None:
    """Publish the events of ``msgs`` pipelined, in order; ack each message whose event is
    stored (or that needs none), give back the rest from the first failure on."""
    pending: list[tuple[Msg, asyncio.Future[PubAck] | None]] = []
    for msg in msgs:
        event = event_of(msg)
        if event is None:
            pending.append((msg, None))
            continue
        published = await publish_event(js, event)
        pending.append((msg, published))
    failed = False
    for msg, ack in pending:
        if ack is not None and not failed:
            try:
                await asyncio.wait_for(ack, PUBLISH_TIMEOUT_S)
            except (nats.errors.Error, TimeoutError) as exc:
                log.warning("state events not published yet (%r); retrying", exc)
                failed = True
        if failed:
            await msg.nak(delay=RETRY_DELAY_S)
        else:
            await msg.ack()
