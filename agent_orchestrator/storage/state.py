"""Agent runtime state in JetStream KV bucket ``agent_state`` (key = agent id).

Each write is a compare-and-set on the key's revision, so concurrent writers never overwrite
each other blindly; the bucket keeps a configurable number of earlier revisions as history.
"""

import asyncio
import json
import logging
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from nats.errors import Error as NatsError
from nats.errors import MaxPayloadError
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    KeyValueConfig,
    PubAck,
    StorageType,
)
from nats.js.errors import (
    BucketNotFoundError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NoKeysError,
)
from nats.js.kv import KeyValue

from agent_orchestrator.contracts.events import Event
from agent_orchestrator.contracts.limits import max_payload_refusal
from agent_orchestrator.contracts.subjects import MSG_ID_HEADER, STATE_BUCKET, event_subject
from agent_orchestrator.domain.errors import PayloadTooLarge, Unavailable
from agent_orchestrator.storage.jetstream import kv_span

log = logging.getLogger(__name__)

STATE_STREAM = f"KV_{STATE_BUCKET}"
STATE_EVENTS_CONSUMER = "state-events"
#: A batch of the state-events consumer whose reader died (its instance, or its NATS node when
#: the consumer's leader moved) is delivered again after this; meanwhile a key that takes more
#: than its history of revisions loses the events of the oldest (the bucket drops them unread).
#: So keep it short: a redelivery to a reader still publishing is harmless (same Nats-Msg-Id,
#: dropped by AGENT_EVENTS).
STATE_EVENTS_ACK_WAIT_S = 5.0
#: How long a state write keeps trying to publish its event before leaving it to the reader.
ANNOUNCE_PATIENCE_S = 10.0
#: Revisions the state-events publisher reads (and publishes pipelined) at a time.
STATE_EVENTS_BATCH = 256
#: How long a writer waits for the acknowledgement of its event before publishing it again.
EVENT_ACK_WAIT_S = 5.0
#: Revisions this instance wrote that it keeps to merge the next write into without a read.
LATEST_KEPT = 4096
#: Only states up to this size (stored bytes) are kept.
LATEST_MAX_BYTES = 64 * 1024
#: Room in the bucket's message size limit for the headers of a compare-and-set write, so
#: that a value within the state limit is never refused by JetStream for its headers.
HEADER_ROOM_BYTES = 1024


class StaleRevision(Exception):
    """The key moved past the revision the write was based on."""


@dataclass(frozen=True)
class StoredState:
    """One revision of an agent's state (revision 0: never written)."""

    state: dict[str, Any]
    revision: int
    updated_at: datetime | None
    #: Bytes stored (the state with its envelope); 0 when never written.
    size: int = 0
    #: This instance's copy of a revision it wrote (``read_for_write``), not read from the bucket.
    kept: bool = False


def _decode(value: bytes | None, revision: int) -> StoredState:
    doc = json.loads(value or b"{}")
    updated = doc.get("updated_at")
    return StoredState(
        doc.get("state", {}),
        revision,
        datetime.fromisoformat(updated) if updated else None,
        len(value or b""),
    )


def encode_state(state: dict[str, Any], updated_at: datetime, event: Event) -> bytes:
    """The stored form of a state: the document, when it was written, and the event that the
    state-events consumer publishes for this revision (so a write can never lose its event)."""
    return encode_state_json(
        json.dumps(
            state,
            separators=(",", ":"),
            ensure_ascii=False,  # UTF-8: the size limit counts what a caller sent, not escapes
        ).encode(),
        updated_at,
        event,
    )


def encode_state_json(state_json: bytes, updated_at: datetime, event: Event) -> bytes:
    """``encode_state`` of a state already in JSON (e.g. a checkpoint's bytes, as read): the
    text is put in as it is, not decoded and encoded again."""
    rest = json.dumps(
        {"updated_at": updated_at.isoformat(), "event": event.model_dump(mode="json")},
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    return b"".join((b'{"state":', state_json, b",", rest[1:]))


def decode_event(value: bytes) -> dict[str, Any] | None:
    """The event stored with a state revision, if any."""
    event = json.loads(value).get("event")
    return event if isinstance(event, dict) else None


async def publish_event(js: JetStreamContext, event: Event) -> "asyncio.Future[PubAck]":
    """Send a state event to AGENT_EVENTS (deduplicated by its id); the future is its ack."""
    return await js.publish_async(
        event_subject(str(event.agent_id), event.type),
        event.model_dump_json().encode(),
        headers={MSG_ID_HEADER: str(event.event_id)},
    )


@dataclass(frozen=True)
class SentEvent:
    """The event of a revision, published; ``ack`` is None when the publish itself failed."""

    event: Event
    ack: "asyncio.Future[PubAck] | None"


class StateStore:
    """CAS reads and writes of agent state; NATS failures become Unavailable."""

    def __init__(self, *, history: int, max_value_bytes: int, replicas: int = 1) -> None:
        self._config = KeyValueConfig(
            bucket=STATE_BUCKET,
            description="Runtime state of agents, by agent id.",
            history=history,
            max_value_size=max_value_bytes + HEADER_ROOM_BYTES,
            storage=StorageType.FILE,
            replicas=replicas,
        )
        self._kv: KeyValue | None = None
        self._js: JetStreamContext | None = None
        self._writers: weakref.WeakValueDictionary[UUID, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self._latest: OrderedDict[UUID, StoredState] = OrderedDict()

    async def open(self, js: JetStreamContext) -> None:
        """Declare the bucket with its limits (updating them if it exists) and bind to it."""
        self._js = js
        try:
            await js.key_value(STATE_BUCKET)
        except BucketNotFoundError:
            self._kv = await js.create_key_value(self._config)
        else:
            stream = await js.stream_info(STATE_STREAM)
            config = stream.config
            config.max_msgs_per_subject = self._config.history
            config.max_msg_size = self._config.max_value_size
            await js.update_stream(config)
            self._kv = await js.key_value(STATE_BUCKET)
        await js.add_consumer(
            STATE_STREAM,
            ConsumerConfig(
                durable_name=STATE_EVENTS_CONSUMER,
                filter_subject=f"$KV.{STATE_BUCKET}.>",
                # From now on when first made; then it keeps its place.
                deliver_policy=DeliverPolicy.NEW,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=STATE_EVENTS_ACK_WAIT_S,
                max_deliver=-1,
                # Read in batches by one instance (the relay's leader), published in order.
                max_ack_pending=STATE_EVENTS_BATCH,
                description="Publishes one event per state revision.",
            ),
        )

    @property
    def kv(self) -> KeyValue:
        """The bound bucket."""
        if self._kv is None:
            raise Unavailable("the agent_state bucket is not open")
        return self._kv

    async def read(self, agent_id: UUID) -> StoredState:
        """The current state; revision 0 and ``{}`` when never written."""
        try:
            with kv_span("get", STATE_BUCKET, str(agent_id)):
                entry = await self.kv.get(str(agent_id))
        except KeyNotFoundError:
            return StoredState({}, 0, None)
        except (NatsError, TimeoutError) as exc:
            raise Unavailable("JetStream is unavailable; retry shortly") from exc
        return _decode(entry.value, entry.revision or 0)

    async def read_for_write(self, agent_id: UUID, expected_revision: int | None) -> StoredState:
        """The state to base a compare-and-set on: the revision this instance wrote last, when
        it still has it (and it is the one expected), else a read. A stale one costs only a
        failed compare-and-set (``StaleRevision``), after which the writer reads."""
        latest = self._latest.get(agent_id)
        if latest is not None and expected_revision in (None, latest.revision):
            return latest
        return await self.read(agent_id)

    def wrote(self, agent_id: UUID, state: dict[str, Any], revision: int, size: int) -> None:
        """Keep a revision just written (small states only, the newest ``LATEST_KEPT``)."""
        if size > LATEST_MAX_BYTES:
            self._latest.pop(agent_id, None)
            return
        self._latest[agent_id] = StoredState(state, revision, None, size, kept=True)
        self._latest.move_to_end(agent_id)
        if len(self._latest) > LATEST_KEPT:
            self._latest.popitem(last=False)

    def forget(self, agent_id: UUID) -> None:
        """Drop the kept revision of an agent (it moved on elsewhere, or was purged)."""
        self._latest.pop(agent_id, None)

    async def write(self, agent_id: UUID, value: bytes, *, last_revision: int) -> int:
        """Store ``value`` if the key is still at ``last_revision``; the new revision."""
        key = str(agent_id)
        try:
            with kv_span("create" if last_revision == 0 else "update", STATE_BUCKET, key):
                if last_revision == 0:
                    return await self.kv.create(key, value)
                return await self.kv.update(key, value, last=last_revision)
        except KeyWrongLastSequenceError as exc:
            self.forget(agent_id)
            raise StaleRevision from exc
        except MaxPayloadError as exc:
            raise self._over_max_payload(value) from exc
        except (NatsError, TimeoutError) as exc:
            self.forget(agent_id)
            if "wrong last sequence" in str(exc):
                raise StaleRevision from exc
            raise Unavailable("JetStream is unavailable; retry shortly") from exc

    async def put(self, agent_id: UUID, value: bytes) -> int:
        """Store ``value`` whatever the key holds (last writer wins); the new revision."""
        try:
            with kv_span("put", STATE_BUCKET, str(agent_id)):
                return await self.kv.put(str(agent_id), value)
        except MaxPayloadError as exc:
            raise self._over_max_payload(value) from exc
        except (NatsError, TimeoutError) as exc:
            raise Unavailable("JetStream is unavailable; retry shortly") from exc

    def _over_max_payload(self, value: bytes) -> PayloadTooLarge:
        """The error for a state that the NATS server's max_payload keeps out of the bucket."""
        # nats-py exposes the server's limit on the connection only.
        max_payload = int(getattr(getattr(self._js, "_nc", None), "max_payload", 0) or 0)
        return PayloadTooLarge(
            max_payload_refusal("state", len(value), max_payload),
            details={"size": len(value), "limit": max_payload, "setting": "max_payload"},
        )

    def writing(self, agent_id: UUID) -> asyncio.Lock:
        """Held while this instance writes an agent's state and announces it, so that its
        events leave in revision order."""
        lock = self._writers.get(agent_id)
        if lock is None:
            lock = self._writers[agent_id] = asyncio.Lock()
        return lock

    async def send_event(self, event: Event) -> SentEvent:
        """Publish the event of a revision just written without waiting for its ack; call it
        while holding ``writing(agent_id)``: this connection hands the events to AGENT_EVENTS in
        the order they were sent, so the agent's events are stored in revision order while the
        lock is free for its next write. Then ``confirm`` the result, outside the lock."""
        if self._js is None:
            return SentEvent(event, None)
        try:
            ack = await publish_event(self._js, event)
        except (NatsError, TimeoutError):
            return SentEvent(event, None)
        return SentEvent(event, ack)

    async def confirm(self, sent: SentEvent) -> None:
        """Wait for the ack of a ``send_event``; without one (AGENT_EVENTS cannot take it
        now), publish it again under the agent's lock with ``announce``'s patience. Order
        then holds as after any failure: later revisions' events may be stored first, each
        carrying its revision."""
        if sent.ack is not None:
            try:
                await asyncio.wait_for(sent.ack, EVENT_ACK_WAIT_S)
                return
            except (NatsError, TimeoutError):
                pass
        async with self.writing(sent.event.agent_id):
            await self.announce(sent.event)

    async def announce(self, event: Event) -> None:
        """Publish the event of a revision just written, retrying for up to
        ``ANNOUNCE_PATIENCE_S`` while AGENT_EVENTS cannot take it (e.g. it is electing a
        leader). The caller holds ``writing(agent_id)`` meanwhile, so the agent's state cannot
        race past the bucket's history while its event waits. After that the state-events
        reader publishes it (it re-publishes every revision's event, under the same id)."""
        if self._js is None:
            return
        deadline = time.monotonic() + ANNOUNCE_PATIENCE_S
        pause = 0.1
        while True:
            try:
                await asyncio.wait_for(await publish_event(self._js, event), EVENT_ACK_WAIT_S)
                return
            except (NatsError, TimeoutError) as exc:
                if time.monotonic() + pause > deadline:
                    log.warning(
                        "state event %s left to the state-events reader: %r", event.event_id, exc
                    )
                    return
            await asyncio.sleep(pause)
            pause = min(1.0, pause * 2)

    async def history(self, agent_id: UUID, limit: int) -> list[StoredState]:
        """Earlier revisions, newest first (as many as the bucket keeps)."""
        try:
            with kv_span("history", STATE_BUCKET, str(agent_id)):
                entries = await self.kv.history(str(agent_id))
        except (NoKeysError, KeyNotFoundError):  # nats-py: NoKeysError for a key never written
            return []
        except (NatsError, TimeoutError) as exc:
            raise Unavailable("JetStream is unavailable; retry shortly") from exc
        kept = [e for e in entries if e.operation in (None, "PUT") and e.value]
        return [_decode(e.value, e.revision or 0) for e in reversed(kept)][:limit]

    async def purge(self, agent_id: UUID) -> None:
        """Forget an agent's state and its history."""
        self.forget(agent_id)
        try:
            with kv_span("purge", STATE_BUCKET, str(agent_id)):
                await self.kv.purge(str(agent_id))
        except (NatsError, TimeoutError) as exc:
            raise Unavailable("JetStream is unavailable; retry shortly") from exc
