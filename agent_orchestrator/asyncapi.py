"""The AsyncAPI 3.0 document: FastStream's description of the subscribers, completed with
the replies (success and error), the request headers and the event channel.

It needs only the broker (with every subscriber included) and the command specs; the service
passes its own. ``asyncapi.yaml`` at the repository root is the document of a service with
default settings; a test keeps the two equal.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from faststream.nats import NatsBroker
from faststream.specification import AsyncAPI
from pydantic import BaseModel

from agent_orchestrator import __version__
from agent_orchestrator.contracts import agent_protocol as wire
from agent_orchestrator.contracts import subjects
from agent_orchestrator.contracts.communications import Communication, OutgoingMessage
from agent_orchestrator.contracts.errors import ErrorReply
from agent_orchestrator.contracts.events import Event, EventKind
from agent_orchestrator.contracts.liveness import Heartbeat
from agent_orchestrator.contracts.tasks import TaskAssignment
from agent_orchestrator.contracts.templates import TemplateEvent, TemplateEventKind
from agent_orchestrator.handlers.commands import CommandSpec
from agent_orchestrator.settings import Settings

DESCRIPTION = """\
NATS-native orchestrator for AI agents.

Commands are NATS request/reply on the subjects below, served by queue group
`agent-orchestrator`. A success reply is the resource itself; an error reply is
`{"error": {"code", "message", "details"}}` with headers `Nats-Service-Error-Code` (HTTP-like
status) and `Nats-Service-Error`. Mutating commands accept an `Idempotency-Key` header.

Events go to stream AGENT_EVENTS on `agent.event.<agent_id>.<kind>` with `Nats-Msg-Id` equal
to `event_id`: `nats sub 'agent.event.*.paused'` shows every pause.
"""

REQUEST_HEADERS = {
    "type": "object",
    "properties": {
        subjects.IDEMPOTENCY_KEY_HEADER: {
            "type": "string",
            "maxLength": subjects.MAX_IDEMPOTENCY_KEY_LENGTH,
            "description": "Mutating commands: a repeat with the same key and body returns "
            "the first reply and changes nothing; another body is a `conflict`.",
        },
        subjects.ACTOR_HEADER: {
            "type": "string",
            "description": "Who is asking; recorded in the history. "
            f"Default `{subjects.DEFAULT_ACTOR}`.",
        },
    },
}

ERROR_HEADERS = {
    "type": "object",
    "properties": {
        subjects.SERVICE_ERROR_CODE_HEADER: {
            "type": "string",
            "description": "HTTP-like status: 400, 404, 409, 413, 500, 503.",
        },
        subjects.SERVICE_ERROR_HEADER: {"type": "string", "description": "The message."},
    },
}


EVENT_CHANNELS: list[tuple[str, type[BaseModel], list[str], str]] = [
    (
        "agent.event",
        Event,
        [str(k) for k in EventKind],
        "Stream AGENT_EVENTS: every lifecycle and data event of an agent.",
    ),
    (
        "template.event",
        TemplateEvent,
        [str(k) for k in TemplateEventKind],
        "Stream TEMPLATE_EVENTS: templates created, updated (new version), deleted.",
    ),
]


AGENT_ID = "{agent_id}"
TTL_HEADER = "Nats-TTL"


def _setting(name: str) -> Any:
    """The default of one service setting, for descriptions."""
    return Settings.model_fields[name].default


def _consumer(stream: str, name: str, ack_wait: str, max_deliveries: str) -> str:
    return (
        f"A running worker creates the consumer `{name}` on stream {stream} itself, filtered "
        f"on this subject, with the settings in the stream's metadata (`agent-orchestrator.*`) "
        f"and their inactive threshold, deletes it when it stops, and pulls only while the "
        f"agent is ACTIVE (it follows `agent.event.<agent_id>.*`): explicit acks, ack wait "
        f"`AO_{ack_wait.upper()}` (default {_setting(ack_wait):g} s), {max_deliveries}."
    )


@dataclass(frozen=True)
class WorkerChannel:
    """A subject an agent's worker (any language) uses besides the command subjects."""

    name: str
    address: str
    message: str
    model: type[BaseModel]
    headers: dict[str, Any]
    action: str
    """What the service does on it: ``send`` (the worker receives) or ``receive``."""
    description: str
    summary: str


WORKER_CHANNELS = [
    WorkerChannel(
        name="agent.heartbeat",
        address=subjects.heartbeat_subject(AGENT_ID),
        message="Heartbeat",
        model=Heartbeat,
        headers={
            "type": "object",
            "required": [TTL_HEADER],
            "properties": {
                TTL_HEADER: {
                    "type": "string",
                    "examples": ["15", "15s"],
                    "description": "The agent's heartbeat window "
                    "(`configuration.liveness.heartbeat_window_s`, default 15): seconds, or a "
                    "duration such as `15s`. The key expires that long after the last beat.",
                },
            },
        },
        action="receive",
        description=f"KV bucket `{subjects.HEARTBEATS_BUCKET}`, key `<agent_id>`: a worker "
        "proves its agent alive by publishing to the key's subject (a JetStream publish with "
        "header Nats-TTL; a KV client's put sets no TTL) every third of the heartbeat window, with "
        "`by: worker`. When the key expires, nats-server writes a delete marker "
        "(`Nats-Marker-Reason: MaxAge`) and the service moves the ACTIVE agent to ERROR "
        "(`heartbeat_lost`). See docs/worker-protocol.md.",
        summary="Workers write heartbeats; the liveness monitor reads their expiry markers.",
    ),
    WorkerChannel(
        name="agent.task",
        address=subjects.task_subject(AGENT_ID),
        message="TaskAssignment",
        model=TaskAssignment,
        headers={
            "type": "object",
            "properties": {
                subjects.MSG_ID_HEADER: {
                    "type": "string",
                    "format": "uuid",
                    "description": "Stable per task and attempt (a repeat is dropped).",
                },
            },
        },
        action="send",
        description=f"Stream {subjects.TASKS_STREAM}: one message per attempt of a task. "
        + _consumer(
            subjects.TASKS_STREAM,
            subjects.task_consumer(AGENT_ID),
            "task_ack_wait_s",
            "no delivery limit",
        )
        + " Claim the attempt with task.start, then ack; an `unavailable` reply (also while "
        "the agent is not ACTIVE) means nak it with a delay; a `conflict` or `not_found` reply "
        "means it is not to be run: ack and drop it. Report with task.progress (at least "
        "every third of the time to the task's `deadline_at`), end with task.complete or "
        "task.fail. See docs/worker-protocol.md.",
        summary="Task assignments queued for the agent's worker.",
    ),
    WorkerChannel(
        name="agent.outgoing",
        address=subjects.outgoing_subject(AGENT_ID),
        message="OutgoingMessage",
        model=OutgoingMessage,
        headers={
            "type": "object",
            "required": [subjects.MSG_ID_HEADER],
            "properties": {
                subjects.MSG_ID_HEADER: {
                    "type": "string",
                    "format": "uuid",
                    "description": "The `communication_id` (a repeat within the stream's "
                    "duplicate window is one message).",
                },
            },
        },
        action="receive",
        description=f"Stream {subjects.OUTGOING_STREAM}: a message the agent's worker sends "
        "without a request (agent.send stays for a synchronous answer). Publish it with a "
        "JetStream publish and wait for the PubAck: from then on it is durable. The subject "
        "names the sender (a worker's NATS user may publish only on its own agent's). The "
        "service ingests the stream in batches: each message is decided by agent.send's rules "
        "and recorded SENT (then published to agent.inbox.<to_agent_id>) or FAILED with the "
        "reason (communication.get tells the sender), usually within tens of milliseconds. "
        "See docs/worker-protocol.md and docs/data-plane.md.",
        summary="Messages the agent sends without a request.",
    ),
    WorkerChannel(
        name="agent.inbox",
        address=subjects.inbox_subject(AGENT_ID),
        message="InboxMessage",
        model=Communication,
        headers={
            "type": "object",
            "properties": {
                subjects.MSG_ID_HEADER: {
                    "type": "string",
                    "format": "uuid",
                    "description": "The `communication_id`.",
                },
                TTL_HEADER: {
                    "type": "string",
                    "description": "Whole seconds left of the sender's `ttl_s`, if it set one.",
                },
            },
        },
        action="send",
        description=f"Stream {subjects.MESSAGES_STREAM}: messages to the agent, the body being "
        "the Communication (status SENT). "
        + _consumer(
            subjects.MESSAGES_STREAM,
            subjects.inbox_consumer(AGENT_ID),
            "message_ack_wait_s",
            f"at most `AO_MESSAGE_MAX_DELIVERIES` (default "
            f"{_setting('message_max_deliveries')}) deliveries, after which the message is "
            "FAILED",
        )
        + " Before handing fetched messages to the program, offer them to "
        "communication.handover (only `accepted` ones may be handed over; ack `ended` ones, "
        "nak the rest); confirm handled ones in a later communication.handover (`delivered`), "
        "then ack. See docs/worker-protocol.md and docs/data-plane.md.",
        summary="Messages waiting for the agent.",
    ),
]


PROTOCOL_PARAMETERS = {
    "agent": {"description": "The agent's type, as a token (`[a-z0-9-]+`)."},
    "owner": {"description": "The agent's project (`default` without one)."},
    "session_name": {"description": "The agent's id."},
}
PROTOCOL_CHANNELS: list[tuple[str, str, type[BaseModel], str, str]] = [
    (
        "agents.prompt",
        "receive",
        wire.Envelope,
        "NATS agent protocol v0.3 (Synadia): the `prompt` endpoint of micro service `agents`, "
        "queue group `agents`, registered by the program of each ACTIVE agent. The body is an "
        "envelope `{prompt, attachments}` (or plain text; optional `parameters` and `timeout_s` "
        "go to the task). It becomes an agent.execute task; the reply is a stream of Chunk "
        "messages on the requester's inbox: `status` `ack`, progress as `status`, questions as "
        "`query`, the result as `response` then `status` `done`, and an empty message at the "
        "end; an error is a message with Nats-Service-Error-Code / Nats-Service-Error headers. "
        "See docs/agent-protocol.md.",
        "Prompts to our agents; the reply streams Chunk messages.",
    ),
    (
        "agents.status",
        "receive",
        wire.HeartbeatPayload,
        "The `status` endpoint (queue group `agents`): any body; the reply is a heartbeat "
        "payload from our liveness data (`ts` = the last beat of the agent's worker) with the "
        "extra fields `status`, `agent_id` and `worker`.",
        "Status of our agents, as a heartbeat payload.",
    ),
    (
        "agents.hb",
        "send",
        wire.HeartbeatPayload,
        "Heartbeats of our running ACTIVE agents, at the cadence of our own (a third of "
        "`configuration.liveness.heartbeat_window_s`, as `interval_s`). The adapter of the "
        "service also reads the heartbeats of adopted protocol agents here: each becomes our "
        "heartbeat with a time to live of 3 x `interval_s`.",
        "Protocol heartbeats (ours published, adopted agents' read).",
    ),
]


def _add_schema(doc: dict[str, Any], model: type[BaseModel]) -> dict[str, str]:
    schema = model.model_json_schema(
        mode="serialization", ref_template="#/components/schemas/{model}"
    )
    schemas = doc["components"]["schemas"]
    for name, definition in schema.pop("$defs", {}).items():
        schemas.setdefault(name, definition)
    schemas[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _add_message(
    doc: dict[str, Any],
    model: type[BaseModel],
    headers: dict[str, Any] | None = None,
    name: str | None = None,
) -> dict[str, str]:
    name = name or model.__name__
    message: dict[str, Any] = {
        "name": name,
        "title": name,
        "summary": (model.__doc__ or "").strip().splitlines()[0],
        "payload": _add_schema(doc, model),
    }
    if headers:
        message["headers"] = headers
    doc["components"]["messages"][name] = message
    return {"$ref": f"#/components/messages/{name}"}


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value


def asyncapi_document(broker: NatsBroker, commands: Sequence[CommandSpec]) -> dict[str, Any]:
    """The whole document as plain data: ``broker``'s subscribers, typed by ``commands``."""
    doc: dict[str, Any] = (
        AsyncAPI(broker, title="agent-orchestrator", version=__version__, description=DESCRIPTION)
        .to_specification()
        .to_jsonable()
    )
    doc["servers"]["development"]["host"] = "127.0.0.1:4222"
    channels, operations = doc["channels"], doc["operations"]
    messages = doc["components"]["messages"]

    error = _add_message(doc, ErrorReply, ERROR_HEADERS)
    replies: dict[str, Any] = {"ErrorReply": error}
    for spec in commands:
        request = messages[f"{spec.subject}:SubscribeMessage"]
        # Handlers validate in their decoder, so FastStream sees no typed body: add it here.
        request["payload"] = _add_schema(doc, spec.request)
        if spec.mutating:
            request["headers"] = REQUEST_HEADERS
        replies[spec.reply.__name__] = _add_message(doc, spec.reply)
        operations[spec.subject]["reply"] = {
            "channel": {"$ref": "#/channels/_INBOX"},
            "messages": [
                {"$ref": f"#/channels/_INBOX/messages/{spec.reply.__name__}"},
                {"$ref": "#/channels/_INBOX/messages/ErrorReply"},
            ],
        }
    channels["_INBOX"] = {
        "address": None,
        "description": "The requester's reply inbox (dynamic).",
        "messages": replies,
    }

    for name, model, kinds, what in EVENT_CHANNELS:
        id_param = name.split(".")[0] + "_id"
        channels[name] = {
            "address": f"{name}.{{{id_param}}}.{{kind}}",
            "description": what,
            "parameters": {
                id_param: {"description": "Id (UUIDv7) of what the event is about."},
                "kind": {"enum": kinds, "description": "Event kind."},
            },
            "messages": {model.__name__: _add_message(doc, model)},
        }
        operations[name] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{name}"},
            "summary": "Published (via the outbox) once per committed change; subscribe to watch.",
            "messages": [{"$ref": f"#/channels/{name}/messages/{model.__name__}"}],
        }

    for worker in WORKER_CHANNELS:
        channels[worker.name] = {
            "address": worker.address,
            "description": worker.description,
            "parameters": {"agent_id": {"description": "Id (UUIDv7) of the agent."}},
            "messages": {
                worker.message: _add_message(doc, worker.model, worker.headers, worker.message)
            },
        }
        operations[worker.name] = {
            "action": worker.action,
            "channel": {"$ref": f"#/channels/{worker.name}"},
            "summary": worker.summary,
            "messages": [{"$ref": f"#/channels/{worker.name}/messages/{worker.message}"}],
        }
    for name, action, model, what, summary in PROTOCOL_CHANNELS:
        verb = name.split(".")[1]
        channels[name] = {
            "address": f"agents.{verb}.{{agent}}.{{owner}}.{{session_name}}",
            "description": what,
            "parameters": PROTOCOL_PARAMETERS,
            "messages": {model.__name__: _add_message(doc, model)},
        }
        operations[name] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{name}"},
            "summary": summary,
            "messages": [{"$ref": f"#/channels/{name}/messages/{model.__name__}"}],
        }
    _add_message(doc, wire.Chunk)
    return _sorted(doc)  # type: ignore[no-any-return]


def asyncapi_yaml(broker: NatsBroker, commands: Sequence[CommandSpec]) -> str:
    """The document as YAML, as committed in ``asyncapi.yaml`` (for a default service)."""
    document = asyncapi_document(broker, commands)
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)
