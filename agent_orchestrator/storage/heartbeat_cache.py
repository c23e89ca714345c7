"""When each agent's worker last beat, kept in memory from the heartbeat bucket's stream.

An ordered consumer (ephemeral, in memory on the server, recreated by nats-py after a gap or a
reconnect) delivers the last message of every key, then every new one as it is stored. So
agent.get and agent.list answer ``last_heartbeat_at`` without a KV request per call.

Freshness: a heartbeat shows in the cache once the stream delivers it to this instance, normally
within milliseconds of the worker's write (the same delay a KV watcher has). The cache is used
only once it has caught up with the stream (the consumer reported nothing pending); before that,
and while it is not running, readers fall back to a direct KV read.
"""

import logging
from datetime import datetime
from uuid import UUID

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from pydantic import ValidationError

from agent_orchestrator.contracts.liveness import Heartbeat
from agent_orchestrator.contracts.subjects import heartbeat_subject

log = logging.getLogger(__name__)


class HeartbeatCache:
    """agent id -> when its worker last beat, for agents whose worker is live."""

    def __init__(self, stream: str) -> None:
        self._stream = stream
        self._beats: dict[UUID, datetime] = {}
        self._sub: JetStreamContext.PushSubscription | None = None
        self.ready = False
        """True once the cache holds everything the stream had when it started."""

    async def start(self, js: JetStreamContext) -> None:
        """Subscribe from the last message of every key."""
        self._sub = await js.subscribe(
            heartbeat_subject("*"),
            stream=self._stream,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
            cb=self._on_message,
        )
        info = await self._sub.consumer_info()
        delivered = info.delivered.stream_seq if info.delivered else 0
        if info.num_pending == 0 and delivered == 0:
            self.ready = True  # an empty bucket: nothing to catch up with

    async def stop(self) -> None:
        """Unsubscribe; readers fall back to KV reads."""
        self.ready = False
        if self._sub is not None:
            sub, self._sub = self._sub, None
            try:
                await sub.unsubscribe()
            except Exception as exc:  # a closed connection: nothing left to undo
                log.debug("heartbeat cache: unsubscribe failed: %r", exc)

    def worker_beats(self, agent_ids: list[UUID]) -> dict[UUID, datetime]:
        """When each agent's worker last beat, for those with a live worker."""
        beats = self._beats
        return {a: beats[a] for a in agent_ids if a in beats}

    def discard(self, agent_id: UUID) -> None:
        """Forget an agent (deleted: a purge of its key sends nothing on the stream)."""
        self._beats.pop(agent_id, None)

    async def _on_message(self, msg: Msg) -> None:
        agent_id = _agent_of(msg.subject)
        if agent_id is not None:
            at = _worker_beat_at(msg)
            if at is None:
                self._beats.pop(agent_id, None)
            else:
                self._beats[agent_id] = at
        if not self.ready and msg.metadata.num_pending == 0:
            self.ready = True


def _agent_of(subject: str) -> UUID | None:
    try:
        return UUID(subject.rsplit(".", 1)[-1])
    except ValueError:
        return None


def _worker_beat_at(msg: Msg) -> datetime | None:
    """The message's store time if it is a live worker's heartbeat (not a marker, a delete,
    or the service's own grace beat)."""
    if not msg.data or (msg.headers or {}).get("KV-Operation"):
        return None
    try:
        heartbeat = Heartbeat.model_validate_json(msg.data)
    except ValidationError:
        return None
    if heartbeat.by != "worker":
        return None
    return msg.metadata.timestamp
