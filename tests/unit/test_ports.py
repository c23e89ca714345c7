"""Who holds a port, told from /proc, and the bind failures that become clean errors."""

import os
import socket
from collections.abc import Iterator

import pytest

from agent_orchestrator.bridge import BridgeSettings
from agent_orchestrator.bridge.server import BridgePortInUse, EmbeddedBridge
from agent_orchestrator.runtime import busy_port_message, free_port, port_holder, port_is_free
from agent_orchestrator.service import MetricsPortInUse, Service
from agent_orchestrator.settings import Settings


@pytest.fixture
def listener() -> Iterator[int]:
    """A port this test process listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_listening_port_is_taken_and_its_holder_is_this_process(listener: int) -> None:
    assert not port_is_free("127.0.0.1", listener)
    holder = port_holder(listener)
    assert holder is not None
    assert holder.pid == os.getpid()
    assert str(holder) == f"pid {os.getpid()} ({holder.command})"
    message = busy_port_message("NATS", "127.0.0.1", listener, "choose another with --nats-port")
    assert message == (
        f"the NATS port {listener} on 127.0.0.1 is in use by {holder}; "
        "choose another with --nats-port"
    )


def test_a_free_port_has_no_holder() -> None:
    port = free_port()
    assert port_is_free("127.0.0.1", port)
    assert port_holder(port) is None


def test_a_holder_that_does_not_listen_is_another_process() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening: not in /proc as a listener
        port = sock.getsockname()[1]
        assert not port_is_free("127.0.0.1", port)
        assert "in use by another process;" in busy_port_message("HTTP", "127.0.0.1", port, "x")


async def test_the_bridge_on_a_taken_port_raises_port_in_use(listener: int) -> None:
    bridge = EmbeddedBridge(BridgeSettings(nats_url="nats://127.0.0.1:1"), port=listener)
    with pytest.raises(BridgePortInUse) as taken:
        await bridge.start()
    assert (taken.value.host, taken.value.port) == ("127.0.0.1", listener)
    await bridge.stop()


async def test_the_service_on_a_taken_metrics_port_raises_port_in_use(listener: int) -> None:
    settings = Settings(
        nats_url="nats://127.0.0.1:1",
        database_url="postgresql://nobody@127.0.0.1:1/none",
        metrics_port=listener,
        metrics_host="127.0.0.1",
    )
    with pytest.raises(MetricsPortInUse) as taken:
        await Service(settings).start()
    assert (taken.value.host, taken.value.port) == ("127.0.0.1", listener)
