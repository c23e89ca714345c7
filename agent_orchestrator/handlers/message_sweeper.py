"""The sweep that ends expired messages and keeps AGENT_MESSAGES in step with the log.

Every instance sweeps every ``interval_s``; the work is found in PostgreSQL, so nothing is
forgotten across restarts and instances never double it (each status change is conditional):

- a SENT message past its ``expires_at`` becomes EXPIRED (``message_failed`` event with
  status EXPIRED); the server has already dropped it from the stream by its ``Nats-TTL``;
- a message that reached a final status (delivered by REST, failed, expired) but still has a
  stream sequence is deleted from AGENT_MESSAGES, so it is never delivered again.
"""

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

from agent_orchestrator.contracts.communications import CommunicationStatus
from agent_orchestrator.domain import communications as rules
from agent_orchestrator.domain.errors import Unavailable
from agent_orchestrator.storage.communications import CommunicationRepository
from agent_orchestrator.storage.inboxes import Inboxes

log = logging.getLogger(__name__)

BATCH = 500


class MessageSweeper:
    """Runs ``sweep`` every ``interval_s`` until stopped."""

    def __init__(
        self, communications: CommunicationRepository, inboxes: Inboxes, *, interval_s: float
    ) -> None:
        self._communications = communications
        self._inboxes = inboxes
        self._interval_s = interval_s
        self._stop = asyncio.Event()

    def stop(self) -> None:
        """Make ``run`` return after the current sweep."""
        self._stop.set()

    async def run(self) -> None:
        """Sweep until stopped; a dependency that is down only delays the next sweep."""
        while not self._stop.is_set():
            try:
                await self.sweep()
            except Unavailable as exc:
                log.warning("message sweep postponed: %s (%s)", exc.message, exc.__cause__)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval_s):
                    await self._stop.wait()

    async def sweep(self) -> tuple[int, int]:
        """One round: (messages expired, messages removed from the stream)."""
        expired = await self.expire()
        removed = await self.remove_ended()
        return expired, removed

    async def expire(self) -> int:
        """End every SENT message whose time to live has passed."""
        count = 0
        while due := await self._communications.due_to_expire(datetime.now(UTC), limit=BATCH):
            now = datetime.now(UTC)
            ended = [
                rules.end(d.message, CommunicationStatus.EXPIRED, rules.TTL_EXPIRED, now)
                for d in due
            ]
            events = [
                rules.outcome_event(m, d.recipient, now) for m, d in zip(ended, due, strict=True)
            ]
            count += len(await self._communications.finish(ended, events))
            if len(due) < BATCH:
                break
        return count

    async def remove_ended(self) -> int:
        """Delete messages with a final status from AGENT_MESSAGES."""
        count = 0
        while stale := await self._communications.ended_in_stream(limit=BATCH):
            for _, stream_seq in stale:
                await self._inboxes.delete_message(stream_seq)
            await self._communications.forget_stream_seqs(stale)
            count += len(stale)
            if len(stale) < BATCH:
                break
        return count
