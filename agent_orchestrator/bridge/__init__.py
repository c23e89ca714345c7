"""The HTTP bridge: each REST call becomes one NATS request, and the reply is mapped back.

It owns no data and imports only the wire contract (checked by ``lint-imports``). One concern a
module: the route table (``routes``), the endpoints built from it (``endpoints``), replies mapped
back (``replies``), the NATS connection and requests (``nats_client``), problem+json
(``problems``, ``error_handlers``), the body-size limit (``body_limit``), the OpenAPI document
(``openapi``), operators' routes (``operations``), the event stream (``events``), authentication
(``auth``), metrics and traces (``telemetry``), settings, serving (``server``), and the app
factory that puts them together (``app``).
"""

from agent_orchestrator.bridge.app import create_app
from agent_orchestrator.bridge.settings import BridgeSettings

__all__ = ["BridgeSettings", "create_app"]
