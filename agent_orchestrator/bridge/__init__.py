"""The HTTP bridge: each REST call becomes one NATS request, and the reply is mapped back.

It owns no data and imports only the wire contract (checked by ``lint-imports``). The route table
is in :mod:`agent_orchestrator.bridge.routes`; the app in :mod:`agent_orchestrator.bridge.app`.
"""

from agent_orchestrator.bridge.app import create_app
from agent_orchestrator.bridge.settings import BridgeSettings

__all__ = ["BridgeSettings", "create_app"]
