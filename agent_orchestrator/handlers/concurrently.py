"""Independent reads of one request, run at the same time."""

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

A = TypeVar("A")
B = TypeVar("B")


async def gather_in_order(first: Awaitable[A], second: Awaitable[B]) -> tuple[A, B]:
    """Both results; when both fail, the first one's error wins (so a request reports what a
    sequential version would have: e.g. an unknown agent before a missing checkpoint)."""
    a, b = await asyncio.gather(first, second, return_exceptions=True)
    if isinstance(a, BaseException):
        raise a
    if isinstance(b, BaseException):
        raise b
    return a, b
