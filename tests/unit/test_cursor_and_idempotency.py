"""Cursors round-trip and reject forgeries; idempotency fingerprints are stable."""

from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_orchestrator.domain.cursor import decode_cursor, encode_cursor
from agent_orchestrator.domain.errors import Conflict, ValidationFailed
from agent_orchestrator.domain.idempotency import check_repeat, fingerprint


@given(st.uuids())
def test_a_cursor_round_trips(value: UUID) -> None:
    assert decode_cursor(encode_cursor("before", str(value)), "before", UUID) == value


@pytest.mark.parametrize(
    "cursor", ["", "!!!", "bm90IGpzb24", encode_cursor("after", 3), encode_cursor("before", "x")]
)
def test_a_foreign_cursor_is_a_validation_error(cursor: str) -> None:
    with pytest.raises(ValidationFailed):
        decode_cursor(cursor, "before", UUID)


def test_fingerprint_ignores_key_order_but_not_values() -> None:
    assert fingerprint("s", {"a": 1, "b": 2}) == fingerprint("s", {"b": 2, "a": 1})
    assert fingerprint("s", {"a": 1}) != fingerprint("s", {"a": 2})
    assert fingerprint("s", {"a": 1}) != fingerprint("t", {"a": 1})


def test_a_repeat_with_another_body_is_a_conflict() -> None:
    check_repeat("k", "f1", "f1")
    with pytest.raises(Conflict):
        check_repeat("k", "f1", "f2")
