"""Reading one agent's inbox or task queue through a consumer this worker creates.

The service holds no consumer per agent. A running worker creates its agent's consumer on
the work-queue stream when it starts: named ``inbox-<agent_id>`` / ``tasks-<agent_id>``,
filtered on the agent's subject, configured from the settings the service keeps in the
stream's metadata (ack wait, max deliveries, max ack pending, inactive threshold). The name is
the same for every worker of the agent, so several of them share it (a work-queue stream
takes one consumer per subject). A worker that stops cleanly deletes it; one that dies leaves
it to nats-server, which removes it after the inactive threshold. Either way what was not
acknowledged stays in the stream for the next worker.

While a message is held (fetched and not yet acknowledged or given back), the queue tells the
server every third of the ack wait that it is still being worked on, so it is not delivered to
another receiver meanwhile. Fetch errors (a reconnect, a restarting server) are waited out; a
consumer that disappeared (another worker of the agent stopped, or it expired) is created
again.
"""

import asyncio
import contextlib
import logging

import nats.aio.client
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext

from agent_orchestrator.contracts.queues import QueueSettings
from agent_orchestrator.contracts.subjects import DEFAULT_JS_API_PREFIX

log = logging.getLogger(__name__)

#: After this long without a message the queue checks that its consumer still exists.
CHECK_IDLE_S = 10.0


def worker_consumer(name: str, subject: str, settings: QueueSettings) -> ConsumerConfig:
    """The consumer a worker creates for one agent subject."""
    # ``name`` (not ``durable_name``) with one filter: the request goes to
    # ``CONSUMER.CREATE.<stream>.<name>.<filter>``, which a worker's NATS user may be allowed
    # for its own agent alone (security.md); the inactive threshold removes it all the same.
    return ConsumerConfig(
        name=name,
        filter_subject=subject,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=settings.ack_wait_s,
        max_deliver=settings.max_deliveries,
        max_ack_pending=settings.max_ack_pending,
        inactive_threshold=settings.inactive_threshold_s,
        description="Created by a running worker of the agent; removed when it stops.",
    )


async def create_agent_consumer(
    js: JetStreamContext, stream: str, name: str, subject: str
) -> QueueSettings:
    """Create (or join) the worker consumer ``name`` on ``subject``; its settings."""
    info = await js.stream_info(stream)
    settings = QueueSettings.from_metadata(info.config.metadata)
    await js.add_consumer(stream, worker_consumer(name, subject, settings))
    return settings


class PullQueue:
    """One agent's consumer on one stream, created by this worker."""

    def __init__(
        self,
        nc: nats.aio.client.Client,
        stream: str,
        consumer: str,
        subject: str,
        *,
        batch: int,
        poll_s: float,
        api_prefix: str | None = None,
    ) -> None:
        """``api_prefix``: where the JetStream API is reached (``$JS.API``, or
        ``WORKER_JS_API_PREFIX`` for a worker in a project's account)."""
        self.stream = stream
        self.consumer = consumer
        self.subject = subject
        self._js: JetStreamContext = nc.jetstream(prefix=api_prefix or DEFAULT_JS_API_PREFIX)
        self._batch = batch
        self._poll_s = poll_s
        self._sub: JetStreamContext.PullSubscription | None = None
        self._held: dict[int, Msg] = {}
        self._keepalive: asyncio.Task[None] | None = None
        self._idle_s = 0.0

    async def open(self) -> None:
        """Create (or join) the agent's consumer and bind to it."""
        settings = await create_agent_consumer(self._js, self.stream, self.consumer, self.subject)
        self._sub = await self._js.pull_subscribe_bind(self.consumer, self.stream)
        self._keepalive = asyncio.create_task(self._keep_held(settings.ack_wait_s / 3))

    async def close(self, *, delete: bool = True) -> None:
        """Stop; with ``delete`` remove the consumer too (a clean stop). Held messages are
        delivered again (at once if the consumer is deleted, else after their ack wait)."""
        if self._keepalive is not None:
            self._keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keepalive
            self._keepalive = None
        if self._sub is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._sub.unsubscribe()
            self._sub = None
            if delete:
                with contextlib.suppress(nats.errors.Error, TimeoutError):
                    await self._js.delete_consumer(self.stream, self.consumer)
        self._held.clear()

    async def fetch(self, batch: int | None = None) -> list[Msg]:
        """Up to ``batch`` messages, now held; [] when none came within the poll time."""
        if self._sub is None:
            raise RuntimeError("open the queue first")
        try:
            msgs = await self._sub.fetch(batch or self._batch, timeout=self._poll_s)
        except (nats.errors.TimeoutError, TimeoutError):
            # Empty, or the consumer was deleted under a waiting pull: look now and then.
            self._idle_s += self._poll_s
            if self._idle_s >= CHECK_IDLE_S:
                self._idle_s = 0.0
                await self._ensure()
            return []
        except nats.errors.Error as exc:
            log.debug("%s not reachable: %r", self.consumer, exc)
            await self._ensure()
            await asyncio.sleep(min(1.0, self._poll_s))
            return []
        self._idle_s = 0.0
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

    async def _ensure(self) -> None:
        """Create the consumer again if it disappeared (another worker of the agent stopped,
        or it expired while nobody pulled)."""
        try:
            await self._js.consumer_info(self.stream, self.consumer)
        except nats.js.errors.NotFoundError:
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                await create_agent_consumer(self._js, self.stream, self.consumer, self.subject)
        except (nats.errors.Error, TimeoutError) as exc:
            log.debug("%s not reachable yet: %r", self.consumer, exc)

    async def _keep_held(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            for msg in list(self._held.values()):
                with contextlib.suppress(nats.errors.Error):
                    await msg.in_progress()
