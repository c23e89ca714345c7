"""A plain nats-py request helper for tests: what any caller of the service would write."""

import json
from dataclasses import dataclass
from typing import Any

import nats.aio.client


@dataclass(frozen=True)
class Reply:
    """A decoded reply: body, headers, and the error code when it is an error."""

    body: Any
    headers: dict[str, str]

    @property
    def error_code(self) -> str | None:
        """The contract error code, or None for a success reply (which the service marks by
        the absence of ``Nats-Service-Error``; a task's own ``error`` field is not one)."""
        if "Nats-Service-Error" not in self.headers:
            return None
        return str(self.body["error"]["code"])

    @property
    def status(self) -> int:
        """The HTTP-like status from Nats-Service-Error-Code (200 on success)."""
        return int(self.headers.get("Nats-Service-Error-Code", "200"))


async def call(
    nc: nats.aio.client.Client,
    subject: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> Reply:
    """Send one request (JSON body, or ``raw`` bytes as they are) and decode the reply."""
    payload = raw if raw is not None else json.dumps(body if body is not None else {}).encode()
    msg = await nc.request(subject, payload, timeout=timeout, headers=headers)
    return Reply(json.loads(msg.data), dict(msg.headers or {}))


async def ok(nc: nats.aio.client.Client, subject: str, body: Any = None, **kw: Any) -> Any:
    """Send a request that must succeed; return the reply body."""
    reply = await call(nc, subject, body, **kw)
    assert reply.error_code is None, reply.body
    return reply.body
