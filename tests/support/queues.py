"""What waits on an agent's subject of AGENT_MESSAGES / AGENT_TASKS, and a raw receiver."""

import asyncio

import nats.aio.client
from nats.js import JetStreamContext

from agent_orchestrator.client.pull_queue import create_agent_consumer


async def subject_is_empty(
    nc: nats.aio.client.Client, stream: str, subject: str, *, within: float = 5.0
) -> bool:
    """Whether ``stream`` holds nothing on ``subject`` (a work queue: nothing waiting and
    nothing held unacknowledged), waiting up to ``within`` for it."""
    js = nc.jetstream()
    async with asyncio.timeout(within):
        while True:
            info = await js.stream_info(stream, subjects_filter=subject)
            if not info.state.subjects:
                return True
            await asyncio.sleep(0.1)


async def raw_receiver(
    js: JetStreamContext, stream: str, consumer: str, subject: str
) -> JetStreamContext.PullSubscription:
    """A bare pull subscription on an agent's consumer, created the way a worker does."""
    await create_agent_consumer(js, stream, consumer, subject)
    return await js.pull_subscribe_bind(consumer, stream)
