"""Waiting in tests for what the service does asynchronously: one polling loop for all."""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    *,
    within: float,
    what: str,
    interval: float = 0.1,
) -> T:
    """Poll ``probe`` until ``done(result)``; fail with the last result after ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        result = await probe()
        if done(result):
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not reached within {within:.0f} s; last seen: {result!r}")
        await asyncio.sleep(interval)
