"""Echo responders that bench/commands.py measures the service against, one per process.

    python bench/echo_servers.py raw NATS_URL SUBJECT
    python bench/echo_servers.py faststream NATS_URL SUBJECT

Both join a queue group on SUBJECT and answer every request with its body, until SIGTERM/SIGINT.
`raw` is a bare nats-py callback; `faststream` is a NatsBroker subscriber that decodes the JSON
body into a small pydantic model and returns it, the way the service's handlers work.
"""

import asyncio
import logging
import signal
import sys

import nats
from faststream.nats import NatsBroker
from nats.aio.msg import Msg
from pydantic import BaseModel

QUEUE_GROUP = "bench-echo"


class EchoBody(BaseModel):
    """The benchmark payload, shaped like an agent.create request."""

    name: str
    type: str
    description: str
    metadata: dict[str, str]


async def serve_raw(url: str, subject: str, stop: asyncio.Event) -> None:
    """Answer with the request bytes, straight from a nats-py callback."""
    nc = await nats.connect(url, name="bench-echo-raw")

    async def echo(msg: Msg) -> None:
        await msg.respond(msg.data)

    await nc.subscribe(subject, queue=QUEUE_GROUP, cb=echo)
    await stop.wait()
    await nc.drain()


async def serve_faststream(url: str, subject: str, stop: asyncio.Event) -> None:
    """Answer through FastStream: JSON decode, pydantic validation, JSON encode.

    Per-message access logs are emitted at DEBUG, i.e. off (FastStream's default is INFO, one
    "Received" and one "Processed" line per message). One message at a time (no max_workers).
    """
    broker = NatsBroker(url, log_level=logging.DEBUG)

    @broker.subscriber(subject, queue=QUEUE_GROUP)
    async def echo(body: EchoBody) -> EchoBody:
        return body

    await broker.start()
    await stop.wait()
    await broker.stop()


async def serve(kind: str, url: str, subject: str) -> None:
    """Run the responder of `kind` until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if kind == "raw":
        await serve_raw(url, subject, stop)
    else:
        await serve_faststream(url, subject, stop)


def main(argv: list[str]) -> int:
    """Command-line entry point."""
    if len(argv) != 3 or argv[0] not in ("raw", "faststream"):
        print(__doc__, file=sys.stderr)
        return 2
    asyncio.run(serve(*argv))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
