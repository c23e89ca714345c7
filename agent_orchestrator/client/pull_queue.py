"""Reading one of an agent's durable consumers (its inbox or its task queue) in batches.

While a message is held (fetched and not yet acknowledged or given back), the queue tells the
server every third of the ack wait that it is still being worked on, so it is not delivered to
another receiver meanwhile. Fetch errors (a reconnect, a restarting server) are waited out; a
consumer that no longer exists, because its agent was terminated or deleted, ends the queue
with :class:`QueueClosed`.
"""

import asyncio
import contextlib
import logging

import nats.aio.client
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js.client import JetStreamContext

from agent_orchestrator.client.errors import QueueClosed
from agent_orchestrator.contracts.subjects import DEFAULT_JS_API_PREFIX

log = logging.getLogger(__name__)


class PullQueue:
    """One durable pull consumer, bound by name."""

    def __init__(
        self,
        nc: nats.aio.client.Client,
        stream: str,
        consumer: str,
        *,
        batch: int,
        poll_s: float,
        api_prefix: str | None = None,
    ) -> None:
        """``api_prefix``: where the JetStream API is reached (``$JS.API``, or
        ``WORKER_JS_API_PREFIX`` for a worker in a project's account)."""
        self.stream = stream
        self.consumer = consumer
        self._js: JetStreamContext = nc.jetstream(prefix=api_prefix or DEFAULT_JS_API_PREFIX)
        self._batch = batch
        self._poll_s = poll_s
        self._sub: JetStreamContext.PullSubscription | None = None
        self._held: dict[int, Msg] = {}
        self._keepalive: asyncio.Task[None] | None = None

    async def open(self, *, timeout: float) -> None:
        """Bind, waiting up to ``timeout`` for the consumer to exist (TimeoutError if not)."""
        async with asyncio.timeout(timeout):
            while True:
                try:
                    info = await self._js.consumer_info(self.stream, self.consumer)
                    break
                except nats.js.errors.NotFoundError:
                    await asyncio.sleep(0.1)
        self._sub = await self._js.pull_subscribe_bind(self.consumer, self.stream)
        ack_wait = info.config.ack_wait or 30.0
        self._keepalive = asyncio.create_task(self._keep_held(ack_wait / 3))

    async def close(self) -> None:
        """Stop; held messages are delivered again after their ack wait."""
        if self._keepalive is not None:
            self._keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keepalive
            self._keepalive = None
        if self._sub is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._sub.unsubscribe()
            self._sub = None

    async def fetch(self, batch: int | None = None) -> list[Msg]:
        """Up to ``batch`` messages, now held; [] when none came within the poll time."""
        if self._sub is None:
            raise RuntimeError("open the queue first")
        try:
            msgs = await self._sub.fetch(batch or self._batch, timeout=self._poll_s)
        except (nats.errors.TimeoutError, TimeoutError):
            return []
        except nats.js.errors.NotFoundError as exc:
            raise QueueClosed(f"consumer {self.consumer} is gone") from exc
        except nats.errors.Error as exc:
            await self._check_open(exc)
            return []
        for msg in msgs:
            self._held[msg.metadata.sequence.stream] = msg
        return msgs

    def release(self, msg: Msg) -> None:
        """Stop holding ``msg`` (it was acknowledged or given back)."""
        self._held.pop(msg.metadata.sequence.stream, None)

    async def settle(self, msg: Msg, *, ack: bool, delay: float | None = None) -> None:
        """Acknowledge ``msg`` (or give it back after ``delay``); a lost connection is fine:
        the server delivers it again."""
        self.release(msg)
        with contextlib.suppress(nats.errors.Error):
            if ack:
                await msg.ack()
            else:
                await msg.nak(delay=delay)

    async def _check_open(self, exc: Exception) -> None:
        """After a fetch error: QueueClosed if the consumer is gone, else wait a little."""
        try:
            await self._js.consumer_info(self.stream, self.consumer)
        except nats.js.errors.NotFoundError:
            raise QueueClosed(f"consumer {self.consumer} is gone") from exc
        except (nats.errors.Error, TimeoutError):
            log.debug("%s not reachable yet: %r", self.consumer, exc)
        await asyncio.sleep(min(1.0, self._poll_s))

    async def _keep_held(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            for msg in list(self._held.values()):
                with contextlib.suppress(nats.errors.Error):
                    await msg.in_progress()
