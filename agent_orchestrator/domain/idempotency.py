"""Idempotency-Key rules: a fingerprint of the request, and the decision on a repeat."""

import hashlib
import json
from typing import Any

from agent_orchestrator.domain.errors import Conflict


def fingerprint(subject: str, body: dict[str, Any]) -> str:
    """A stable hash of what the request asks for (subject and parsed body)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{subject}\n{canonical}".encode()).hexdigest()


def check_repeat(key: str, stored_fingerprint: str, new_fingerprint: str) -> None:
    """A repeat must ask for the same thing as the first request with that key."""
    if stored_fingerprint != new_fingerprint:
        raise Conflict(
            f"Idempotency-Key {key!r} was already used for a different request",
            details={"idempotency_key": key},
        )
