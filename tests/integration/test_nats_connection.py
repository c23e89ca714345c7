"""The service's NATS connection against a real nats-server: the coalescing flusher writes the
commands of consecutive loop turns in one socket write, and loses none of them."""

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest_asyncio
from nats.aio.client import Client

from agent_orchestrator.service import Service
from agent_orchestrator.wiring.nats_connection import CoalescingClient
from tests.support.servers import ServerUrls

PRIVATE_FIELDS = ("_transport", "_pending", "_pending_data_size", "_flush_queue")


async def connected(client: Client, servers: ServerUrls) -> Client:
    await client.connect(servers.nats_url)
    return client


@pytest_asyncio.fixture
async def coalescing(servers: ServerUrls) -> AsyncIterator[Client]:
    client = await connected(CoalescingClient(), servers)
    yield client
    await client.close()


@pytest_asyncio.fixture
async def stock(servers: ServerUrls) -> AsyncIterator[Client]:
    client = await connected(Client(), servers)
    yield client
    await client.close()


def count_writes(client: Client) -> Callable[[], int]:
    """Count the socket writes of ``client`` from now on."""
    writes = 0
    transport: Any = client._transport
    original = transport.writelines

    def writelines(commands: list[bytes]) -> None:
        nonlocal writes
        writes += 1
        original(commands)

    transport.writelines = writelines
    return lambda: writes


async def publish_over_two_turns(client: Client, subject: str) -> None:
    await client.publish(subject, b"first")
    await asyncio.sleep(0)  # the next loop turn
    await client.publish(subject, b"second")
    await client.flush()  # a PING after both, written with transport.write (not counted)


def test_nats_py_still_has_what_the_flusher_overrides() -> None:
    assert callable(getattr(Client, "_flusher", None)), "nats-py moved Client._flusher"


async def test_the_connection_has_the_fields_the_flusher_uses(coalescing: Client) -> None:
    for field in PRIVATE_FIELDS:
        assert hasattr(coalescing, field), f"nats-py no longer has Client.{field}"


async def test_publishes_of_consecutive_turns_leave_in_one_write(
    coalescing: Client, stock: Client
) -> None:
    writes_of = {"coalescing": count_writes(coalescing), "stock": count_writes(stock)}
    await publish_over_two_turns(coalescing, "test.coalescing.turns")
    await publish_over_two_turns(stock, "test.coalescing.turns")
    assert writes_of["coalescing"]() == 1
    assert writes_of["stock"]() == 2  # the control: stock nats-py writes the first at once


async def test_every_command_arrives_in_order(coalescing: Client, stock: Client) -> None:
    received: list[bytes] = []
    done = asyncio.Event()

    async def collect(msg: Any) -> None:
        received.append(msg.data)
        if len(received) == 500:
            done.set()

    sub = await stock.subscribe("test.coalescing.order", cb=collect)
    await stock.flush()
    for n in range(500):
        await coalescing.publish("test.coalescing.order", str(n).encode())
        if n % 7 == 0:
            await asyncio.sleep(0)
    await asyncio.wait_for(done.wait(), 10)
    await sub.unsubscribe()
    assert received == [str(n).encode() for n in range(500)]


async def test_concurrent_requests_get_their_own_replies(coalescing: Client, stock: Client) -> None:
    async def echo(msg: Any) -> None:
        await msg.respond(msg.data)

    sub = await stock.subscribe("test.coalescing.echo", cb=echo)
    await stock.flush()
    replies = await asyncio.gather(
        *(
            coalescing.request("test.coalescing.echo", str(n).encode(), timeout=5)
            for n in range(200)
        )
    )
    await sub.unsubscribe()
    assert [r.data for r in replies] == [b"%d" % n for n in range(200)]


async def test_the_service_broker_uses_the_coalescing_client(service: Service) -> None:
    assert isinstance(service.broker._connection, CoalescingClient)


async def test_a_lone_publish_leaves_without_a_flush(coalescing: Client, stock: Client) -> None:
    got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def first(msg: Any) -> None:
        if not got.done():
            got.set_result(msg.data)

    sub = await stock.subscribe("test.coalescing.lone", cb=first)
    await stock.flush()
    await coalescing.publish("test.coalescing.lone", b"alone")
    assert await asyncio.wait_for(got, 5) == b"alone"
    await sub.unsubscribe()
