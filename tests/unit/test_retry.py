"""retry_on_conflict: a lost race is decided again, up to the given number of attempts."""

import pytest

from agent_orchestrator.domain.errors import Conflict
from agent_orchestrator.handlers.retry import retry_on_conflict


async def test_returns_the_first_result_after_lost_races() -> None:
    outcomes = iter([None, None, "saved"])
    calls = 0

    async def attempt() -> str | None:
        nonlocal calls
        calls += 1
        return next(outcomes)

    assert await retry_on_conflict(8, attempt, what="agent x") == "saved"
    assert calls == 3


async def test_gives_up_with_conflict_after_exactly_the_given_attempts() -> None:
    calls = 0

    async def attempt() -> str | None:
        nonlocal calls
        calls += 1
        return None

    with pytest.raises(Conflict, match=r"^task t is being changed by others too often; retry$"):
        await retry_on_conflict(4, attempt, what="task t")
    assert calls == 4


async def test_a_refusal_is_not_retried() -> None:
    calls = 0

    async def attempt() -> str | None:
        nonlocal calls
        calls += 1
        raise Conflict("expected version 3")

    with pytest.raises(Conflict, match="expected version 3"):
        await retry_on_conflict(4, attempt, what="agent x")
    assert calls == 1
