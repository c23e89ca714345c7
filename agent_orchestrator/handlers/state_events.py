"""The durable job that publishes one event per state revision.

A state write stores, next to the state, the event it should cause; this consumer of the
bucket's own stream publishes it to AGENT_EVENTS with an id derived from the revision. So a
state change that was written always gets its event (even if the service dies right after the
write), exactly once (the stream drops a re-publish by its id), in revision order (the consumer
has one message in flight at a time).
"""

import logging
import uuid
from collections.abc import Callable

from faststream.middlewares import AckPolicy
from faststream.nats import JStream, NatsMessage, NatsRouter, PullSub
from nats.errors import Error as NatsError
from nats.js import JetStreamContext

from agent_orchestrator.contracts.events import Event
from agent_orchestrator.contracts.subjects import MSG_ID_HEADER, STATE_BUCKET, event_subject
from agent_orchestrator.storage.state import STATE_EVENTS_CONSUMER, STATE_STREAM, decode_event

log = logging.getLogger(__name__)

RETRY_DELAY_S = 1.0
STATE_EVENT_NAMESPACE = uuid.UUID("6f1d2c1e-5b7a-4c55-9c1e-7a0c6d5e4b3a")


def revision_event(stored: dict[str, object], revision: int) -> Event:
    """The stored event of a revision, completed with the revision and its derived id."""
    event = Event.model_validate(stored)
    data = {**event.data, "revision": revision}
    event_id = uuid.uuid5(STATE_EVENT_NAMESPACE, f"{event.agent_id}:{event.type}:{revision}")
    return event.model_copy(update={"event_id": event_id, "data": data})


def register_state_events(router: NatsRouter, js: Callable[[], JetStreamContext]) -> None:
    """Publish the event of every state revision, in order, exactly once."""

    @router.subscriber(
        f"$KV.{STATE_BUCKET}.>",
        stream=JStream(STATE_STREAM, declare=False),
        durable=STATE_EVENTS_CONSUMER,
        pull_sub=PullSub(batch_size=1, timeout=5.0),
        ack_policy=AckPolicy.MANUAL,
        include_in_schema=False,
    )
    async def publish_state_event(msg: NatsMessage) -> None:
        raw = msg.raw_message
        operation = (raw.headers or {}).get("KV-Operation")
        stored = None if operation in ("DEL", "PURGE") or not raw.data else decode_event(raw.data)
        if stored is not None:
            event = revision_event(stored, raw.metadata.sequence.stream)
            try:
                await js().publish(
                    event_subject(str(event.agent_id), event.type),
                    event.model_dump_json().encode(),
                    headers={MSG_ID_HEADER: str(event.event_id)},
                )
            except (NatsError, TimeoutError):
                log.warning("state event %s not published yet; retrying", event.event_id)
                await msg.nack(delay=RETRY_DELAY_S)
                return
        await msg.ack()
