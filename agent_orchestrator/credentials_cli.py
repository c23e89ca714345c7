"""``agent-orchestrator credentials``: the production layout's NATS accounts and users.

Writes the ``accounts`` configuration nats-server includes (see ``runtime.nats_accounts`` and
docs/security.md) and keeps every password in a JSON file, so each run adds projects or agents
and keeps the rest. nats-server reads the new file on a reload (``nats-server --signal reload``
or SIGHUP).
"""

import os
from pathlib import Path
from typing import Annotated

import typer

from agent_orchestrator.contracts.subjects import WORKER_JS_API_PREFIX
from agent_orchestrator.runtime.nats_accounts import (
    SERVICE_USERS,
    WORKER_PREFIX,
    Credentials,
    project_operator,
    server_config,
    service_password_variable,
    url,
)


def _agent(value: str) -> tuple[str, str]:
    project, sep, agent_id = value.partition(":")
    if not sep or not project or not agent_id:
        raise typer.BadParameter(f"{value!r} is not PROJECT:AGENT_ID")
    return project, agent_id


def credentials(
    project: Annotated[
        list[str] | None, typer.Option(help="A project (its NATS account); repeat for more.")
    ] = None,
    agent: Annotated[
        list[str] | None,
        typer.Option(help="PROJECT:AGENT_ID: a worker user for that agent; repeat for more."),
    ] = None,
    file: Annotated[
        Path, typer.Option(help="Where the passwords are kept (created 0600 if missing).")
    ] = Path("nats-credentials.json"),
    out: Annotated[
        Path, typer.Option(help="The accounts configuration nats-server includes.")
    ] = Path("nats-accounts.conf"),
    server: Annotated[str, typer.Option(help="host:port in the printed URLs.")] = "nats:4222",
    reply_window: Annotated[
        str | None,
        typer.Option(
            help="How long a worker may stream answers to a request it received (a prompt): "
            "e.g. 10m; kept for later runs; default 1h."
        ),
    ] = None,
) -> None:
    """Generate NATS accounts: the service's, one per project, a user per agent's worker.

    NATS_SERVICE_PASSWORD, NATS_BRIDGE_PASSWORD and NATS_OPERATOR_PASSWORD, when set, are the
    passwords of the service's users (as docker-compose.yml sets them).
    """
    kept = Credentials.load(file)
    agents = [_agent(value) for value in agent or []]
    given = {
        user: os.environ[service_password_variable(user)]
        for user in SERVICE_USERS
        if os.environ.get(service_password_variable(user))
    }
    try:
        if reply_window is not None:
            kept.set_reply_window(reply_window)
        kept.add(projects=project or [], agents=agents, service_passwords=given)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    kept.save(file)
    out.write_text(server_config(kept), encoding="utf-8")
    typer.echo(f"wrote {out} (include it from nats-server's configuration) and {file}")
    service = kept.service_account
    typer.echo(f"service account {service}: AO_NATS_SERVICE_ACCOUNT={service}")
    for user in SERVICE_USERS:
        typer.echo(f"  {user}: {url(kept, service, user, server)}")
    for name in project or []:
        typer.echo(f"project {name}: {url(kept, name, project_operator(name), server)}")
    for name, agent_id in agents:
        typer.echo(
            f"agent {agent_id} of {name}: {url(kept, name, WORKER_PREFIX + agent_id, server)}"
            f"  (AgentWorker(..., api_prefix={WORKER_JS_API_PREFIX!r}))"
        )
