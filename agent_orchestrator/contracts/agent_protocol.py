"""Synadia's Agent Protocol for NATS (v0.3): names, the mapping to our agents, and wire shapes.

Each agent is a NATS micro service named ``agents`` whose metadata holds ``agent``, ``owner``,
``session`` and ``protocol_version``; it serves ``agents.prompt.{agent}.{owner}.{session_name}``
and ``agents.status.…`` (queue group ``agents``) and beats on ``agents.hb.…``. A prompt is
answered by a stream of chunks ``{"type": "response" | "status" | "query", "data": …}``: a
leading ``status``/``ack``, then any chunks, then an empty message. An error is a message with
the headers ``Nats-Service-Error-Code`` / ``Nats-Service-Error`` (then the empty message).

Our agents map as: ``agent`` = the agent's type, ``owner`` = its project (``default`` without
one), ``session_name`` = its agent id (names are not unique). See docs/agent-protocol.md.
No I/O here.
"""

import base64
import json
import re
from typing import Any, Final
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, JsonValue

PROTOCOL_VERSION: Final = "0.3"
SERVICE_NAME: Final = "agents"
QUEUE_GROUP: Final = "agents"
PROMPT_ENDPOINT: Final = "prompt"
STATUS_ENDPOINT: Final = "status"
HEARTBEATS: Final = "agents.hb.*.*.*"
NO_PROJECT_OWNER: Final = "default"
#: The key of ``Agent.metadata`` that marks an adopted agent (a :class:`ProtocolAgentRef`).
PROTOCOL_AGENT_KEY: Final = "protocol_agent"
ERROR_CODE_HEADER: Final = "Nats-Service-Error-Code"
ERROR_HEADER: Final = "Nats-Service-Error"
#: A prompt's envelope may carry these extra fields (the protocol lets envelopes carry more).
PARAMETERS_FIELD: Final = "parameters"
TIMEOUT_FIELD: Final = "timeout_s"
INPUT_FIELD: Final = "input"
#: Our agents' heartbeats carry their id in this extra field (so the adapter skips them).
AGENT_ID_FIELD: Final = "agent_id"

_OWNER_TOKEN = re.compile(r"^[a-z0-9_-]+$")


def subject(verb: str, agent: str, owner: str, session_name: str) -> str:
    """``agents.{verb}.{agent}.{owner}.{session_name}`` (verb: prompt, status, hb)."""
    return f"{SERVICE_NAME}.{verb}.{agent}.{owner}.{session_name}"


def agent_token(agent_type: str) -> str:
    """Our agent type as the protocol's ``agent`` token: lower case, every other character
    than ``a-z0-9-`` a hyphen."""
    token = re.sub(r"[^a-z0-9-]", "-", agent_type.lower()).strip("-")
    return token or "agent"


def owner_token(project_id: str | None) -> str:
    """Our project as the ``owner`` token: as it is when it fits ``[a-z0-9_-]+``, otherwise
    base64url without padding (as the official SDKs escape tokens); ``default`` without one."""
    if not project_id:
        return NO_PROJECT_OWNER
    if _OWNER_TOKEN.fullmatch(project_id):
        return project_id
    return base64.urlsafe_b64encode(project_id.encode()).rstrip(b"=").decode()


class ProtocolAgentRef(BaseModel):
    """Which agent of the protocol an adopted agent of ours is (``metadata.protocol_agent``)."""

    model_config = ConfigDict(extra="ignore")

    agent: str = Field(description="The protocol's `agent` token (our agent type).")
    owner: str = Field(description="The `owner` token (our project).")
    session_name: str = Field(description="The `session_name` token (our agent name).")

    @property
    def prompt_subject(self) -> str:
        """Where it takes prompts."""
        return subject(PROMPT_ENDPOINT, self.agent, self.owner, self.session_name)

    @property
    def heartbeat_subject(self) -> str:
        """Where it beats."""
        return subject("hb", self.agent, self.owner, self.session_name)


def ref_of(metadata: dict[str, Any]) -> ProtocolAgentRef | None:
    """The protocol agent an agent of ours stands for, from its metadata (None: not adopted)."""
    raw = metadata.get(PROTOCOL_AGENT_KEY)
    if not isinstance(raw, dict):
        return None
    try:
        return ProtocolAgentRef.model_validate(raw)
    except ValueError:
        return None


class HeartbeatPayload(BaseModel):
    """A heartbeat (``agents.hb.…``) and the reply of the ``status`` endpoint."""

    model_config = ConfigDict(extra="allow")

    agent: str
    owner: str
    session: str | None = None
    instance_id: str
    ts: str = Field(description="UTC, ISO 8601, seconds.")
    interval_s: int = Field(ge=1, description="Seconds between beats; offline after 3 missed.")
    protocol_version: str | None = None
    endpoints: dict[str, Any] | None = None

    @property
    def extras(self) -> dict[str, Any]:
        """The fields the protocol does not define."""
        return dict(self.model_extra or {})


class Envelope(BaseModel):
    """A prompt (or the answer to a query): ``{"prompt": …, "attachments": […]}`` or plain
    text; other fields are kept."""

    model_config = ConfigDict(extra="allow")

    prompt: str = Field(min_length=1)
    attachments: list[dict[str, Any]] | None = None

    @property
    def extras(self) -> dict[str, Any]:
        """The fields the protocol does not define."""
        return dict(self.model_extra or {})


class Chunk(BaseModel):
    """One message of a prompt's reply stream (the stream ends with an empty message)."""

    type: str = Field(
        description="`response` (data: text, or {text, attachments}), `status` (data: `ack` "
        "first, `progress <n>%: <message>` per progress report, `done` after the result) or "
        "`query` (data: {id, reply_subject, prompt}; answer with one message on reply_subject)."
    )
    data: JsonValue


def decode_envelope(payload: bytes) -> Envelope:
    """A JSON envelope when the payload starts with ``{``, else the text as the prompt.
    Raises ValueError for an empty or malformed payload."""
    if not payload.strip():
        raise ValueError("an empty prompt")
    if payload.lstrip().startswith(b"{"):
        return Envelope.model_validate_json(payload)
    return Envelope(prompt=payload.decode())


def chunk(kind: str, data: JsonValue) -> bytes:
    """One chunk of a reply stream."""
    return json.dumps({"type": kind, "data": data}, ensure_ascii=False).encode()


def response_chunk(text: str) -> bytes:
    """A ``response`` chunk (the bare-string form)."""
    return chunk("response", text)


def status_chunk(status: str) -> bytes:
    """A ``status`` chunk: ``ack``, ``done`` or any other token (callers ignore unknown ones)."""
    return chunk("status", status)


def query_chunk(query_id: str, reply_subject: str, prompt: str) -> bytes:
    """A ``query`` chunk: the caller answers with one message on ``reply_subject``."""
    return chunk("query", {"id": query_id, "reply_subject": reply_subject, "prompt": prompt})


ACK: Final = status_chunk("ack")
DONE: Final = status_chunk("done")
END: Final = b""


def as_text(value: JsonValue) -> str:
    """A JSON value as the text of a chunk: a string as it is, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def task_input(envelope: Envelope) -> JsonValue:
    """What a prompt gives a task as its input: ``{"text": prompt}`` (with the attachments)."""
    given: dict[str, JsonValue] = {"text": envelope.prompt}
    if envelope.attachments:
        given["attachments"] = envelope.attachments  # type: ignore[assignment]
    return given


def prompt_text(value: JsonValue) -> str:
    """A task's input as the text of a prompt: its ``text`` field, a string, or JSON."""
    if isinstance(value, dict) and isinstance(value.get("text"), str):
        return str(value["text"])
    return as_text(value)


def answer_input(envelope: Envelope) -> JsonValue:
    """The input an answer to a query gives ``task.provide_input``: the envelope's ``input``
    field when it has one, else its text, read as JSON when it is JSON."""
    if INPUT_FIELD in envelope.extras:
        value: JsonValue = envelope.extras[INPUT_FIELD]
        return value
    try:
        parsed: JsonValue = json.loads(envelope.prompt)
    except ValueError:
        return envelope.prompt
    return parsed


def session_of(agent_id: UUID) -> str:
    """Our agent's ``session_name`` token: its id."""
    return str(agent_id)
