"""An ASGI middleware that refuses request bodies over a size limit with a 413 problem.

Every body has the request limit, except on the routes given their own (a state update may
carry a whole state). It looks at ``Content-Length`` first, then counts a streamed body as it
arrives, so a client cannot get past it by leaving the length out. A body within the limit is
buffered and handed on whole. The 413 names the limit that applied and the setting that raises
it.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass

from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent_orchestrator.bridge.problems import ProblemResponse, problem_response
from agent_orchestrator.contracts.errors import ErrorCode
from agent_orchestrator.contracts.limits import Limit


@dataclass(frozen=True)
class RouteLimit:
    """A limit of its own for one method and path template (``/api/agents/{agent_id}/state``)."""

    method: str
    path: str
    limit: Limit


class BodyLimit:
    """Answer 413 problem+json to a request body over its limit (declared or streamed)."""

    def __init__(self, app: ASGIApp, limit: Limit, routes: Sequence[RouteLimit] = ()) -> None:
        self.app = app
        self.limit = limit
        self._routes: list[tuple[str, re.Pattern[str], Limit]] = [
            (route.method, compile_path(route.path)[0], route.limit) for route in routes
        ]

    def limit_of(self, scope: Scope) -> Limit:
        """The limit of this request's method and path."""
        for method, pattern, limit in self._routes:
            if scope["method"] == method and pattern.match(scope["path"]):
                return limit
        return self.limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_of(scope)
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > limit.bytes:
                await _too_large(limit, int(value))(scope, receive, send)
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
            if size > limit.bytes:
                await _too_large(limit, None)(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        buffered: Message = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([buffered], receive), send)


def _too_large(limit: Limit, size: int | None) -> ProblemResponse:
    details: dict[str, object] = {"limit": limit.bytes, "setting": limit.setting}
    if size is not None:
        details["size"] = size
    return problem_response(
        413, ErrorCode.PAYLOAD_TOO_LARGE, limit.refusal("request body", size), details=details
    )


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """``receive`` that first hands out ``messages`` (the buffered body)."""
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


__all__ = ["BodyLimit", "Limit", "RouteLimit"]
