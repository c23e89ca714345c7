"""How a command subject is served: strict decoding, idempotency, and typed registration.

An area (``handlers.agents`` and the others) is a class whose handler methods,
``async def handler(self, body: Request, ctx: CommandContext) -> Reply``, are marked with
:func:`command`, which only records the subject and its contract. ``CommandServer.include``
serves each marked method as a FastStream subscriber on its subject, in the service's queue
group, whose body schema appears in AsyncAPI. Errors raised by a handler become contract
replies (see ``handlers.errors``).
"""

from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from faststream.nats import NatsMessage, NatsRouter
from pydantic import BaseModel, ValidationError

from agent_orchestrator.contracts.json_values import refused_value
from agent_orchestrator.contracts.limits import Limit, request_limit
from agent_orchestrator.contracts.subjects import (
    IDEMPOTENCY_KEY_HEADER,
    MAX_IDEMPOTENCY_KEY_LENGTH,
    MAX_PROJECT_ID_LENGTH,
    PROJECT_SCOPE_HEADER,
    QUEUE_GROUP,
)
from agent_orchestrator.domain.errors import PayloadTooLarge, ValidationFailed
from agent_orchestrator.domain.idempotency import check_repeat, fingerprint
from agent_orchestrator.handlers.identity import Caller, Identities
from agent_orchestrator.handlers.marks import HandlerT, marked, marker
from agent_orchestrator.handlers.quotas import ProjectQuotas
from agent_orchestrator.handlers.scope import ScopeGuard
from agent_orchestrator.storage.atomic import IdempotencyKeyTaken, IdempotencyRecord
from agent_orchestrator.storage.idempotency import IdempotencyStore

RequestT = TypeVar("RequestT", bound=BaseModel)

# The headers of the request being handled. The decoder sets them; asking FastStream for the
# message as a handler argument instead costs a thread hop per request.
_request_headers: ContextVar[Mapping[str, str] | None] = ContextVar("request_headers", default=None)


@dataclass(frozen=True)
class CommandContext:
    """What a handler knows besides the body: who asks, when, and the Idempotency-Key."""

    subject: str
    actor: str
    now: datetime
    idempotency: IdempotencyRecord | None = None

    def idempotency_for(self, reply: BaseModel) -> IdempotencyRecord | None:
        """The record to store with the change, carrying ``reply`` for repeats."""
        if self.idempotency is None:
            return None
        return replace(self.idempotency, reply=reply.model_dump(mode="json"))


Handler = Callable[[RequestT, CommandContext], Awaitable[Any]]


def make_decoder(request: type[BaseModel], limit: Limit) -> Callable[[NatsMessage], Awaitable[Any]]:
    """A decoder that accepts only a JSON body within ``limit``, valid for ``request``.

    Validating here, straight from the bytes, is several times cheaper than letting the
    handler's signature do it; a failure still becomes a ``validation_error`` reply.
    """

    async def decode(msg: NatsMessage) -> Any:
        _request_headers.set(msg.headers or {})
        body = msg.body
        if len(body) > limit.bytes:
            raise PayloadTooLarge(
                limit.refusal("request body", len(body)), details=limit.details(len(body))
            )
        if not body.strip():
            body = b"{}"
        why = refused_value(body)
        if why is not None:
            raise ValidationFailed(why)
        try:
            return request.model_validate_json(body)
        except ValidationError as exc:
            if any(err["type"] == "json_invalid" for err in exc.errors()):
                raise ValidationFailed(f"body is not valid JSON: {exc.errors()[0]['msg']}") from exc
            raise

    return decode


def check_project_scope(scope: str) -> None:
    """Refuse a ``Project-Scope`` that could not be a body's ``project_id`` (1-200 chars)."""
    if not 1 <= len(scope) <= MAX_PROJECT_ID_LENGTH:
        raise ValidationFailed(
            f"the Project-Scope header must be 1-{MAX_PROJECT_ID_LENGTH} characters, "
            "like a project_id",
            details={"header": PROJECT_SCOPE_HEADER, "length": len(scope)},
        )


@dataclass(frozen=True)
class CommandSpec:
    """What one command subject takes and answers (also for the AsyncAPI document)."""

    subject: str
    request: type[BaseModel]
    reply: type[BaseModel]
    mutating: bool
    description: str = ""


def command(
    subject: str,
    request: type[BaseModel],
    reply: type[BaseModel],
    *,
    mutating: bool,
    description: str,
) -> Callable[[HandlerT], HandlerT]:
    """Mark a handler method as the one for ``subject``; it records the contract, no more."""
    return marker(CommandSpec(subject, request, reply, mutating, description))


def commands_of(area: object) -> list[tuple[CommandSpec, Handler[Any]]]:
    """The methods of ``area`` marked with :func:`command`, bound, in the order written."""
    return marked(area, CommandSpec)


@dataclass
class CommandServer:
    """Registers command handlers on a router with shared decoding and idempotency."""

    router: NatsRouter
    idempotency_store: IdempotencyStore
    max_request_bytes: int
    max_workers: int
    #: The limit of requests that carry a state (see ``contracts.limits``); 0: no larger than
    #: any other request.
    max_state_bytes: int = 0
    scope_guard: ScopeGuard | None = None
    quotas: ProjectQuotas | None = None
    #: Who is calling (the default: as the headers say, one open account).
    identities: Identities = field(default_factory=Identities)
    specs: list[CommandSpec] = field(default_factory=list)

    def include(self, *areas: object) -> None:
        """Serve every marked handler method of each area."""
        for area in areas:
            for spec, handler in commands_of(area):
                self.serve(
                    spec.subject,
                    spec.request,
                    spec.reply,
                    mutating=spec.mutating,
                    description=spec.description,
                )(handler)

    def serve(
        self,
        subject: str,
        request: type[RequestT],
        reply: type[BaseModel],
        *,
        mutating: bool,
        description: str,
    ) -> Callable[[Handler[RequestT]], Handler[RequestT]]:
        """Decorator: serve ``subject`` with the decorated handler."""

        def register(handler: Handler[RequestT]) -> Handler[RequestT]:
            async def endpoint(body: Any) -> Any:
                headers = _request_headers.get() or {}
                caller = self.identities.caller(headers)
                scope = caller.project
                if scope is not None:
                    check_project_scope(scope)
                if scope and self.scope_guard is not None:
                    await self.scope_guard.check(body, scope, subject, caller.agent_id)
                ctx = self._context(subject, body, headers, caller, mutating=mutating)
                if ctx.idempotency is not None:
                    stored = await self._stored_reply(ctx.idempotency)
                    if stored is not None:
                        return stored
                if scope and self.quotas is not None:  # a repeat above costs no quota
                    await self.quotas.check(subject, scope)
                try:
                    return await handler(body, ctx)
                except IdempotencyKeyTaken:
                    assert ctx.idempotency is not None
                    stored = await self._stored_reply(ctx.idempotency)
                    if stored is None:
                        raise
                    return stored

            endpoint.__name__ = handler.__name__
            endpoint.__doc__ = handler.__doc__
            self.router.subscriber(
                subject,
                queue=QUEUE_GROUP,
                decoder=make_decoder(request, self._limit(subject)),
                # Concurrency costs a task per message: only when asked for.
                max_workers=self.max_workers if self.max_workers > 1 else None,
                title=subject,
                description=description,
            )(endpoint)
            self.specs.append(CommandSpec(subject, request, reply, mutating, description))
            return handler

        return register

    def _limit(self, subject: str) -> Limit:
        return request_limit(
            subject,
            max_request_bytes=self.max_request_bytes,
            max_state_bytes=self.max_state_bytes or self.max_request_bytes,
        )

    @staticmethod
    def _context(
        subject: str,
        body: BaseModel,
        headers: Mapping[str, str],
        caller: Caller,
        *,
        mutating: bool,
    ) -> CommandContext:
        record = None
        key = headers.get(IDEMPOTENCY_KEY_HEADER)
        if mutating and key:
            if len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
                raise ValidationFailed(
                    f"Idempotency-Key is longer than {MAX_IDEMPOTENCY_KEY_LENGTH} chars"
                )
            record = IdempotencyRecord(
                subject,
                key,
                fingerprint(subject, body.model_dump(mode="json")),
                project=caller.project or "",
            )
        return CommandContext(subject, caller.actor, datetime.now(UTC), record)

    async def _stored_reply(self, record: IdempotencyRecord) -> Any:
        stored = await self.idempotency_store.stored_reply(
            record.subject, record.key, record.project
        )
        if stored is None:
            return None
        stored_fingerprint, reply = stored
        check_repeat(record.key, stored_fingerprint, record.fingerprint)
        return reply
