"""The stored form of a state: built from a dict or from JSON text already at hand, the same."""

import json
import uuid
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from agent_orchestrator.contracts.events import Event, EventKind
from agent_orchestrator.storage.state import _decode, encode_state, encode_state_json

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
EVENT = Event(
    event_id=uuid.uuid4(),
    type=EventKind.CHECKPOINT_RESTORED,
    agent_id=uuid.uuid4(),
    occurred_at=datetime(2026, 1, 2, tzinfo=UTC),
    version=3,
    data={"checkpoint_id": str(uuid.uuid4()), "actor": "ü"},
)
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@given(st.dictionaries(st.text(), JSON, max_size=6))
def test_json_text_put_in_as_it_is_gives_the_same_bytes(state: dict[str, object]) -> None:
    text = json.dumps(state, separators=(",", ":"), ensure_ascii=False).encode()
    assert encode_state_json(text, NOW, EVENT) == encode_state(state, NOW, EVENT)


def test_json_text_with_other_spacing_reads_back_as_the_state() -> None:
    text = b'{ "a" : [1, 2],\n "b": {"c": "\\u00fc"} }'
    stored = _decode(encode_state_json(text, NOW, EVENT), 7)
    assert (stored.state, stored.revision, stored.updated_at) == (json.loads(text), 7, NOW)
    assert json.loads(encode_state_json(text, NOW, EVENT))["event"]["data"]["actor"] == "ü"
