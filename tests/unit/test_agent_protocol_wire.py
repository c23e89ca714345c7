"""The NATS agent protocol's names, token mapping and envelopes (contracts.agent_protocol)."""

import json
import uuid

import pytest
from synadia_ai.agents import AgentSubject

from agent_orchestrator.contracts import agent_protocol as wire


def test_our_agent_type_and_project_become_valid_tokens() -> None:
    assert wire.agent_token("Word Counter") == "word-counter"
    assert wire.agent_token("word_counter.v2") == "word-counter-v2"
    assert wire.agent_token("!!!") == "agent"
    assert wire.owner_token(None) == "default"
    assert wire.owner_token("acme_1") == "acme_1"
    session = wire.session_of(uuid.uuid4())
    # The official SDK builds (and escapes) the same tokens.
    official = AgentSubject.new(agent="word-counter", owner="Acme Corp", session_name=session)
    assert (official.owner, official.session_name) == (wire.owner_token("Acme Corp"), session)


def test_a_prompt_is_a_json_envelope_or_plain_text() -> None:
    plain = wire.decode_envelope(b"to be or not to be")
    assert wire.task_input(plain) == {"text": "to be or not to be"}
    envelope = wire.decode_envelope(b' {"prompt": "hi", "parameters": {"x": 1}}')
    assert envelope.prompt == "hi"
    assert envelope.extras == {"parameters": {"x": 1}}
    with pytest.raises(ValueError, match="empty"):
        wire.decode_envelope(b"  ")
    with pytest.raises(ValueError, match="at least 1 character"):
        wire.decode_envelope(b'{"prompt": ""}')


def test_an_answer_is_the_input_field_or_the_text_read_as_json_when_it_is_json() -> None:
    assert wire.answer_input(wire.decode_envelope(b"eu")) == "eu"
    assert wire.answer_input(wire.decode_envelope(b'{"prompt": "42"}')) == 42
    given = b'{"prompt": "send it", "input": {"decision": "send"}}'
    assert wire.answer_input(wire.decode_envelope(given)) == {"decision": "send"}


def test_chunks_have_the_protocols_shape() -> None:
    assert json.loads(wire.ACK) == {"type": "status", "data": "ack"}
    assert json.loads(wire.response_chunk("x")) == {"type": "response", "data": "x"}
    query = json.loads(wire.query_chunk("q1", "_INBOX.a", "why?"))
    assert query == {
        "type": "query",
        "data": {"id": "q1", "reply_subject": "_INBOX.a", "prompt": "why?"},
    }
    assert wire.as_text({"words": 6}) == '{"words": 6}'
    assert wire.prompt_text({"text": "hi", "other": 1}) == "hi"
    assert wire.prompt_text(["a"]) == '["a"]'


def test_an_adopted_agent_is_known_by_its_metadata() -> None:
    ref = wire.ProtocolAgentRef(agent="shouter", owner="acme", session_name="s1")
    assert ref.prompt_subject == "agents.prompt.shouter.acme.s1"
    assert wire.ref_of({wire.PROTOCOL_AGENT_KEY: ref.model_dump()}) == ref
    assert wire.ref_of({}) is None
    assert wire.ref_of({wire.PROTOCOL_AGENT_KEY: {"agent": "x"}}) is None
