"""Agent heartbeats in KV bucket ``agent_heartbeats`` (key = agent id).

Each heartbeat is written with a per-message TTL (``Nats-TTL``) of the agent's heartbeat window.
When beats stop, the key expires and nats-server writes a delete marker on the key's subject
(``Nats-Marker-Reason: MaxAge``), whether or not any service instance is running; the bucket
keeps such markers for ``marker_ttl_s``. The durable consumer ``liveness-monitor`` reads the
bucket's stream, so every marker is seen once, also after an outage.
"""

import json
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import nats.aio.client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError
from pydantic import ValidationError

from agent_orchestrator.contracts.liveness import Heartbeat
from agent_orchestrator.contracts.subjects import (
    HEARTBEATS_BUCKET,
    HEARTBEATS_STREAM,
    LIVENESS_MONITOR_CONSUMER,
    heartbeat_subject,
)
from agent_orchestrator.domain.errors import Unavailable
from agent_orchestrator.storage.heartbeat_cache import HeartbeatCache
from agent_orchestrator.storage.jetstream import JetStreamBound, jetstream_calls, kv_span

MARKER_REASON = "Nats-Marker-Reason"
DIRECT_GET = f"$JS.API.DIRECT.GET.{HEARTBEATS_STREAM}"
BATCH_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class KeyEntry:
    """The latest message of an agent's key: a heartbeat, or a marker that it expired."""

    seq: int
    at: datetime
    heartbeat: Heartbeat | None
    """None for an expiry marker (or a delete)."""

    @property
    def worker_beat_at(self) -> datetime | None:
        """When a worker beat, if this is a live worker's heartbeat."""
        if self.heartbeat is not None and self.heartbeat.by == "worker":
            return self.at
        return None


def agent_of(subject: str) -> UUID | None:
    """The agent id of a key's subject, if it is one."""
    try:
        return UUID(subject.rsplit(".", 1)[-1])
    except ValueError:
        return None


def is_expiry_marker(headers: dict[str, str] | None) -> bool:
    """Whether a message of the bucket's stream says a key expired (its beats stopped)."""
    return (headers or {}).get(MARKER_REASON) == "MaxAge"


def _entry(msg: Msg) -> KeyEntry | None:
    """A direct-get reply as a KeyEntry; None for a status reply (not found, end of batch)."""
    headers = msg.headers or {}
    if "Status" in headers or "Nats-Sequence" not in headers:
        return None
    heartbeat = None
    if msg.data and not is_expiry_marker(headers):
        try:
            heartbeat = Heartbeat.model_validate_json(msg.data)
        except ValidationError:
            heartbeat = None  # not ours: treat as no worker
    return KeyEntry(
        seq=int(headers["Nats-Sequence"]),
        at=datetime.fromisoformat(headers["Nats-Time-Stamp"]),
        heartbeat=heartbeat,
    )


class Heartbeats(JetStreamBound):
    """Writes grace beats, reads the latest entry of keys, declares the bucket."""

    def __init__(self, *, marker_ttl_s: float, replicas: int = 1) -> None:
        super().__init__()
        self._nc: nats.aio.client.Client | None = None
        self._config = KeyValueConfig(
            bucket=HEARTBEATS_BUCKET,
            description="Heartbeats of agents' workers, by agent id (each with a TTL).",
            history=1,
            max_value_size=4096,
            storage=StorageType.FILE,
            replicas=replicas,
            direct=True,
            limit_marker_ttl=marker_ttl_s,
        )
        self.cache = HeartbeatCache(HEARTBEATS_STREAM)
        """Worker beats in memory, fed by the bucket's stream (see heartbeat_cache)."""

    async def declare(self, nc: nats.aio.client.Client) -> None:
        """Bind, creating the bucket and the monitor's durable consumer if needed."""
        self._nc = nc
        js = nc.jetstream()
        self.open(js)
        try:
            await js.key_value(HEARTBEATS_BUCKET)
        except BucketNotFoundError:
            await js.create_key_value(self._config)
        await js.add_consumer(
            HEARTBEATS_STREAM,
            ConsumerConfig(
                durable_name=LIVENESS_MONITOR_CONSUMER,
                filter_subject=heartbeat_subject("*"),
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=30.0,
                max_deliver=-1,
                max_ack_pending=10_000,
                description="Finds agents whose heartbeats stopped (expiry markers).",
            ),
        )
        await self.cache.start(js)

    async def close(self) -> None:
        """Stop feeding the cache."""
        await self.cache.stop()

    @property
    def nc(self) -> nats.aio.client.Client:
        """The bound connection."""
        if self._nc is None:
            raise Unavailable("heartbeats are not open")
        return self._nc

    async def beat(self, agent_id: UUID, heartbeat: Heartbeat, ttl_s: int) -> None:
        """Write the agent's key with a time to live (the worker SDK does the same)."""
        with jetstream_calls(), kv_span("put", HEARTBEATS_BUCKET, str(agent_id)):
            await self.js.publish(
                heartbeat_subject(str(agent_id)),
                heartbeat.model_dump_json().encode(),
                msg_ttl=ttl_s,
            )

    async def latest(self, agent_id: UUID) -> KeyEntry | None:
        """The key's latest message, or None if it never had one."""
        with jetstream_calls(), kv_span("get", HEARTBEATS_BUCKET, str(agent_id)):
            reply = await self.nc.request(
                f"{DIRECT_GET}.{heartbeat_subject(str(agent_id))}", b"", timeout=BATCH_TIMEOUT_S
            )
        return _entry(reply)

    async def worker_beats(self, agent_ids: list[UUID]) -> dict[UUID, datetime]:
        """When each agent's worker last beat, for those with a live worker: from the cache
        once it has caught up with the stream, else with one direct-get request."""
        if not agent_ids:
            return {}
        if self.cache.ready:
            return self.cache.worker_beats(agent_ids)
        request = {"multi_last": [heartbeat_subject(str(a)) for a in agent_ids]}
        beats: dict[UUID, datetime] = {}
        keys = str(agent_ids[0]) if len(agent_ids) == 1 else f"{len(agent_ids)} keys"
        with jetstream_calls(), kv_span("get_last", HEARTBEATS_BUCKET, keys):
            inbox = self.nc.new_inbox()
            sub = await self.nc.subscribe(inbox)
            try:
                await self.nc.publish(DIRECT_GET, json.dumps(request).encode(), reply=inbox)
                while entry := _entry(msg := await sub.next_msg(timeout=BATCH_TIMEOUT_S)):
                    agent_id = agent_of(msg.headers["Nats-Subject"] if msg.headers else "")
                    if agent_id is not None and entry.worker_beat_at is not None:
                        beats[agent_id] = entry.worker_beat_at
            finally:
                await sub.unsubscribe()
        return beats

    async def forget(self, agent_id: UUID) -> None:
        """Remove the agent's key and its history (the agent is deleted)."""
        self.cache.discard(agent_id)
        with jetstream_calls(), kv_span("purge", HEARTBEATS_BUCKET, str(agent_id)):
            await self.js.purge_stream(HEARTBEATS_STREAM, subject=heartbeat_subject(str(agent_id)))
