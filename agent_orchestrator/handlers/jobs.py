"""How a durable job is served: a pull consumer bound to a durable shared by every instance.

A job class's handler methods, ``async def handle(self, item: Model, msg: NatsMessage)``, are
marked with :func:`job`, which records the subject, stream and durable. ``include_jobs``
subscribes each marked method on a router. The durables are declared with the streams at
start-up (``storage.jetstream``); a handler acknowledges by hand: ``msg.ack()`` when done,
``msg.nack(delay=...)`` to have the item redelivered later.
"""

from collections.abc import Callable
from dataclasses import dataclass

from faststream.middlewares import AckPolicy
from faststream.nats import JStream, NatsRouter, PullSub

from agent_orchestrator.handlers.marks import HandlerT, marked, marker

PULL_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class JobSpec:
    """Where one durable job takes its items from, and how AsyncAPI names it."""

    subject: str
    stream: str
    durable: str
    title: str
    description: str


def job(
    subject: str, *, stream: str, durable: str, title: str, description: str
) -> Callable[[HandlerT], HandlerT]:
    """Mark a method as the handler of the durable ``durable`` on ``stream``; records only."""
    return marker(JobSpec(subject, stream, durable, title, description))


def include_jobs(router: NatsRouter, *areas: object) -> None:
    """Subscribe every marked job method of each area on ``router``."""
    for area in areas:
        for spec, handler in marked(area, JobSpec):
            router.subscriber(
                spec.subject,
                stream=JStream(spec.stream, declare=False),
                durable=spec.durable,
                # batch_size=1: nats-py raises a TimeoutError FastStream does not expect for
                # larger ones.
                pull_sub=PullSub(batch_size=1, timeout=PULL_TIMEOUT_S),
                ack_policy=AckPolicy.MANUAL,
                title=spec.title,
                description=spec.description,
            )(handler)
