"""``GET /api/events``: agent events as Server-Sent Events, replayed from AGENT_EVENTS.

Each SSE message's ``id`` is the event's sequence in the stream, so a client that reconnects
with ``Last-Event-ID`` resumes right after the last event it saw (the browser's EventSource
does this by itself). Without it, the stream starts with the next event.
"""

import json
import re
from collections.abc import AsyncIterator, Callable, Sequence
from http import HTTPStatus
from typing import Annotated, Any
from uuid import UUID

import nats.aio.client
import nats.errors
from fastapi import FastAPI, Header, Query
from fastapi.responses import StreamingResponse
from nats.js.api import ConsumerConfig, DeliverPolicy
from starlette.requests import Request as HttpRequest

from agent_orchestrator.bridge.auth import caller_of
from agent_orchestrator.bridge.limits import BridgeLimits
from agent_orchestrator.bridge.problems import Problem, ProblemError
from agent_orchestrator.contracts.errors import ErrorCode
from agent_orchestrator.contracts.events import EventKind

KEEPALIVE_S = 15.0


def events_subject(agent_id: UUID | None, kind: EventKind | None) -> str:
    """The subject filter for one agent and/or one kind (``*`` where not given)."""
    return f"agent.event.{agent_id or '*'}.{kind or '*'}"


def sse(event_id: int, kind: str, data: bytes) -> bytes:
    """One SSE message (the JSON envelope has no line breaks)."""
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event_id, kind.encode(), data)


def in_project(data: bytes, project: str | None) -> bool:
    """Whether an event envelope belongs to ``project`` (None: any project)."""
    if project is None:
        return True
    try:
        return bool(json.loads(data).get("project_id") == project)
    except (ValueError, AttributeError):
        return False


async def event_stream(
    nc: nats.aio.client.Client,
    request: HttpRequest,
    subject: str,
    after: int | None,
    project: str | None = None,
) -> AsyncIterator[bytes]:
    """Events on ``subject`` after stream sequence ``after`` (or from now), until disconnect;
    only those of ``project`` when the caller is confined to one."""
    if after is None:
        config = ConsumerConfig(deliver_policy=DeliverPolicy.NEW)
    else:
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after + 1
        )
    sub = await nc.jetstream().subscribe(subject, ordered_consumer=True, config=config)
    try:
        yield b": connected\n\n"
        while not await request.is_disconnected():
            try:
                msg = await sub.next_msg(timeout=KEEPALIVE_S)
            except nats.errors.TimeoutError:
                yield b": keep-alive\n\n"
                continue
            if in_project(msg.data, project):
                yield sse(msg.metadata.sequence.stream, msg.subject.rsplit(".", 1)[-1], msg.data)
    finally:
        await sub.unsubscribe()


_EVENT_ID = re.compile(r"[0-9]{1,20}")
# A stream sequence is unsigned 64-bit; the stream resumes at the next one.
MAX_EVENT_ID = 2**64 - 2


def parse_last_event_id(value: str) -> int:
    """The stream sequence of ``Last-Event-ID``, or a 400 problem: ASCII digits only (``²``
    is a digit to Python, not to ``int``), at most 2^64 - 2."""
    text = value.strip()
    if _EVENT_ID.fullmatch(text) is None or int(text) > MAX_EVENT_ID:
        raise ProblemError(
            400,
            ErrorCode.VALIDATION_ERROR,
            f"Last-Event-ID must be an event id (a stream sequence, 0 to {MAX_EVENT_ID})",
            [{"path": "header.Last-Event-ID", "message": "not an event id"}],
        )
    return int(text)


def register_event_stream(
    app: FastAPI,
    connection: Callable[[], nats.aio.client.Client],
    dependencies: Sequence[Any] = (),
    limits: BridgeLimits | None = None,
    *,
    authenticated: bool = False,
) -> None:
    """Add ``GET /api/events`` (behind ``dependencies``: the bridge's authentication, when
    ``authenticated``, and its limits; ``limits`` counts the open streams)."""
    # Its problems: bad filters or Last-Event-ID, no NATS connection, and (with
    # authentication) no valid credential or none for a project.
    statuses = (400, 401, 403, 429, 503) if authenticated else (400, 429, 503)
    responses: dict[int | str, dict[str, Any]] = {
        200: {"content": {"text/event-stream": {}}},
        **{s: {"model": Problem, "description": HTTPStatus(s).phrase} for s in statuses},
    }

    @app.get(
        "/api/events",
        dependencies=list(dependencies),
        tags=["events"],
        summary="Agent events as Server-Sent Events (resumable with Last-Event-ID)",
        response_class=StreamingResponse,
        responses=responses,
    )
    async def events(
        request: HttpRequest,
        agent_id: Annotated[UUID | None, Query(description="Only this agent's events.")] = None,
        kind: Annotated[EventKind | None, Query(description="Only this kind.")] = None,
        last_event_id: Annotated[
            str | None, Header(description="Resume after this event id (stream sequence).")
        ] = None,
    ) -> StreamingResponse:
        after = None if last_event_id is None else parse_last_event_id(last_event_id)
        caller = caller_of(request)
        project = caller.project if caller is not None else None
        stream = event_stream(connection(), request, events_subject(agent_id, kind), after, project)
        if limits is not None:
            stream = limits.counted(limits.open_stream(request), stream)
        return StreamingResponse(
            stream,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
