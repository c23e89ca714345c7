"""Who is calling: the project and actor of a request, from NATS itself when it says.

In the production layout (docs/security.md) the service runs in its own NATS account
(``AO_NATS_SERVICE_ACCOUNT``) and each project is an account that imports the command subjects
with ``share: true``. nats-server then stamps every request that crosses into the service's
account with ``Nats-Request-Info``: the caller's account and user, replacing whatever header of
that name the caller wrote. So a request whose header names another account than the
service's is a tenant's, and its identity is the server's word:

- the project is the account's name; the actor is the user;
- a user named ``agent-<agent_id>`` is that agent's worker (see :func:`worker_user`);
- a caller-supplied ``Project-Scope`` or ``Actor`` is ignored.

A request without that header, or with one naming the service's own account, comes from inside
the service's account (the service, the bridge, operators): nats-server passes such a header
through unchanged there, so its content is not believed, and ``Project-Scope`` and ``Actor``
are taken as given (the bridge sets them for its authenticated callers). With
``AO_NATS_SERVICE_ACCOUNT`` unset (``dev``, one open account) nothing is read from NATS.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass
from uuid import UUID

from agent_orchestrator.contracts.subjects import (
    ACTOR_HEADER,
    DEFAULT_ACTOR,
    MAX_ACTOR_LENGTH,
    PROJECT_SCOPE_HEADER,
    REQUEST_INFO_HEADER,
)

WORKER_USER_PREFIX = "agent-"


def worker_user(agent_id: UUID | str) -> str:
    """The NATS user name of an agent's worker: ``agent-<agent_id>``."""
    return f"{WORKER_USER_PREFIX}{agent_id}"


def _worker_agent(user: str) -> UUID | None:
    if not user.startswith(WORKER_USER_PREFIX):
        return None
    try:
        return UUID(user.removeprefix(WORKER_USER_PREFIX))
    except ValueError:
        return None


@dataclass(frozen=True)
class Caller:
    """Who sent a request.

    ``project``: the one project it may touch (None: any, an operator). ``agent_id``: set when
    the caller is that agent's worker. ``from_nats``: the identity is nats-server's word.
    """

    project: str | None
    actor: str
    agent_id: UUID | None = None
    from_nats: bool = False


class Identities:
    """Reads the caller of a request from its headers (see the module's docstring)."""

    def __init__(self, service_account: str | None = None) -> None:
        self.service_account = service_account or None

    def caller(self, headers: Mapping[str, str]) -> Caller:
        """The caller of a request with ``headers``."""
        if self.service_account is not None:
            info = headers.get(REQUEST_INFO_HEADER)
            if info is not None:
                tenant = self._tenant(info)
                if tenant is not None:
                    return tenant
        actor = headers.get(ACTOR_HEADER) or DEFAULT_ACTOR
        return Caller(headers.get(PROJECT_SCOPE_HEADER), actor[:MAX_ACTOR_LENGTH])

    def _tenant(self, info: str) -> Caller | None:
        try:
            fields = json.loads(info)
        except ValueError:
            return None
        account = fields.get("acc") if isinstance(fields, dict) else None
        if not isinstance(account, str) or not account or account == self.service_account:
            return None  # inside the service's account: the header is the caller's own words
        user = fields.get("user")
        user = user if isinstance(user, str) and user else "unknown"
        return Caller(
            project=account,
            actor=f"{account}/{user}"[:MAX_ACTOR_LENGTH],
            agent_id=_worker_agent(user),
            from_nats=True,
        )
