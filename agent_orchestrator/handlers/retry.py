"""One way to retry an optimistic write: decide again on top of what a concurrent writer left.

Every write that loads, decides and saves only if nothing changed meanwhile (an agent's
``version``, a task's revision, a state's KV revision, a message still SENT) goes through
:func:`retry_on_conflict`, so a lost race is retried the same way and, when races keep being
lost, ends in the same ``conflict`` reply.
"""

from collections.abc import Awaitable, Callable
from typing import TypeVar

from agent_orchestrator.domain.errors import Conflict

T = TypeVar("T")


async def retry_on_conflict(
    attempts: int, attempt: Callable[[], Awaitable[T | None]], *, what: str
) -> T:
    """Run ``attempt`` until it returns a result, at most ``attempts`` times.

    ``attempt`` loads, decides and writes conditionally. It returns None when its write changed
    nothing because somebody else wrote first (then it runs again on what they left), and
    raises for a refused change. When every attempt lost its race: ``Conflict`` on ``what``.
    """
    for _ in range(attempts):
        result = await attempt()
        if result is not None:
            return result
    raise Conflict(f"{what} is being changed by others too often; retry")
