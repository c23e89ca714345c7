"""An ASGI middleware that refuses request bodies over a size limit with a 413 problem.

It looks at ``Content-Length`` first, then counts a streamed body as it arrives, so a client
cannot get past it by leaving the length out. A body within the limit is buffered and handed
on whole.
"""

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent_orchestrator.bridge.problems import problem_response
from agent_orchestrator.contracts.errors import ErrorCode


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
    """``receive`` that first hands out ``messages`` (the buffered body)."""
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


__all__ = ["BodyLimit"]
