"""The production NATS layout as nats-server configuration: who may send what.

- The service's account (``ORCHESTRATOR`` by default) owns every stream and bucket and holds
  the service, the bridge and operators. It exports the command subjects as services, and to
  agents' workers only the JetStream subjects their protocol needs (never one that deletes or
  purges).
- Each project is an account of that name. It imports the command subjects with
  ``share: true``, so nats-server stamps each request with ``Nats-Request-Info`` (the account
  and user) that the service believes (see ``handlers.identity``). Its ``operator-<project>``
  user may send commands and prompt the project's agents on the NATS agent protocol; an
  agent's worker is the user ``agent-<agent_id>``, allowed its own agent's reports, heartbeat
  key, inbox, task queue and agent protocol endpoint, nothing else.

Passwords are made here (``secrets``) and kept in a JSON file, so running the generator again
for one more project or agent keeps everybody else's. See docs/security.md.
"""

import json
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent_orchestrator.contracts.subjects import (
    COMMAND_EXPORTS,
    DEFAULT_JS_API_PREFIX,
    EVENTS_SUBJECTS,
    HEARTBEATS_BUCKET,
    HEARTBEATS_STREAM,
    MESSAGES_STREAM,
    TASKS_STREAM,
    WORKER_COMMANDS,
    WORKER_JS_API_PREFIX,
    heartbeat_subject,
    inbox_consumer,
    inbox_subject,
    outgoing_subject,
    task_consumer,
    task_subject,
)
from agent_orchestrator.runtime.protocol_permissions import (
    PROMPTER_SUBSCRIBE,
    endpoint_permissions,
    prompter_publish,
)

SERVICE_ACCOUNT = "ORCHESTRATOR"
SERVICE_USERS = ("service", "bridge", "operator")


def project_operator(project: str) -> str:
    """The user name of a project's operator (user names are unique across accounts)."""
    return f"operator-{project}"


WORKER_PREFIX = "agent-"
REPLIES = "_INBOX.>"
#: How long a worker may answer a request it received (a prompt's stream of chunks, a
#: ``$SRV`` discovery request): nats-server's ``allow_responses``, any number of messages.
#: nats-server keeps an entry for every message with a reply subject the worker receives (its
#: queues' messages too) for this long, so it is not unlimited (``Credentials.reply_window``).
DEFAULT_REPLY_WINDOW = "1h"
_WINDOW = re.compile(r"^[1-9][0-9]*(s|m|h)$")

# What the service's account lends to projects besides the commands: the JetStream subjects of
# a worker's protocol (its user permissions narrow each to its own agent).
_JS_EXPORTS: tuple[tuple[str, str], ...] = (
    (f"$KV.{HEARTBEATS_BUCKET}.*", "singleton"),
    *((f"$JS.API.STREAM.INFO.{stream}", "singleton") for stream in (MESSAGES_STREAM, TASKS_STREAM)),
    *(
        (f"$JS.API.CONSUMER.INFO.{stream}.*", "singleton")
        for stream in (MESSAGES_STREAM, TASKS_STREAM)
    ),
    *(
        (f"$JS.API.CONSUMER.MSG.NEXT.{stream}.*", "stream")
        for stream in (MESSAGES_STREAM, TASKS_STREAM)
    ),
    (f"$JS.API.CONSUMER.CREATE.{MESSAGES_STREAM}.*.agent.inbox.*", "singleton"),
    (f"$JS.API.CONSUMER.CREATE.{TASKS_STREAM}.*.agent.task.*", "singleton"),
    (f"$JS.ACK.{MESSAGES_STREAM}.>", ""),
    (f"$JS.ACK.{TASKS_STREAM}.>", ""),
    # The last heartbeat of an agent, which its protocol endpoint's ``status`` reports.
    (f"$JS.API.DIRECT.GET.{HEARTBEATS_STREAM}.$KV.{HEARTBEATS_BUCKET}.*", "singleton"),
    # Messages sent without a request: a publish into AGENT_OUTGOING, answered by its PubAck.
    (outgoing_subject("*"), "singleton"),
)


def _local(subject: str) -> str:
    """Where a project's account reaches an exported JetStream API subject."""
    prefix = f"{DEFAULT_JS_API_PREFIX}."
    if subject.startswith(prefix):
        return f"{WORKER_JS_API_PREFIX}.{subject.removeprefix(prefix)}"
    return subject


def worker_permissions(
    agent_id: str, project: str, reply_window: str = DEFAULT_REPLY_WINDOW
) -> dict[str, Any]:
    """What the worker of one agent of ``project`` may publish and subscribe to, and for how
    long it may answer a request (``reply_window``, a duration such as ``1h``)."""
    inbox, tasks = inbox_consumer(agent_id), task_consumer(agent_id)
    api = WORKER_JS_API_PREFIX
    publish = [
        *WORKER_COMMANDS,
        heartbeat_subject(agent_id),
        # Its own agent's outgoing subject only: the subject is what names the sender.
        outgoing_subject(agent_id),
        # The streams' metadata holds the consumer settings every worker uses (data-plane.md);
        # no DELETE: a worker's consumer goes when it has been idle for AO_WORKER_INACTIVE_S.
        f"{api}.STREAM.INFO.{MESSAGES_STREAM}",
        f"{api}.STREAM.INFO.{TASKS_STREAM}",
        f"{api}.CONSUMER.INFO.{MESSAGES_STREAM}.{inbox}",
        f"{api}.CONSUMER.INFO.{TASKS_STREAM}.{tasks}",
        f"{api}.CONSUMER.MSG.NEXT.{MESSAGES_STREAM}.{inbox}",
        f"{api}.CONSUMER.MSG.NEXT.{TASKS_STREAM}.{tasks}",
        f"{api}.CONSUMER.CREATE.{MESSAGES_STREAM}.{inbox}.{inbox_subject(agent_id)}",
        f"{api}.CONSUMER.CREATE.{TASKS_STREAM}.{tasks}.{task_subject(agent_id)}",
        f"$JS.ACK.{MESSAGES_STREAM}.{inbox}.>",
        f"$JS.ACK.{TASKS_STREAM}.{tasks}.>",
    ]
    # Its agent's events: how the SDK follows the agent's status (pause, activate, terminate).
    subscribe = [REPLIES, agent_events(agent_id)]
    endpoint_publish, endpoint_subscribe = endpoint_permissions(agent_id, project)
    publish += endpoint_publish
    subscribe += endpoint_subscribe
    return {
        "publish": {"allow": publish},
        "subscribe": {"allow": subscribe},
        "allow_responses": {"max": -1, "expires": reply_window},
    }


def agent_events(agent_id: str) -> str:
    """The events of one agent, which its project imports for that agent's worker alone."""
    return f"agent.event.{agent_id}.*"


OPERATOR_PERMISSIONS: dict[str, Any] = {
    # The commands, and the agent protocol with the project's agents.
    "publish": {"allow": [*COMMAND_EXPORTS, *prompter_publish()]},
    "subscribe": {"allow": [REPLIES, *PROMPTER_SUBSCRIBE]},
}


@dataclass
class Credentials:
    """Every user's password, by account; what the generator keeps between runs."""

    service_account: str = SERVICE_ACCOUNT
    service: dict[str, str] = field(default_factory=dict)
    projects: dict[str, dict[str, str]] = field(default_factory=dict)
    reply_window: str = DEFAULT_REPLY_WINDOW

    @classmethod
    def load(cls, path: Path) -> "Credentials":
        """The credentials kept in ``path`` (none yet if it does not exist)."""
        if not path.exists():
            return cls()
        data = json.loads(path.read_text(encoding="utf-8"))
        window = data.get("reply_window", DEFAULT_REPLY_WINDOW)
        return cls(data["service_account"], data["service"], data["projects"], window)

    def save(self, path: Path) -> None:
        """Keep them in ``path``, readable by its owner only."""
        path.touch(mode=0o600, exist_ok=True)
        path.write_text(json.dumps(self.__dict__, indent=2) + "\n", encoding="utf-8")

    def set_reply_window(self, window: str) -> None:
        """How long workers may answer requests: a whole number of ``s``, ``m`` or ``h``."""
        if not _WINDOW.fullmatch(window):
            raise ValueError(f"{window!r} is not a reply window such as 90s, 10m or 1h")
        self.reply_window = window

    def add(
        self,
        projects: Iterable[str] = (),
        agents: Iterable[tuple[str, str]] = (),
        service_passwords: Mapping[str, str] | None = None,
    ) -> None:
        """Make passwords for the service's users, ``projects`` and ``(project, agent_id)``
        workers that have none yet; ``service_passwords`` sets those of the service's users
        (e.g. from a deployment's secrets)."""
        for user in SERVICE_USERS:
            self.service.setdefault(user, secrets.token_urlsafe(24))
        self.service.update(service_passwords or {})
        for project in projects:
            _check_name(project)
            self.projects.setdefault(project, {}).setdefault(
                project_operator(project), secrets.token_urlsafe(24)
            )
        for project, agent_id in agents:
            self.add(projects=[project])
            self.projects[project].setdefault(WORKER_PREFIX + agent_id, secrets.token_urlsafe(24))


def service_password_variable(user: str) -> str:
    """The environment variable that may set a service user's password: NATS_<USER>_PASSWORD."""
    return f"NATS_{user.upper()}_PASSWORD"


def _check_name(project: str) -> None:
    if not project or len(project) > 200 or any(c in project for c in ' \t\n"{}[]:.*>'):
        raise ValueError(
            f"{project!r} cannot be a project account: 1-200 characters, no spaces, dots, "
            "wildcards, quotes or brackets"
        )


def _users(
    passwords: dict[str, str],
    permissions: Any = None,
    project: str = "",
    reply_window: str = DEFAULT_REPLY_WINDOW,
) -> list[dict[str, Any]]:
    users = []
    for user, password in sorted(passwords.items()):
        entry: dict[str, Any] = {"user": user, "password": password}
        if user.startswith(WORKER_PREFIX):
            agent_id = user.removeprefix(WORKER_PREFIX)
            entry["permissions"] = worker_permissions(agent_id, project, reply_window)
        elif permissions is not None:
            entry["permissions"] = permissions
        users.append(entry)
    return users


def accounts(credentials: Credentials) -> dict[str, Any]:
    """The ``accounts`` block of nats-server's configuration."""
    service = credentials.service_account
    exports: list[dict[str, Any]] = [
        {"service": subject, "response_type": "singleton"} for subject in COMMAND_EXPORTS
    ]
    for subject, response in _JS_EXPORTS:
        exports.append({"service": subject, **({"response_type": response} if response else {})})
    # Events as a stream: each project imports those of its own agents that have a worker.
    exports.append({"stream": EVENTS_SUBJECTS})
    result: dict[str, Any] = {
        service: {
            "jetstream": "enabled",
            "users": _users(credentials.service),
            "exports": exports,
        }
    }
    for project, passwords in sorted(credentials.projects.items()):
        imports: list[dict[str, Any]] = [
            {"service": {"account": service, "subject": subject}, "share": True}
            for subject in COMMAND_EXPORTS
        ]
        imports += [
            {"service": {"account": service, "subject": subject}, "to": _local(subject)}
            for subject, _ in _JS_EXPORTS
        ]
        imports += [
            {"stream": {"account": service, "subject": agent_events(user[len(WORKER_PREFIX) :])}}
            for user in sorted(passwords)
            if user.startswith(WORKER_PREFIX)
        ]
        result[project] = {
            "users": _users(passwords, OPERATOR_PERMISSIONS, project, credentials.reply_window),
            "imports": imports,
        }
    return result


def server_config(credentials: Credentials) -> str:
    """The ``accounts`` setting of nats-server (its values in JSON, which nats-server reads):
    include it from the server's configuration, which holds the rest (JetStream, ports, TLS)."""
    return "accounts: " + json.dumps(accounts(credentials), indent=2) + "\n"


def url(credentials: Credentials, account: str, user: str, server: str) -> str:
    """A NATS URL with the user's credentials for ``server`` (``host:port``)."""
    if account == credentials.service_account:
        password = credentials.service[user]
    else:
        password = credentials.projects[account][user]
    return f"nats://{user}:{password}@{server}"
