"""The client SDK: a typed client of the command subjects and an agent's inbox.

Built on ``contracts`` and nats-py alone, so an agent program needs nothing else of the service.
"""

from agent_orchestrator.client.errors import InboxClosed, RequestFailed, ServiceUnavailable
from agent_orchestrator.client.inbox import Inbox, InboxMessage
from agent_orchestrator.client.requests import OrchestratorClient

__all__ = [
    "Inbox",
    "InboxClosed",
    "InboxMessage",
    "OrchestratorClient",
    "RequestFailed",
    "ServiceUnavailable",
]
