"""Batches a worker's delivery checks and confirmations into communication.handover requests.

Natural batching: one request is in flight at a time; whatever was asked meanwhile (offers of
fetched messages, confirmations of handled ones) goes in the next one. At low load a request
carries one item, so nothing waits for a timer; under load one request carries many.
"""

import asyncio
from typing import Any
from uuid import UUID

from agent_orchestrator.client.requests import OrchestratorClient
from agent_orchestrator.contracts.deliveries import (
    MAX_HANDOVER_IDS,
    DeliveryOutcome,
    HandOverReply,
)


class HandOverBatcher:
    """Gathers offers and confirmations of one agent's inbox messages."""

    def __init__(self, client: OrchestratorClient, agent_id: UUID) -> None:
        self._client = client
        self._agent_id = agent_id
        self._offers: list[tuple[list[UUID], asyncio.Future[HandOverReply]]] = []
        self._confirms: list[tuple[UUID, asyncio.Future[DeliveryOutcome | None]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def offer(self, ids: list[UUID]) -> HandOverReply:
        """The service's answer on which of ``ids`` may reach the program."""
        future: asyncio.Future[HandOverReply] = asyncio.get_running_loop().create_future()
        self._offers.append((ids[:MAX_HANDOVER_IDS], future))
        self._kick()
        return await future

    async def confirm(self, communication_id: UUID) -> DeliveryOutcome | None:
        """Record one message DELIVERED; how it ended (None: not this agent's message)."""
        future: asyncio.Future[DeliveryOutcome | None] = asyncio.get_running_loop().create_future()
        self._confirms.append((communication_id, future))
        self._kick()
        return await future

    async def drain(self) -> None:
        """Wait until everything asked so far has been answered."""
        while self._flushing is not None and not self._flushing.done():
            await asyncio.shield(self._flushing)

    def _kick(self) -> None:
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush())

    def _take_offers(self) -> list[tuple[list[UUID], asyncio.Future[HandOverReply]]]:
        taken, count = 0, 0
        for ids, _ in self._offers:
            if taken and count + len(ids) > MAX_HANDOVER_IDS:
                break
            taken, count = taken + 1, count + len(ids)
        offers, self._offers = self._offers[:taken], self._offers[taken:]
        return offers

    async def _flush(self) -> None:
        while self._offers or self._confirms:
            offers = self._take_offers()
            confirms = self._confirms[:MAX_HANDOVER_IDS]
            self._confirms = self._confirms[MAX_HANDOVER_IDS:]
            try:
                reply = await self._client.hand_over(
                    self._agent_id,
                    offered=[i for ids, _ in offers for i in ids],
                    delivered=[i for i, _ in confirms],
                )
            except Exception as exc:
                futures: list[asyncio.Future[Any]] = [f for _, f in offers]
                futures += [f for _, f in confirms]
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)
                continue
            outcomes = {o.communication_id: o for o in reply.confirmed}
            for _, offered in offers:
                if not offered.done():
                    offered.set_result(reply)
            for communication_id, confirmed in confirms:
                if not confirmed.done():
                    confirmed.set_result(outcomes.get(communication_id))
