"""The AsyncAPI 3.0 document: FastStream's description of the subscribers, completed with
the replies (success and error), the request headers and the event channel.

It needs only the broker (with every subscriber included) and the command specs; the service
passes its own. ``asyncapi.yaml`` at the repository root is the document of a service with
default settings; a test keeps the two equal.
"""

from collections.abc import Sequence
from typing import Any

import yaml
from faststream.nats import NatsBroker
from faststream.specification import AsyncAPI
from pydantic import BaseModel

from agent_orchestrator import __version__
from agent_orchestrator.contracts import subjects
from agent_orchestrator.contracts.errors import ErrorReply
from agent_orchestrator.contracts.events import Event, EventKind
from agent_orchestrator.contracts.templates import TemplateEvent, TemplateEventKind
from agent_orchestrator.handlers.commands import CommandSpec

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
    doc: dict[str, Any], model: type[BaseModel], headers: dict[str, Any] | None = None
) -> dict[str, str]:
    message: dict[str, Any] = {
        "name": model.__name__,
        "title": model.__name__,
        "summary": (model.__doc__ or "").strip().splitlines()[0],
        "payload": _add_schema(doc, model),
    }
    if headers:
        message["headers"] = headers
    doc["components"]["messages"][model.__name__] = message
    return {"$ref": f"#/components/messages/{model.__name__}"}


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
    return _sorted(doc)  # type: ignore[no-any-return]


def asyncapi_yaml(broker: NatsBroker, commands: Sequence[CommandSpec]) -> str:
    """The document as YAML, as committed in ``asyncapi.yaml`` (for a default service)."""
    document = asyncapi_document(broker, commands)
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)
