"""How the bridge answers when its NATS request fails before any reply (no servers needed)."""

from typing import Any

import nats.errors
import pytest

from agent_orchestrator.bridge.nats_client import BridgeState, nats_request
from agent_orchestrator.bridge.problems import ProblemError
from agent_orchestrator.bridge.settings import BridgeSettings


class FailingClient:
    """A connected client whose every request raises ``error``."""

    is_connected = True

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def request(self, *args: Any, **kwargs: Any) -> None:
        raise self.error


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (nats.errors.NoRespondersError(), 503),
        (nats.errors.TimeoutError(), 504),
        (nats.errors.ConnectionClosedError(), 503),
        (nats.errors.ConnectionReconnectingError(), 503),
        (nats.errors.OutboundBufferLimitError(), 503),
        (nats.errors.StaleConnectionError(), 503),
        (nats.errors.MaxPayloadError(), 413),
    ],
)
async def test_a_request_that_gets_no_reply_is_a_problem_with_its_status(
    error: Exception, status: int
) -> None:
    state = BridgeState(settings=BridgeSettings(), nc=FailingClient(error))  # type: ignore[arg-type]
    with pytest.raises(ProblemError) as raised:
        await nats_request(state, "agent.get", b"{}")
    assert raised.value.status == status
