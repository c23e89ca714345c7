"""A2A conversions of the bridge: message parts to task input, tasks to A2A tasks."""

from datetime import UTC, datetime
from uuid import uuid4

from a2a.helpers.proto_helpers import get_data_parts, new_data_part, new_text_part
from a2a.types import Part, TaskState

from agent_orchestrator.bridge.a2a.convert import STATES, a2a_task, answer_input, message_input
from agent_orchestrator.contracts.tasks import InputRequest, OnInputTimeout, Task, TaskStatus

NOW = datetime(2026, 12, 3, tzinfo=UTC)


def task(status: TaskStatus, **fields: object) -> Task:
    base: dict[str, object] = {
        "task_id": uuid4(),
        "agent_id": uuid4(),
        "status": status,
        "input": {"text": "hi"},
        "progress": 0,
        "attempts": 1,
        "max_attempts": 3,
        "timeout_s": 60,
        "context_id": "ctx-1",
        "created_at": NOW,
        "updated_at": NOW,
    }
    return Task.model_validate(base | fields)


def test_text_parts_become_a_text_input() -> None:
    parts = [new_text_part("to be"), new_text_part("or not")]
    assert message_input(parts) == {"text": "to be\nor not"}


def test_one_object_data_part_is_the_input_with_whole_numbers_as_ints() -> None:
    assert message_input([new_data_part({"n": 3, "x": 1.5})]) == {"n": 3, "x": 1.5}


def test_mixed_parts_keep_text_data_and_files() -> None:
    parts = [new_text_part("see"), new_data_part([1, 2]), Part(url="https://x/y.png", filename="y")]
    assert message_input(parts) == {
        "text": "see",
        "data": [[1, 2]],
        "files": [{"name": "y", "url": "https://x/y.png"}],
    }


def test_an_answer_is_the_data_value_or_the_text() -> None:
    assert answer_input([new_data_part({"decision": "send"})]) == {"decision": "send"}
    assert answer_input([new_data_part("eu")]) == "eu"
    assert answer_input([new_text_part("eu")]) == "eu"


def test_every_status_has_its_a2a_state() -> None:
    assert set(STATES) == set(TaskStatus)
    assert STATES[TaskStatus.TIMED_OUT] == TaskState.TASK_STATE_FAILED
    assert STATES[TaskStatus.CANCELLED] == TaskState.TASK_STATE_CANCELED


def test_a_succeeded_task_has_its_result_as_artifact_and_keeps_its_context() -> None:
    converted = a2a_task(task(TaskStatus.SUCCEEDED, result={"words": 2}))
    assert converted.context_id == "ctx-1"
    assert converted.status.state == TaskState.TASK_STATE_COMPLETED
    assert [get_data_parts(a.parts) for a in converted.artifacts] == [[{"words": 2.0}]]
    assert a2a_task(task(TaskStatus.SUCCEEDED, result="done"), artifacts=False).artifacts == []


def test_a_waiting_task_shows_its_question_as_status_message() -> None:
    ask = InputRequest(
        input_seq=1,
        attempt=1,
        prompt="eu or us?",
        timeout_s=60,
        on_timeout=OnInputTimeout.FAIL,
        asked_at=NOW,
        deadline_at=NOW,
    )
    converted = a2a_task(task(TaskStatus.INPUT_REQUIRED, input_request=ask), history_length=0)
    assert converted.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
    assert converted.status.message.parts[0].text == "eu or us?"
    assert converted.status.message.metadata["inputSeq"] == 1
    assert list(converted.history) == []
