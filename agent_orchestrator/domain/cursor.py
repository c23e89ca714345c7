"""Opaque keyset-pagination cursors: base64url JSON that callers pass back unchanged."""

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any, TypeVar

from agent_orchestrator.contracts.common import MAX_VERSION
from agent_orchestrator.domain.errors import ValidationFailed

T = TypeVar("T")


def encode_cursor(key: str, value: Any) -> str:
    """Pack a page position (one key, one JSON value) into an opaque string."""
    raw = json.dumps({key: value}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, key: str, convert: Callable[[Any], T]) -> T:
    """Unpack a cursor made by encode_cursor; anything else is a validation error."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        position = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(position, dict) or set(position) != {key}:
            raise ValueError("unexpected cursor shape")
        return convert(position[key])
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise ValidationFailed(
            "cursor is not one this service issued", details=[{"path": "cursor"}]
        ) from exc


def split_page(
    fetched: list[T], limit: int, key: str, position: Callable[[T], Any]
) -> tuple[list[T], str | None]:
    """From ``limit + 1`` fetched items: the page, and the cursor of the next (None at the end)."""
    if len(fetched) <= limit:
        return fetched, None
    page = fetched[:limit]
    return page, encode_cursor(key, position(page[-1]))


def version_number(value: Any) -> int:
    """A version in a cursor: a whole number that fits a PostgreSQL integer."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_VERSION:
        raise ValueError("not a version number")
    return value
