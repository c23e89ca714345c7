"""The heartbeat cache against a real nats-server: fed by the bucket's stream, it answers
``last_heartbeat_at`` without a KV request, and forgets a worker whose key expired."""

import asyncio
from datetime import UTC, datetime
from uuid import UUID

import nats.aio.client

from agent_orchestrator.contracts.liveness import Heartbeat
from agent_orchestrator.contracts.subjects import HEARTBEATS_STREAM, heartbeat_subject
from agent_orchestrator.domain.ids import new_id
from agent_orchestrator.service import Service
from agent_orchestrator.storage.heartbeat_cache import HeartbeatCache


async def _beat(nc: nats.aio.client.Client, agent_id: UUID, by: str, ttl_s: int) -> None:
    beat = Heartbeat(by=by, worker="w1", at=datetime.now(UTC))
    await nc.jetstream().publish(
        heartbeat_subject(str(agent_id)), beat.model_dump_json().encode(), msg_ttl=ttl_s
    )


async def _until(predicate: object, within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.02)


async def test_a_worker_beat_shows_and_its_expiry_clears_it(
    service: Service, nc: nats.aio.client.Client
) -> None:
    cache = service.heartbeats.cache
    assert cache.ready
    worker, grace = new_id(), new_id()
    await _beat(nc, worker, "worker", ttl_s=1)
    await _beat(nc, grace, "orchestrator", ttl_s=60)

    await _until(lambda: worker in cache.worker_beats([worker]))
    assert cache.worker_beats([worker, grace]).keys() == {worker}
    # The key expires after its TTL; the server's marker removes it from the cache.
    await _until(lambda: worker not in cache.worker_beats([worker]))


async def test_a_new_cache_starts_from_the_last_beat_of_every_key(
    service: Service, nc: nats.aio.client.Client
) -> None:
    agent_id = new_id()
    await _beat(nc, agent_id, "worker", ttl_s=60)
    cache = HeartbeatCache(HEARTBEATS_STREAM)
    await cache.start(nc.jetstream())
    try:
        await _until(lambda: cache.ready)
        await _until(lambda: agent_id in cache.worker_beats([agent_id]))
        beat_at = cache.worker_beats([agent_id])[agent_id]
        assert abs((datetime.now(UTC) - beat_at).total_seconds()) < 30
    finally:
        await cache.stop()
    assert not cache.ready
