"""How much one caller may ask of the bridge: requests per second, agent creations per minute
and concurrent event streams (each one a JetStream consumer), with 429 and ``Retry-After``.

A caller is the authenticated name (``AO_BRIDGE_AUTH``), or the client's address when
authentication is off. Counting uses the ``limits`` library's moving windows in memory: each
bridge instance counts its own callers. ``0`` turns a limit off.
"""

import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from limits import RateLimitItem, RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.requests import Request as HttpRequest

from agent_orchestrator.bridge.auth import caller_of
from agent_orchestrator.bridge.problems import ProblemError
from agent_orchestrator.bridge.settings import BridgeSettings
from agent_orchestrator.contracts.errors import ErrorCode

AGENT_CREATION = ("POST", "/api/agents")


def caller_key(request: HttpRequest) -> str:
    """Whom a request is counted against: the authenticated caller, else the client address."""
    caller = caller_of(request)
    if caller is not None:
        return f"caller:{caller.name}"
    return f"address:{request.client.host if request.client else 'unknown'}"


def too_many(message: str, retry_after_s: float, details: dict[str, object]) -> ProblemError:
    """A 429 problem telling the caller when to try again."""
    seconds = max(1, math.ceil(retry_after_s))
    return ProblemError(
        429,
        ErrorCode.RATE_LIMITED,
        message,
        details={**details, "retry_after_s": seconds},
        headers={"Retry-After": str(seconds)},
    )


@dataclass
class BridgeLimits:
    """The limits of one bridge instance, from its settings."""

    settings: BridgeSettings
    _limiter: MovingWindowRateLimiter = field(init=False)
    _streams: Counter[str] = field(default_factory=Counter, init=False)

    def __post_init__(self) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def _hit(self, item: RateLimitItem, key: str, what: str, setting: str) -> None:
        if self._limiter.hit(item, key):
            return
        reset = self._limiter.get_window_stats(item, key).reset_time
        raise too_many(
            f"too many {what}: at most {item.amount} per {item.GRANULARITY.name} "
            f"({setting}); retry later",
            reset - time.time(),
            {"limit": item.amount, "per": item.GRANULARITY.name, "setting": setting},
        )

    def check(self, request: HttpRequest) -> None:
        """Count one request (and one agent creation, for ``POST /api/agents``) or 429."""
        s = self.settings
        key = caller_key(request)
        if s.rate_limit_per_s:
            self._hit(
                RateLimitItemPerSecond(s.rate_limit_per_s),
                f"requests/{key}",
                "requests",
                "AO_BRIDGE_RATE_LIMIT_PER_S",
            )
        route = (request.method, request.url.path.rstrip("/"))
        if s.agent_creations_per_min and route == AGENT_CREATION:
            self._hit(
                RateLimitItemPerMinute(s.agent_creations_per_min),
                f"creations/{key}",
                "agent creations",
                "AO_BRIDGE_AGENT_CREATIONS_PER_MIN",
            )

    def open_stream(self, request: HttpRequest) -> str:
        """Take one event-stream slot for the caller (429 when none is left); give the key to
        :meth:`close_stream` when the stream ends."""
        s = self.settings
        key = caller_key(request)
        if s.max_event_streams and self._streams.total() >= s.max_event_streams:
            raise too_many(
                f"the bridge serves {s.max_event_streams} event streams already "
                "(AO_BRIDGE_MAX_EVENT_STREAMS); retry later",
                5,
                {"limit": s.max_event_streams, "setting": "AO_BRIDGE_MAX_EVENT_STREAMS"},
            )
        per_caller = s.max_event_streams_per_caller
        if per_caller and self._streams[key] >= per_caller:
            raise too_many(
                f"this caller has {per_caller} event streams open already "
                "(AO_BRIDGE_MAX_EVENT_STREAMS_PER_CALLER); close one or retry later",
                5,
                {"limit": per_caller, "setting": "AO_BRIDGE_MAX_EVENT_STREAMS_PER_CALLER"},
            )
        self._streams[key] += 1
        return key

    def close_stream(self, key: str) -> None:
        """Give back a slot taken by :meth:`open_stream`."""
        self._streams[key] -= 1
        if self._streams[key] <= 0:
            del self._streams[key]

    async def counted(self, key: str, stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """``stream``, holding the caller's slot until it ends."""
        try:
            async for chunk in stream:
                yield chunk
        finally:
            self.close_stream(key)


def limit_dependency(limits: BridgeLimits) -> Callable[[HttpRequest], Awaitable[None]]:
    """A FastAPI dependency that counts each request (after authentication names the caller)."""

    async def rate_limit(request: HttpRequest) -> None:
        limits.check(request)

    return rate_limit


__all__ = ["BridgeLimits", "caller_key", "limit_dependency", "too_many"]
