"""Identifier generation: UUIDv7, time-ordered, so keyset pagination follows creation order."""

from uuid import UUID

import uuid_utils


def new_id() -> UUID:
    """A fresh UUIDv7 as a standard-library UUID."""
    return UUID(bytes=uuid_utils.uuid7().bytes)
