"""A2A v1.0 on the bridge: every agent an A2A agent, answered by the service over NATS."""

from agent_orchestrator.bridge.a2a.push import PushSender
from agent_orchestrator.bridge.a2a.routes import add_a2a_routes

__all__ = ["PushSender", "add_a2a_routes"]
