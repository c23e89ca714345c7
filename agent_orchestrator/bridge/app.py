"""The FastAPI app: one endpoint per row of :data:`ROUTES`, errors as problem+json."""

import inspect
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractContextManager, asynccontextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Annotated, Any

import nats
import nats.aio.client
import nats.errors
from fastapi import Body, Depends, FastAPI, Header, Path, Query
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from fastapi.routing import APIRoute
from nats.aio.msg import Msg
from opentelemetry import propagate
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer, TracerProvider
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, ValidationError, create_model
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request as HttpRequest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent_orchestrator import __version__
from agent_orchestrator.bridge.auth import API_KEY_HEADER, authentication, caller_of
from agent_orchestrator.bridge.events import register_event_stream
from agent_orchestrator.bridge.problems import (
    PROBLEM_MEDIA_TYPE,
    Problem,
    ProblemError,
    from_error,
    problem_response,
)
from agent_orchestrator.bridge.routes import ROUTES, Route
from agent_orchestrator.bridge.settings import BridgeSettings
from agent_orchestrator.bridge.telemetry import BridgeMetrics, ObserveRequests
from agent_orchestrator.contracts.errors import STATUS_BY_CODE, ErrorCode
from agent_orchestrator.contracts.subjects import (
    ACTOR_HEADER,
    ASYNCAPI,
    IDEMPOTENCY_KEY_HEADER,
    PROJECT_SCOPE_HEADER,
    SERVICE_ERROR_CODE_HEADER,
    SERVICE_NAME,
)
from agent_orchestrator.observability.tracing import get_tracer

PING_SUBJECT = f"$SRV.PING.{SERVICE_NAME}"
CORS_REQUEST_HEADERS = (
    "Authorization",
    "Content-Type",
    "If-Match",
    "Idempotency-Key",
    "Actor",
    "Last-Event-ID",
    API_KEY_HEADER,
)
_IF_MATCH = re.compile(r'^\s*"(\d{1,18})"\s*$')
_ERROR_STATUSES = (400, 404, 409, 413, 503, 504)


@dataclass
class BridgeState:
    """What every request shares: the settings, one NATS connection, metrics and the tracer
    (None: not traced)."""

    settings: BridgeSettings
    nc: nats.aio.client.Client | None = None
    metrics: BridgeMetrics = field(default_factory=BridgeMetrics)
    tracer: Tracer | None = None


def _nc(state: BridgeState) -> nats.aio.client.Client:
    if state.nc is None or not state.nc.is_connected:
        raise ProblemError(503, ErrorCode.UNAVAILABLE, "the bridge is not connected to NATS")
    return state.nc


def _client_span(state: BridgeState, subject: str) -> AbstractContextManager[Any]:
    if state.tracer is None:
        return nullcontext()
    return state.tracer.start_as_current_span(
        f"{subject} request",
        kind=SpanKind.CLIENT,
        attributes={
            "messaging.system": "nats",
            "messaging.operation.type": "send",
            "messaging.destination.name": subject,
        },
    )


async def nats_request(
    state: BridgeState, subject: str, payload: bytes, headers: dict[str, str] | None = None
) -> Msg:
    """One NATS request (a client span when traced, its context in the request's headers);
    no responders → 503, timeout → 504."""
    with _client_span(state, subject) as span:
        try:
            if span is not None:
                headers = dict(headers or {})
                propagate.inject(headers)
            return await _request(state, subject, payload, headers)
        except ProblemError as exc:
            if span is not None:
                span.set_status(Status(StatusCode.ERROR, exc.detail))
            raise


async def _request(
    state: BridgeState, subject: str, payload: bytes, headers: dict[str, str] | None
) -> Msg:
    try:
        nc = _nc(state)
    except ProblemError:
        state.metrics.nats_errors.labels(subject, "not_connected").inc()
        raise
    started = time.perf_counter()
    kind = None
    try:
        return await nc.request(
            subject, payload, timeout=state.settings.request_timeout_s, headers=headers or None
        )
    except nats.errors.NoRespondersError as exc:
        kind = "no_responders"
        raise ProblemError(
            503, ErrorCode.UNAVAILABLE, f"no service answers on {subject}; retry later"
        ) from exc
    except (nats.errors.TimeoutError, TimeoutError) as exc:
        kind = "timeout"
        raise ProblemError(
            504, ErrorCode.UNAVAILABLE, f"the service did not answer on {subject} in time"
        ) from exc
    except (nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError) as exc:
        kind = "connection_closed"
        raise ProblemError(503, ErrorCode.UNAVAILABLE, "the NATS connection is closed") from exc
    except nats.errors.MaxPayloadError as exc:
        kind = "max_payload"
        raise ProblemError(
            413,
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"the request is {len(payload)} bytes, more than the NATS server carries",
        ) from exc
    finally:
        if kind is None:
            state.metrics.nats_latency.labels(subject).observe(time.perf_counter() - started)
        else:
            state.metrics.nats_errors.labels(subject, kind).inc()


def _error_paths(errors: Any) -> list[dict[str, Any]]:
    """FastAPI/pydantic errors as the service lists them: ``[{path, message}]``."""
    listed = []
    for err in errors:
        loc = [str(part) for part in err.get("loc", ())]
        if err.get("type") == "json_invalid":
            path = "body"
        else:
            if loc and loc[0] in ("body", "query", "path"):
                loc = loc[1:]
            path = ".".join(loc) if loc else "body"
        listed.append({"path": path, "message": err.get("msg", ""), "type": err.get("type")})
    return listed


def _parse_if_match(value: str) -> int | None:
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


def _reply_response(route: Route, request: HttpRequest, msg: Msg) -> Response:
    try:
        data = json.loads(msg.data)
    except ValueError as exc:
        raise ProblemError(
            502, ErrorCode.INTERNAL, "the service sent a reply that is not JSON"
        ) from exc
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        error = data["error"]
        code = str(error.get("code", ErrorCode.INTERNAL))
        try:
            status = STATUS_BY_CODE[ErrorCode(code)]
        except ValueError:
            status = int((msg.headers or {}).get(SERVICE_ERROR_CODE_HEADER, "500"))
        return problem_response(
            status,
            code,
            str(error.get("message", "")),
            error.get("details"),
            error.get("trace_id"),
        )
    headers: dict[str, str] = {}
    if isinstance(data, dict):
        if route.etag and isinstance(data.get(route.etag), int):
            headers["ETag"] = f'"{data[route.etag]}"'
        if route.location:
            with suppress(KeyError, IndexError):
                headers["Location"] = route.location.format(**data)
        cursor = data.get("next_cursor")
        if isinstance(cursor, str) and cursor:
            headers["Link"] = f'<{request.url.include_query_params(cursor=cursor)}>; rel="next"'
    return Response(
        content=msg.data, status_code=route.status, media_type="application/json", headers=headers
    )


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


def _endpoint(route: Route, state: BridgeState) -> Callable[..., Awaitable[Response]]:
    """Build the endpoint of one route, with a signature FastAPI documents and validates."""
    path_params = route.path_params
    params = [
        inspect.Parameter("http_request", inspect.Parameter.KEYWORD_ONLY, annotation=HttpRequest)
    ]
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
                f'`"<n>"`: sent as `{route.if_match}` (409 when stale).',
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
        params.append(_header_param("actor", ACTOR_HEADER, "Who acts; kept in the history."))

    async def endpoint(**kwargs: Any) -> Response:
        request: HttpRequest = kwargs["http_request"]
        body: dict[str, Any] = {}
        fields = kwargs.get("fields")
        if isinstance(fields, BaseModel):
            body.update(fields.model_dump(mode="json", exclude_unset=True))
        for name, field_name in path_params.items():
            body[field_name] = str(kwargs[name])
        if route.if_match and kwargs.get("if_match") is not None:
            expected = _parse_if_match(kwargs["if_match"])
            if expected is not None:
                body[route.if_match] = expected
        try:
            route.request.model_validate(body)
        except ValidationError as exc:
            raise ProblemError(
                400,
                ErrorCode.VALIDATION_ERROR,
                "the request does not match its schema",
                _error_paths(exc.errors()),
            ) from exc
        headers = {}
        caller = caller_of(request)
        if caller is not None and caller.project is not None:
            headers[PROJECT_SCOPE_HEADER] = caller.project
        if kwargs.get("idempotency_key"):
            headers[IDEMPOTENCY_KEY_HEADER] = kwargs["idempotency_key"]
        if kwargs.get("actor"):
            headers[ACTOR_HEADER] = kwargs["actor"]
        # As UTF-8, not \u escapes: non-ASCII text must not grow the NATS payload threefold.
        payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        msg = await nats_request(state, route.subject, payload, headers)
        return _reply_response(route, request, msg)

    endpoint.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    endpoint.__name__ = route.operation_id
    return endpoint


class BodyLimit:
    """Answer 413 problem+json to a request body over ``max_bytes`` (declared or streamed)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = problem_response(
            413,
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"the request body is over {self.max_bytes} bytes",
        )
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await too_large(scope, receive, send)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message], receive), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        buffered: Message = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([buffered], receive), send)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


def _problem_openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """OpenAPI with problem+json error responses and without FastAPI's unused 422."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            tags=app.openapi_tags,
        )
        for path_item in schema.get("paths", {}).values():
            for operation in path_item.values():
                responses = operation.get("responses", {})
                responses.pop("422", None)
                for code, response in responses.items():
                    content = response.get("content", {})
                    if code[0] in "45" and "application/json" in content:
                        content[PROBLEM_MEDIA_TYPE] = content.pop("application/json")
        components = schema.get("components", {}).get("schemas", {})
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        app.openapi_schema = schema
        return schema

    return openapi


def create_app(
    settings: BridgeSettings | None = None,
    nc: nats.aio.client.Client | None = None,
    *,
    tracer_provider: TracerProvider | None = None,
) -> FastAPI:
    """The bridge app. Give ``nc`` to share a connected client (it is then not closed here);
    otherwise the lifespan connects to ``settings.nats_url`` and closes on shutdown. With
    ``tracer_provider`` every request is traced into the service."""
    state = BridgeState(
        settings or BridgeSettings(),
        nc,
        tracer=get_tracer(tracer_provider) if tracer_provider is not None else None,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        owned = state.nc is None
        if owned:
            state.nc = await nats.connect(
                servers=state.settings.nats_url.split(","),
                name="agent-orchestrator-bridge",
                max_reconnect_attempts=-1,
            )
        try:
            yield
        finally:
            if owned and state.nc is not None:
                await state.nc.close()
                state.nc = None

    app = FastAPI(
        title="agent-orchestrator HTTP bridge",
        version=__version__,
        description=(
            "Each call is one NATS request on the subject named in its description; the reply "
            "is the service's, errors are RFC 9457 problem+json. `ETag`/`If-Match` carry an "
            "agent's `version` and a state's `revision`."
        ),
        lifespan=lifespan,
    )
    app.state.bridge = state
    authenticate = authentication(state.settings)
    guarded = [Depends(authenticate)] if authenticate is not None else []
    statuses = (401, 403, *_ERROR_STATUSES) if authenticate is not None else _ERROR_STATUSES
    error_responses: dict[int | str, dict[str, Any]] = {
        status: {"model": Problem, "description": HTTPStatus(status).phrase} for status in statuses
    }
    for route in ROUTES:
        app.add_api_route(
            route.path,
            _endpoint(route, state),
            methods=[route.method],
            status_code=route.status,
            response_model=route.reply,
            summary=route.summary,
            description=f"NATS subject `{route.subject}`.",
            operation_id=route.operation_id,
            tags=[route.tag],
            responses=error_responses,
            dependencies=guarded,
        )

    register_event_stream(app, lambda: _nc(state), guarded)

    @app.get(
        "/asyncapi",
        tags=["docs"],
        summary="The service's AsyncAPI document (its NATS subjects, messages and events)",
        response_class=Response,
        responses={200: {"content": {"application/yaml": {}}}},
    )
    async def asyncapi() -> Response:
        msg = await nats_request(state, ASYNCAPI, b"")
        return Response(msg.data, media_type="application/yaml")

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        """Prometheus metrics of this bridge process."""
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", tags=["health"], summary="The process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["health"],
        summary="NATS is connected and the service answers its ping",
        responses={503: {"model": Problem, "description": "Not ready"}},
    )
    async def readyz() -> dict[str, str]:
        nc = _nc(state)
        try:
            await nc.request(PING_SUBJECT, b"", timeout=state.settings.ready_timeout_s)
        except (nats.errors.Error, TimeoutError) as exc:
            raise ProblemError(
                503, ErrorCode.UNAVAILABLE, f"{SERVICE_NAME} does not answer its ping"
            ) from exc
        return {"status": "ready"}

    async def on_problem(_: HttpRequest, exc: Exception) -> Response:
        assert isinstance(exc, ProblemError)
        return from_error(exc)

    async def on_invalid(_: HttpRequest, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return problem_response(
            400,
            ErrorCode.VALIDATION_ERROR,
            "the request does not match its schema",
            _error_paths(exc.errors()),
        )

    async def on_http(request: HttpRequest, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: ErrorCode.NOT_FOUND}.get(exc.status_code, "http_error")
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names only the first route whose path matched; a path may have several.
            headers["Allow"] = ", ".join(_methods_of(app, request.url.path))
        return problem_response(exc.status_code, code, detail, headers=headers or None)

    app.add_exception_handler(ProblemError, on_problem)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.openapi = _problem_openapi(app)  # type: ignore[method-assign]
    app.add_middleware(BodyLimit, max_bytes=state.settings.max_body_bytes)
    if state.settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=state.settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=[*CORS_REQUEST_HEADERS],
            expose_headers=["ETag", "Location", "Link"],
        )
    # Outermost: it sees every request, refused ones included.
    app.add_middleware(ObserveRequests, metrics=state.metrics, tracer_provider=tracer_provider)
    return app


def _methods_of(app: FastAPI, path: str) -> list[str]:
    """Every method served on ``path``, by any route."""
    methods: set[str] = set()
    for route in app.router.routes:
        if isinstance(route, APIRoute) and route.path_regex.match(path):
            methods |= route.methods or set()
    return sorted(methods)


def route_paths() -> Mapping[str, set[str]]:
    """Every served path and its methods (for tests and docs)."""
    table: dict[str, set[str]] = {}
    for route in ROUTES:
        table.setdefault(route.path, set()).add(route.method)
    return table


__all__ = ["BridgeState", "create_app", "nats_request", "route_paths"]
