"""The A2A routes of the bridge.

- ``GET /.well-known/agent-card.json``: the orchestrator's own card, pointing to the catalog.
- ``GET /a2a/agents``: the catalog, the cards of the agents the caller may see.
- ``GET /a2a/agents/{agent_id}/.well-known/agent-card.json``: one agent's card.
- ``POST /a2a/agents/{agent_id}``: the JSON-RPC binding; ``/a2a/agents/{agent_id}/message:send``
  and the other HTTP+JSON paths: the HTTP+JSON binding.

The bindings are the a2a-sdk's dispatchers around :class:`OrchestratorRequestHandler`; each
route is a FastAPI route behind the bridge's authentication, so OpenAPI shows it.
"""

import inspect
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any
from uuid import UUID

from a2a.server.context import ServerCallContext
from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.server.routes import (
    DefaultServerCallContextBuilder,
    ServerCallContextBuilder,
    create_jsonrpc_routes,
    create_rest_routes,
)
from a2a.types import ContentTypeNotSupportedError
from a2a.utils.constants import A2A_JSON_MEDIA_TYPE, AGENT_CARD_WELL_KNOWN_PATH
from a2a.utils.errors import A2A_ERROR_REASONS, JSON_RPC_ERROR_CODE_MAP
from fastapi import FastAPI, Path, Query
from fastapi.responses import JSONResponse, Response
from starlette.requests import Request as HttpRequest
from starlette.routing import Route as StarletteRoute

from agent_orchestrator.bridge.a2a.calls import ServiceCalls, ServiceError
from agent_orchestrator.bridge.a2a.cards import A2A_PREFIX, agent_card, host_card
from agent_orchestrator.bridge.a2a.handler import (
    AGENT_KEY,
    CALLS_KEY,
    REQUEST_KEY,
    OrchestratorRequestHandler,
)
from agent_orchestrator.bridge.auth import caller_of
from agent_orchestrator.bridge.nats_client import BridgeState
from agent_orchestrator.bridge.openapi import error_responses
from agent_orchestrator.bridge.problems import ProblemError
from agent_orchestrator.contracts.agents import Agent, AgentStatus
from agent_orchestrator.contracts.common import Limit
from agent_orchestrator.contracts.errors import STATUS_BY_CODE, ErrorCode
from agent_orchestrator.contracts.templates import Template

AGENT_PATH = A2A_PREFIX + "/{agent_id}"
TAG = "a2a"
CARD_MEDIA = "application/json"

SUMMARIES = {
    ("/", "POST"): "A2A JSON-RPC binding: SendMessage, SendStreamingMessage, GetTask, ...",
    ("/message:send", "POST"): "A2A SendMessage (HTTP+JSON)",
    ("/message:stream", "POST"): "A2A SendStreamingMessage (HTTP+JSON, Server-Sent Events)",
    ("/tasks/{id}:cancel", "POST"): "A2A CancelTask (HTTP+JSON)",
    ("/tasks/{id}:subscribe", "GET"): "A2A SubscribeToTask (HTTP+JSON, Server-Sent Events)",
    ("/tasks/{id}:subscribe", "POST"): "A2A SubscribeToTask (HTTP+JSON, Server-Sent Events)",
    ("/tasks/{id}", "GET"): "A2A GetTask (HTTP+JSON)",
    ("/tasks", "GET"): "A2A ListTasks (HTTP+JSON)",
    ("/tasks/{id}/pushNotificationConfigs", "POST"): "A2A push configs: not supported",
    ("/tasks/{id}/pushNotificationConfigs", "GET"): "A2A push configs: not supported",
    ("/tasks/{id}/pushNotificationConfigs/{push_id}", "GET"): "A2A push configs: not supported",
    ("/tasks/{id}/pushNotificationConfigs/{push_id}", "DELETE"): "A2A push configs: not supported",
    ("/extendedAgentCard", "GET"): "A2A GetExtendedAgentCard: not configured",
}


class CallerContext(ServerCallContextBuilder):
    """The call's context: the agent of the path and the caller's view of the service."""

    def __init__(self, state: BridgeState) -> None:
        self._state = state
        self._default = DefaultServerCallContextBuilder()

    def build(self, request: HttpRequest) -> ServerCallContext:
        """The SDK's context plus ``agent_id`` and ``calls`` in its state."""
        context = self._default.build(request)
        context.state[AGENT_KEY] = UUID(str(request.path_params["agent_id"]))
        context.state[CALLS_KEY] = _calls(self._state, request)
        context.state[REQUEST_KEY] = request
        return context


def _calls(state: BridgeState, request: HttpRequest) -> ServiceCalls:
    caller = caller_of(request)
    if caller is None:
        return ServiceCalls(state, None, "a2a")
    return ServiceCalls(state, caller.project, f"a2a:{caller.name}")


def _problem(exc: ServiceError) -> ProblemError:
    try:
        status = STATUS_BY_CODE[ErrorCode(exc.code)]
    except ValueError:
        status = 500
    return ProblemError(status, ErrorCode(exc.code), exc.message)


def _base_url(request: HttpRequest) -> str:
    return str(request.base_url).rstrip("/")


async def _template(calls: ServiceCalls, agent: Agent, cache: dict[Any, Template | None]) -> Any:
    if agent.template_id is None:
        return None
    key = (agent.template_id, agent.template_version)
    if key not in cache:
        try:
            cache[key] = await calls.template(agent.template_id, agent.template_version)
        except ServiceError:
            cache[key] = None  # a retired template: the card falls back to the agent's type
    return cache[key]


def _sdk_endpoints(handler: OrchestratorRequestHandler, state: BridgeState) -> list[StarletteRoute]:
    context = CallerContext(state)
    routes = create_jsonrpc_routes(handler, "/", context_builder=context)
    routes += [
        r
        for r in create_rest_routes(handler, context_builder=context)
        if isinstance(r, StarletteRoute)
    ]
    return routes


def _operation_id(method: str, path: str) -> str:
    """``a2a_post_message_send`` for ``POST /message:send``; ``a2a_post_jsonrpc`` for ``/``."""
    words = re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_") or "jsonrpc"
    return f"a2a_{method.lower()}_{words}"


def _json_content(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _content_type_not_supported(content_type: str) -> JSONResponse:
    """A2A's ContentTypeNotSupportedError for a JSON-RPC request that is not JSON."""
    error = ContentTypeNotSupportedError(f"send application/json, not {content_type!r}")
    info = {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": A2A_ERROR_REASONS[ContentTypeNotSupportedError],
        "domain": "a2a-protocol.org",
        "metadata": {},
    }
    body = {
        "jsonrpc": "2.0",
        "id": None,
        "error": {
            "code": JSON_RPC_ERROR_CODE_MAP[ContentTypeNotSupportedError],
            "message": error.message,
            "data": [info],
        },
    }
    return JSONResponse(body, status_code=415)


def _wrap(route: StarletteRoute) -> Callable[..., Awaitable[Response]]:
    """A FastAPI endpoint around an SDK endpoint, with the path parameters declared."""
    endpoint = route.endpoint
    params = [
        inspect.Parameter("request", inspect.Parameter.KEYWORD_ONLY, annotation=HttpRequest),
        inspect.Parameter(
            "agent_id",
            inspect.Parameter.KEYWORD_ONLY,
            annotation=Annotated[UUID, Path(description="The agent.")],
        ),
    ]
    for name in route.param_convertors:
        params.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=Annotated[str, Path(description=f"The task's `{name}`.")],
            )
        )

    jsonrpc = route.path == "/"

    async def call(**kwargs: Any) -> Response:
        request: HttpRequest = kwargs["request"]
        if jsonrpc and not _json_content(request.headers.get("content-type", "")):
            return _content_type_not_supported(request.headers.get("content-type", ""))
        response: Response = await endpoint(request)
        if response.headers.get("content-type", "").startswith(A2A_JSON_MEDIA_TYPE):
            # The spec (11.1) says application/json for HTTP+JSON; the SDK sends its own type.
            response.headers["content-type"] = "application/json"
        return response

    call.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    return call


def add_a2a_routes(
    app: FastAPI, state: BridgeState, dependencies: Sequence[Any], statuses: Sequence[int]
) -> None:
    """Serve A2A on ``app``: the host card (public, as A2A discovery expects), the catalog,
    the agent cards and both bindings (behind ``dependencies``: the bridge's auth); the cards
    and the catalog document the error ``statuses`` (problem+json)."""
    auth = state.settings.auth
    guarded = list(dependencies)
    problems = error_responses(sorted(statuses))

    @app.get(
        AGENT_CARD_WELL_KNOWN_PATH,
        tags=[TAG],
        summary="The orchestrator's A2A agent card (points to the catalog of agent cards)",
        response_class=JSONResponse,
    )
    async def orchestrator_card(request: HttpRequest) -> JSONResponse:
        return JSONResponse(agent_card_to_dict(host_card(_base_url(request), auth)))

    @app.get(
        A2A_PREFIX,
        tags=[TAG],
        dependencies=guarded,
        summary="The catalog: A2A cards of the agents the caller may see, a page at a time",
        response_class=JSONResponse,
        responses=problems,
    )
    async def catalog(
        request: HttpRequest,
        project_id: Annotated[
            str | None, Query(min_length=1, max_length=200, description="Only this project's.")
        ] = None,
        status: Annotated[
            AgentStatus | None, Query(description="Only agents in this status.")
        ] = None,
        limit: Annotated[Limit, Query(description="Cards per page.")] = 50,
        cursor: Annotated[str | None, Query(description="From `next_cursor`.")] = None,
    ) -> JSONResponse:
        calls = _calls(state, request)
        body: dict[str, Any] = {"limit": limit}
        if cursor:
            body["cursor"] = cursor
        if status is not None:
            body["status"] = status.value
        if project_id is not None:
            body["project_id"] = project_id
        try:
            page = await calls.request("agent.list", body)
        except ServiceError as exc:
            raise _problem(exc) from exc
        cache: dict[Any, Template | None] = {}
        cards = []
        for item in page["items"]:
            agent = Agent.model_validate(item)
            template = await _template(calls, agent, cache)
            cards.append(agent_card_to_dict(agent_card(agent, template, _base_url(request), auth)))
        return JSONResponse({"agents": cards, "next_cursor": page.get("next_cursor")})

    @app.get(
        AGENT_PATH + AGENT_CARD_WELL_KNOWN_PATH,
        tags=[TAG],
        dependencies=guarded,
        summary="One agent's A2A agent card",
        response_class=JSONResponse,
        responses=problems,
    )
    async def card(
        request: HttpRequest, agent_id: Annotated[UUID, Path(description="The agent.")]
    ) -> JSONResponse:
        calls = _calls(state, request)
        try:
            agent = await calls.agent(agent_id)
        except ServiceError as exc:
            raise _problem(exc) from exc
        template = await _template(calls, agent, {})
        return JSONResponse(
            agent_card_to_dict(agent_card(agent, template, _base_url(request), auth))
        )

    for route in _sdk_endpoints(OrchestratorRequestHandler(), state):
        for method in sorted(route.methods or ()):
            if method == "HEAD":
                continue
            if route.path == "/":
                # Clients that join "/" to the interface URL post to it with a trailing slash.
                app.router.add_api_route(
                    AGENT_PATH + "/",
                    _wrap(route),
                    methods=[method],
                    dependencies=guarded,
                    include_in_schema=False,
                )
            app.router.add_api_route(
                AGENT_PATH + ("" if route.path == "/" else route.path),
                _wrap(route),
                methods=[method],
                tags=[TAG],
                dependencies=guarded,
                summary=SUMMARIES.get((route.path, method), route.path),
                description="The A2A v1.0 protocol (a2a-sdk's binding); its own error model.",
                operation_id=_operation_id(method, route.path),
            )


__all__ = ["add_a2a_routes"]
