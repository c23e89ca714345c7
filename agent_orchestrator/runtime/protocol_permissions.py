"""The NATS agent protocol's part of the production layout's permissions (docs/security.md).

An agent's worker serves its own agent on the protocol (``client.protocol_endpoint``); a
project's operator discovers, pings and prompts the project's agents. The commands the endpoint
sends (``agent.execute``, ``task.get``, ``task.provide_input``) are among ``WORKER_COMMANDS``,
and its answers to requesters are nats-server's ``allow_responses`` (``nats_accounts``).
"""

from agent_orchestrator.contracts import agent_protocol as protocol
from agent_orchestrator.contracts.subjects import (
    HEARTBEATS_STREAM,
    WORKER_JS_API_PREFIX,
    heartbeat_subject,
)

#: The requests nats-py's micro service answers, on ``$SRV.<verb>[.<name>[.<id>]]``.
MICRO_VERBS = ("PING", "INFO", "STATS")


def endpoint_permissions(agent_id: str, project: str) -> tuple[list[str], list[str]]:
    """``(publish, subscribe)`` of the protocol endpoint of one agent's worker: its own agent's
    subjects, whatever the agent's type (unknown when the user is made)."""
    owner = protocol.owner_token(project)
    publish = [
        protocol.subject("hb", "*", owner, agent_id),
        # Its agent's last beat, which the ``status`` endpoint reports.
        f"{WORKER_JS_API_PREFIX}.DIRECT.GET.{HEARTBEATS_STREAM}.{heartbeat_subject(agent_id)}",
    ]
    subscribe = [
        f"{protocol.subject(endpoint, '*', owner, agent_id)} {protocol.QUEUE_GROUP}"
        for endpoint in (protocol.PROMPT_ENDPOINT, protocol.STATUS_ENDPOINT)
    ]
    for verb in MICRO_VERBS:  # the last token of the third form is the service's random id
        subscribe += [
            f"$SRV.{verb}",
            f"$SRV.{verb}.{protocol.SERVICE_NAME}",
            f"$SRV.{verb}.{protocol.SERVICE_NAME}.*",
        ]
    return publish, subscribe


def prompter_publish() -> list[str]:
    """What a project's operator publishes to use the project's agents: discovery, pings,
    prompts, status, and answers to queries (a query's reply subject is an inbox of the
    agent's program, hence ``_INBOX.>``)."""
    return [
        f"{protocol.SERVICE_NAME}.{protocol.PROMPT_ENDPOINT}.>",
        f"{protocol.SERVICE_NAME}.{protocol.STATUS_ENDPOINT}.>",
        *(f"$SRV.{verb}.{protocol.SERVICE_NAME}" for verb in MICRO_VERBS),
        *(f"$SRV.{verb}.{protocol.SERVICE_NAME}.*" for verb in MICRO_VERBS),
        "_INBOX.>",
    ]


#: What a project's operator subscribes to besides its inboxes: the agents' heartbeats.
PROMPTER_SUBSCRIBE = [protocol.HEARTBEATS]
