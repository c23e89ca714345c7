"""The client SDK: a typed client of the command subjects, an agent's inbox, and the worker
that runs an agent's program (tasks and messages).

Built on ``contracts`` and nats-py alone, so an agent program needs nothing else of the service.
"""

from agent_orchestrator.client.errors import QueueClosed, RequestFailed, ServiceUnavailable
from agent_orchestrator.client.inbox import Inbox, InboxMessage
from agent_orchestrator.client.requests import OrchestratorClient
from agent_orchestrator.client.worker import AgentWorker, RetryTask, TaskRun

__all__ = [
    "AgentWorker",
    "Inbox",
    "InboxMessage",
    "OrchestratorClient",
    "QueueClosed",
    "RequestFailed",
    "RetryTask",
    "ServiceUnavailable",
    "TaskRun",
]
