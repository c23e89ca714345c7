"""A durable pull consumer read in batches by a loop of raw nats-py (no FastStream): for the
background jobs that want whole batches (the liveness monitor, the state-events publisher)."""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import nats.aio.client
import nats.errors
from nats.aio.msg import Msg

log = logging.getLogger(__name__)

POLL_S = 1.0
RETRY_DELAY_S = 1.0


class PullLoop:
    """Fetches up to ``batch`` messages at a time from the durable ``durable`` of ``stream``
    and hands each batch to ``handle``, while ``active()`` holds, until stopped."""

    def __init__(
        self,
        name: str,
        stream: str,
        durable: str,
        *,
        batch: int,
        handle: Callable[[list[Msg]], Awaitable[None]],
        active: Callable[[], bool] = lambda: True,
    ) -> None:
        """``name`` says in the log what the loop is for."""
        self._name = name
        self._stream = stream
        self._durable = durable
        self._batch = batch
        self._handle = handle
        self._active = active
        self._stopping = False

    def stop(self) -> None:
        """Make ``run`` return after the current batch."""
        self._stopping = True

    async def run(self, nc: nats.aio.client.Client) -> None:
        """Read until stopped; NATS trouble, and any failure of ``handle``, is waited out."""
        js = nc.jetstream()
        while not self._stopping:
            if not self._active():
                await asyncio.sleep(POLL_S / 4)
                continue
            try:
                sub = await js.pull_subscribe_bind(self._durable, self._stream)
            except (nats.errors.Error, TimeoutError) as exc:
                log.warning("%s cannot bind yet: %r", self._name, exc)
                await asyncio.sleep(RETRY_DELAY_S)
                continue
            try:
                while not self._stopping and self._active():
                    try:
                        msgs = await sub.fetch(self._batch, timeout=POLL_S)
                    except (nats.errors.TimeoutError, TimeoutError):
                        continue
                    await self._handle(msgs)
            except (nats.errors.Error, TimeoutError) as exc:
                log.warning("%s lost NATS: %r", self._name, exc)
                await asyncio.sleep(RETRY_DELAY_S)
            except Exception:
                log.exception("%s failed; starting over", self._name)
                await asyncio.sleep(RETRY_DELAY_S)
            finally:
                with contextlib.suppress(nats.errors.Error):
                    await sub.unsubscribe()
