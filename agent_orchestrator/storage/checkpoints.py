"""Checkpoints: records in PostgreSQL, snapshot bytes in JetStream.

A snapshot up to ``inline_max_bytes`` is a value in KV bucket ``agent_checkpoints`` under
``<agent_id>.<checkpoint_id>``; a larger one goes to the object store of the same name under
``<agent_id>/<checkpoint_id>`` (chunked), transparently for callers. Bytes are written before
the record, so a record never points at missing bytes.
"""

import contextlib
from uuid import UUID

import asyncpg
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, ObjectStoreConfig, StorageType
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NotFoundError, ObjectNotFoundError
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from agent_orchestrator.contracts.checkpoints import Checkpoint, CheckpointStorage
from agent_orchestrator.contracts.subjects import CHECKPOINT_BUCKET, CHECKPOINT_OBJECTS
from agent_orchestrator.domain.errors import NotFound, Unavailable
from agent_orchestrator.storage.atomic import (
    ATOMIC_WRITES,
    AtomicWrite,
    IdempotencyRecord,
    OutboxMessage,
)
from agent_orchestrator.storage.checkpoint_writes import INSERT_CHECKPOINTS, CheckpointWrite
from agent_orchestrator.storage.jetstream import jetstream_calls, kv_span
from agent_orchestrator.storage.postgres import Database, translate_errors

COLUMNS = (
    "checkpoint_id, agent_id, label, recoverable, state_revision, agent_status, "
    "agent_version, size_bytes, storage, scheduled, created_at"
)


def _key(agent_id: UUID, checkpoint_id: UUID) -> str:
    return f"{agent_id}.{checkpoint_id}"


def _object(agent_id: UUID, checkpoint_id: UUID) -> str:
    return f"{agent_id}/{checkpoint_id}"


class CheckpointBlobs:
    """Snapshot bytes in KV (small) or the object store (large)."""

    def __init__(self, *, inline_max_bytes: int, replicas: int = 1) -> None:
        self.inline_max_bytes = inline_max_bytes
        self._replicas = replicas
        self._js: JetStreamContext | None = None
        self._kv: KeyValue | None = None
        self._objects: ObjectStore | None = None

    async def open(self, js: JetStreamContext) -> None:
        """Declare the bucket and the object store (idempotent) and bind to them."""
        self._js = js
        try:
            self._kv = await js.key_value(CHECKPOINT_BUCKET)
        except BucketNotFoundError:
            self._kv = await js.create_key_value(
                KeyValueConfig(
                    bucket=CHECKPOINT_BUCKET,
                    description="Checkpoint snapshots of agent state (small ones).",
                    max_value_size=self.inline_max_bytes,
                    storage=StorageType.FILE,
                    replicas=self._replicas,
                )
            )
        try:
            self._objects = await js.object_store(CHECKPOINT_OBJECTS)
        except (BucketNotFoundError, NotFoundError):
            self._objects = await js.create_object_store(
                CHECKPOINT_OBJECTS,
                ObjectStoreConfig(
                    description="Checkpoint snapshots too large for a KV value.",
                    storage=StorageType.FILE,
                    replicas=self._replicas,
                ),
            )

    def _bound(self) -> tuple[JetStreamContext, KeyValue, ObjectStore]:
        if self._js is None or self._kv is None or self._objects is None:
            raise Unavailable("the checkpoint stores are not open")
        return self._js, self._kv, self._objects

    async def put(self, agent_id: UUID, checkpoint_id: UUID, data: bytes) -> CheckpointStorage:
        """Store the bytes where they fit; returns where."""
        _, kv, objects = self._bound()
        with jetstream_calls():
            if len(data) <= self.inline_max_bytes:
                with kv_span("put", CHECKPOINT_BUCKET, _key(agent_id, checkpoint_id)):
                    await kv.put(_key(agent_id, checkpoint_id), data)
                return CheckpointStorage.KV
            with kv_span("object.put", CHECKPOINT_OBJECTS, _object(agent_id, checkpoint_id)):
                await objects.put(_object(agent_id, checkpoint_id), data)
            return CheckpointStorage.OBJECT_STORE

    async def get(self, checkpoint: Checkpoint) -> bytes:
        """The snapshot bytes of a checkpoint."""
        _, kv, objects = self._bound()
        with jetstream_calls():
            try:
                if checkpoint.storage is CheckpointStorage.KV:
                    key = _key(checkpoint.agent_id, checkpoint.checkpoint_id)
                    with kv_span("get", CHECKPOINT_BUCKET, key):
                        entry = await kv.get(key)
                    return entry.value or b""
                name = _object(checkpoint.agent_id, checkpoint.checkpoint_id)
                with kv_span("object.get", CHECKPOINT_OBJECTS, name):
                    result = await objects.get(name)
                return result.data or b""
            except (KeyNotFoundError, ObjectNotFoundError) as exc:
                raise NotFound(
                    f"snapshot of checkpoint {checkpoint.checkpoint_id} is missing"
                ) from exc

    async def get_inline(self, agent_id: UUID, checkpoint_id: UUID) -> bytes | None:
        """The bytes of a checkpoint kept in KV; None when there are none (not inline, or
        missing). Needs no record, so it can be read alongside it."""
        _, kv, _ = self._bound()
        key = _key(agent_id, checkpoint_id)
        with jetstream_calls(), kv_span("get", CHECKPOINT_BUCKET, key):
            try:
                entry = await kv.get(key)
            except KeyNotFoundError:
                return None
        return entry.value or b""

    async def delete(self, checkpoints: list[Checkpoint]) -> None:
        """Remove the bytes of these checkpoints (missing ones are fine)."""
        _, kv, objects = self._bound()
        with jetstream_calls():
            for cp in checkpoints:
                if cp.storage is CheckpointStorage.KV:
                    with kv_span("purge", CHECKPOINT_BUCKET, _key(cp.agent_id, cp.checkpoint_id)):
                        await kv.purge(_key(cp.agent_id, cp.checkpoint_id))
                else:
                    name = _object(cp.agent_id, cp.checkpoint_id)
                    with (
                        contextlib.suppress(ObjectNotFoundError),
                        kv_span("object.delete", CHECKPOINT_OBJECTS, name),
                    ):
                        await objects.delete(name)


def _checkpoint(row: asyncpg.Record) -> Checkpoint:
    return Checkpoint.model_validate(dict(row))


class CheckpointRepository:
    """Checkpoint records in PostgreSQL."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @translate_errors
    async def insert(
        self,
        checkpoint: Checkpoint,
        outbox: list[OutboxMessage],
        idempotency: IdempotencyRecord | None = None,
    ) -> bool:
        """Record a checkpoint of an existing agent; False when the agent is gone."""
        write = CheckpointWrite(checkpoint, outbox, idempotency)
        return await self._db.group_commit.submit(INSERT_CHECKPOINTS, write)

    @translate_errors
    async def all_of(self, agent_id: UUID) -> list[Checkpoint]:
        """An agent's checkpoints, newest first."""
        rows = await self._db.pool.fetch(
            f"SELECT {COLUMNS} FROM checkpoints WHERE agent_id = $1 ORDER BY checkpoint_id DESC",
            agent_id,
        )
        return [_checkpoint(row) for row in rows]

    @translate_errors
    async def find(self, agent_id: UUID, checkpoint_id: UUID | None) -> Checkpoint:
        """The given checkpoint, or the latest recoverable one; NotFound otherwise."""
        row = await self._db.pool.fetchrow(
            f"""SELECT {COLUMNS} FROM checkpoints
                WHERE agent_id = $1
                  AND (checkpoint_id = $2 OR ($2::uuid IS NULL AND recoverable))
                ORDER BY checkpoint_id DESC LIMIT 1""",
            agent_id,
            checkpoint_id,
        )
        if row is None:
            what = f"checkpoint {checkpoint_id}" if checkpoint_id else "a recoverable checkpoint"
            raise NotFound(f"agent {agent_id} has no {what}")
        return _checkpoint(row)

    @translate_errors
    async def delete(
        self,
        agent_id: UUID,
        checkpoint_ids: list[UUID],
        outbox: list[OutboxMessage],
        idempotency: IdempotencyRecord | None = None,
    ) -> None:
        """Delete these records with their events."""
        write = AtomicWrite(
            """DELETE FROM checkpoints WHERE agent_id = $1 AND checkpoint_id = ANY($2::uuid[])
               RETURNING checkpoint_id""",
            [agent_id, checkpoint_ids],
        )
        await self._db.group_commit.submit(
            ATOMIC_WRITES, write.with_outbox(outbox).with_idempotency(idempotency)
        )

    @translate_errors
    async def beyond_newest_scheduled(self, agent_id: UUID, keep: int) -> list[Checkpoint]:
        """Scheduled checkpoints of an agent other than its ``keep`` newest."""
        rows = await self._db.pool.fetch(
            f"""SELECT {COLUMNS} FROM checkpoints WHERE agent_id = $1 AND scheduled
                ORDER BY checkpoint_id DESC OFFSET $2""",
            agent_id,
            keep,
        )
        return [_checkpoint(row) for row in rows]
