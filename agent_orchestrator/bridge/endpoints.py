"""One FastAPI endpoint per row of :data:`~agent_orchestrator.bridge.routes.ROUTES`.

Each endpoint gets a signature that FastAPI documents and validates (path parameters, the body
or query model, the ``If-Match``, ``Idempotency-Key`` and ``Actor`` headers), merges what it
received into the route's request, validates that with the contract's model and sends it as one
NATS request.
"""

import inspect
import json
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Annotated, Any

from fastapi import Body, FastAPI, Header, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, ValidationError, create_model
from starlette.requests import Request as HttpRequest

from agent_orchestrator.bridge.auth import caller_of
from agent_orchestrator.bridge.error_handlers import field_errors
from agent_orchestrator.bridge.json_body import JsonBodyRoute
from agent_orchestrator.bridge.nats_client import BridgeState, nats_request
from agent_orchestrator.bridge.openapi import error_responses
from agent_orchestrator.bridge.problems import ProblemError
from agent_orchestrator.bridge.replies import reply_response
from agent_orchestrator.bridge.routes import ROUTES, Route
from agent_orchestrator.contracts.errors import ErrorCode
from agent_orchestrator.contracts.subjects import (
    ACTOR_HEADER,
    IDEMPOTENCY_KEY_HEADER,
    PROJECT_SCOPE_HEADER,
)

_IF_MATCH = re.compile(r'^\s*"(\d{1,18})"\s*$')


def parse_if_match(value: str) -> int | None:
    """The number of ``If-Match: "<n>"``; None for ``*``; a 400 problem otherwise."""
    if value.strip() == "*":
        return None
    match = _IF_MATCH.match(value)
    if match is None:
        raise ProblemError(
            400,
            ErrorCode.VALIDATION_ERROR,
            'If-Match must be one quoted number, e.g. If-Match: "3"',
            [{"path": "header.If-Match", "message": f"malformed: {value!r}"}],
        )
    return int(match.group(1))


def _sub_model(route: Route, suffix: str, exclude: set[str]) -> type[BaseModel] | None:
    """The request model's fields minus those from the path: the body or query model."""
    fields: dict[str, Any] = {
        name: (info.annotation, info)
        for name, info in route.request.model_fields.items()
        if name not in exclude
    }
    if not fields:
        return None
    model: type[BaseModel] = create_model(
        f"{route.request.__name__}{suffix}",
        __config__=ConfigDict(extra="forbid", json_schema_extra=_examples(route.request, fields)),
        __doc__=route.request.__doc__,
        **fields,
    )
    return model


def _examples(request: type[BaseModel], fields: Mapping[str, Any]) -> dict[str, Any] | None:
    """The request model's examples, cut down to ``fields`` (path parameters go elsewhere)."""
    extra = request.model_config.get("json_schema_extra")
    given = extra.get("examples") if isinstance(extra, dict) else None
    if not isinstance(given, list):
        return None
    examples = [
        {name: value for name, value in example.items() if name in fields}
        for example in given
        if isinstance(example, dict)
    ]
    return {"examples": [e for e in examples if e]} if examples else None


def _header_param(name: str, alias: str, description: str) -> inspect.Parameter:
    """An optional request header as an endpoint parameter."""
    return inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[str | None, Header(alias=alias, description=description)],
    )


def _parameters(route: Route) -> list[inspect.Parameter]:
    """The endpoint's parameters: the request, path parameters, body or query, headers."""
    params = [
        inspect.Parameter("http_request", inspect.Parameter.KEYWORD_ONLY, annotation=HttpRequest)
    ]
    path_params = route.path_params
    for name, field_name in path_params.items():
        field = route.request.model_fields[field_name]
        description = field.description
        if field_name != name:
            description = " ".join(filter(None, (f"Sent as `{field_name}`.", description)))
        params.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=Annotated[field.annotation, Path(description=description)],
            )
        )
    in_body = route.method in ("POST", "PUT")
    extra = _sub_model(route, "Body" if in_body else "Query", set(path_params.values()))
    if extra is not None:
        if in_body:
            required = any(f.is_required() for f in extra.model_fields.values())
            annotation: Any = extra if required else extra | None
            params.append(
                inspect.Parameter(
                    "fields",
                    inspect.Parameter.KEYWORD_ONLY,
                    annotation=Annotated[annotation, Body()],
                    **({} if required else {"default": None}),
                )
            )
        else:
            params.append(
                inspect.Parameter(
                    "fields", inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[extra, Query()]
                )
            )
    if route.if_match:
        params.append(
            _header_param(
                "if_match",
                "If-Match",
                f'`"<n>"`: sent as `{route.if_match}` (412 Precondition Failed when stale).',
            )
        )
    if route.method != "GET":
        params.append(
            _header_param(
                "idempotency_key",
                IDEMPOTENCY_KEY_HEADER,
                "A repeat with the same key and body returns the first reply.",
            )
        )
        params.append(
            _header_param(
                "actor",
                ACTOR_HEADER,
                "Who acts; kept in the history. With authentication on, the authenticated "
                "caller is the actor and this header is ignored.",
            )
        )
    return params


def _endpoint(route: Route, state: BridgeState) -> Callable[..., Awaitable[Response]]:
    """Build the endpoint of one route, with a signature FastAPI documents and validates."""
    path_params = route.path_params

    async def endpoint(**kwargs: Any) -> Response:
        request: HttpRequest = kwargs["http_request"]
        body: dict[str, Any] = {}
        fields = kwargs.get("fields")
        if isinstance(fields, BaseModel):
            body.update(fields.model_dump(mode="json", exclude_unset=True))
        for name, field_name in path_params.items():
            body[field_name] = str(kwargs[name])
        precondition = False
        if route.if_match and kwargs.get("if_match") is not None:
            expected = parse_if_match(kwargs["if_match"])
            if expected is not None:
                body[route.if_match] = expected
                precondition = True
        try:
            route.request.model_validate(body)
        except ValidationError as exc:
            raise ProblemError(
                400,
                ErrorCode.VALIDATION_ERROR,
                "the request does not match its schema",
                field_errors(exc.errors()),
            ) from exc
        headers = {}
        caller = caller_of(request)
        if caller is not None and caller.project is not None:
            headers[PROJECT_SCOPE_HEADER] = caller.project
        if kwargs.get("idempotency_key"):
            headers[IDEMPOTENCY_KEY_HEADER] = kwargs["idempotency_key"]
        # The history's actor is who authenticated; a caller's own Actor label only counts
        # when the bridge knows nobody (authentication off).
        actor = caller.name if caller is not None else kwargs.get("actor")
        if actor:
            headers[ACTOR_HEADER] = actor
        # As UTF-8, not \u escapes: non-ASCII text must not grow the NATS payload threefold.
        payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        msg = await nats_request(state, route.subject, payload, headers)
        return reply_response(route, request, msg, if_match=precondition)

    endpoint.__signature__ = inspect.Signature(_parameters(route))  # type: ignore[attr-defined]
    endpoint.__name__ = route.operation_id
    return endpoint


def has_body(route: Route) -> bool:
    """Whether the route takes a JSON body (POST or PUT with fields beyond the path's)."""
    fields = set(route.request.model_fields) - set(route.path_params.values())
    return route.method in ("POST", "PUT") and bool(fields)


def add_routes(
    app: FastAPI, state: BridgeState, dependencies: Sequence[Any], statuses: Sequence[int]
) -> None:
    """Serve every route of :data:`ROUTES` on ``app``, behind ``dependencies``, documenting
    the error ``statuses`` of every route, 412 where ``If-Match`` applies and 415 where a body
    does."""
    for route in ROUTES:
        own = [*statuses, *([412] if route.if_match else []), *([415] if has_body(route) else [])]
        app.router.add_api_route(
            route.path,
            _endpoint(route, state),
            methods=[route.method],
            status_code=route.status,
            response_model=route.reply,
            summary=route.summary,
            description=f"NATS subject `{route.subject}`.",
            operation_id=route.operation_id,
            tags=[route.tag],
            responses=error_responses(sorted(own)),
            dependencies=list(dependencies),
            route_class_override=JsonBodyRoute,
        )


__all__ = ["add_routes", "has_body", "parse_if_match"]
