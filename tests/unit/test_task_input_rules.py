"""The rules of asking for input, without I/O: questions, answers, their deadlines, a worker's
crash while a person is asked, and how many tasks an agent runs at once."""

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from agent_orchestrator.contracts.agents import AgentStatus
from agent_orchestrator.contracts.events import EventKind
from agent_orchestrator.contracts.tasks import (
    CompleteTask,
    ExecuteTask,
    FailTask,
    InputSource,
    OnBusy,
    OnInputTimeout,
    ProvideInput,
    ReportProgress,
    RequestInput,
    Task,
    TaskPolicy,
    TaskStatus,
)
from agent_orchestrator.domain import task_input as asking
from agent_orchestrator.domain import tasks as rules
from agent_orchestrator.domain.agents import AgentRef
from agent_orchestrator.domain.errors import CapacityReached, Conflict, ValidationFailed
from agent_orchestrator.domain.liveness import check_policies
from agent_orchestrator.domain.templates import validate_configuration

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
S = TaskStatus
DEFAULTS = rules.TaskDefaults(timeout_s=600, max_attempts=2, heartbeat_s=30, input_timeout_s=3600)
AGENT = AgentRef(uuid.uuid4(), "p", AgentStatus.ACTIVE, 4)
SCHEMA = {
    "type": "object",
    "properties": {"decision": {"enum": ["yes", "no"]}, "note": {"type": "string"}},
    "required": ["decision"],
    "additionalProperties": False,
}


def running(max_attempts: int = 2, at: datetime = NOW) -> Task:
    request = ExecuteTask(agent_id=AGENT.agent_id, input="x", max_attempts=max_attempts)
    queued = rules.queue(request, AGENT, DEFAULTS, at).task
    started = rules.start(queued, 1, AGENT, DEFAULTS, at)
    assert started is not None
    return started.task


def ask(task: Task, at: datetime = NOW, **fields: Any) -> Task:
    body = {"task_id": task.task_id, "attempt": task.attempts, "prompt": "ok?", **fields}
    change = asking.request_input(task, RequestInput.model_validate(body), AGENT, DEFAULTS, at)
    assert change is not None
    return change.task


def answer(task: Task, value: Any, at: datetime = NOW, **fields: Any) -> rules.TaskChange:
    body = ProvideInput.model_validate({"task_id": task.task_id, "input": value, **fields})
    return asking.provide_input(task, body, AGENT, DEFAULTS, at, actor="alice")


# --- the contract -------------------------------------------------------------------------


def test_default_input_is_required_with_on_timeout_default_and_only_then() -> None:
    base = {"task_id": str(uuid.uuid4()), "attempt": 1, "prompt": "?"}
    RequestInput.model_validate({**base, "on_timeout": "default", "default_input": None})
    with pytest.raises(ValidationError, match="needs default_input"):
        RequestInput.model_validate({**base, "on_timeout": "default"})
    with pytest.raises(ValidationError, match="only for on_timeout"):
        RequestInput.model_validate({**base, "on_timeout": "fail", "default_input": 1})
    with pytest.raises(ValidationError, match="only for on_timeout"):
        RequestInput.model_validate({**base, "default_input": 1})


@pytest.mark.parametrize("timeout_s", [0, 30 * 24 * 3600 + 1, 1.5, "60"])
def test_a_question_waits_between_a_second_and_thirty_days(timeout_s: object) -> None:
    with pytest.raises(ValidationError):
        RequestInput.model_validate(
            {"task_id": str(uuid.uuid4()), "attempt": 1, "prompt": "?", "timeout_s": timeout_s}
        )


def test_the_json_schema_of_request_input_states_the_default_input_rule() -> None:
    schema = RequestInput.model_json_schema()
    validator = Draft202012Validator({**schema, "$defs": schema.get("$defs", {})})
    base = {"task_id": str(uuid.uuid4()), "attempt": 1, "prompt": "?"}
    assert validator.is_valid({**base, "on_timeout": "default", "default_input": 0})
    assert not validator.is_valid({**base, "on_timeout": "default"})
    assert not validator.is_valid({**base, "default_input": 0})


def test_a_task_without_input_fields_still_reads_as_before() -> None:
    old = running().model_dump(mode="json")
    for name in ("input_request", "input_answers", "input_wait_s"):
        old.pop(name)
    task = Task.model_validate(old)
    assert (task.input_request, task.input_answers, task.input_wait_s) == (None, [], 0)


# --- asking -----------------------------------------------------------------------------------


def test_a_running_task_asks_and_waits_with_the_questions_deadline() -> None:
    task = running()
    later = NOW + timedelta(seconds=5)
    body = RequestInput(
        task_id=task.task_id, attempt=1, prompt={"q": "ok?"}, input_schema=SCHEMA, timeout_s=90
    )
    change = asking.request_input(task, body, AGENT, DEFAULTS, later)
    assert change is not None
    waiting = change.task
    assert waiting.status is S.INPUT_REQUIRED
    pending = waiting.input_request
    assert pending is not None
    assert (pending.input_seq, pending.attempt, pending.prompt) == (1, 1, {"q": "ok?"})
    assert (pending.on_timeout, pending.asked_at) == (OnInputTimeout.FAIL, later)
    assert waiting.deadline_at == pending.deadline_at == later + timedelta(seconds=90)
    assert change.event is not None
    assert change.event.type is EventKind.TASK_INPUT_REQUIRED
    assert change.event.data["input_seq"] == 1
    assert change.event.data["prompt"] == {"q": "ok?"}
    assert change.event.data["input_schema"] == SCHEMA
    default = ask(running())
    assert default.input_request is not None
    assert default.input_request.timeout_s == DEFAULTS.input_timeout_s


def test_only_the_running_attempt_asks() -> None:
    task = running()
    with pytest.raises(Conflict):
        ask(task, attempt=2)
    queued = rules.queue(ExecuteTask(agent_id=AGENT.agent_id), AGENT, DEFAULTS, NOW).task
    with pytest.raises(Conflict):
        ask(queued.model_copy(update={"attempts": 1}))
    done = rules.complete(task, CompleteTask(task_id=task.task_id), AGENT, NOW)
    assert done is not None
    with pytest.raises(Conflict):
        ask(done.task)


def test_an_invalid_input_schema_is_refused_with_every_problem() -> None:
    bad = {"type": "thing", "properties": {"a": {"minimum": "low"}}}
    with pytest.raises(ValidationFailed) as refused:
        ask(running(), input_schema=bad)
    paths = [d["path"] for d in refused.value.details]
    assert "input_schema.type" in paths
    assert "input_schema.properties.a.minimum" in paths
    with pytest.raises(ValidationFailed) as regex:
        ask(running(), input_schema={"type": "string", "pattern": "("})
    assert [d["path"] for d in regex.value.details] == ["input_schema.pattern"]


def test_a_default_input_must_match_the_schema() -> None:
    with pytest.raises(ValidationFailed) as refused:
        ask(
            running(),
            input_schema=SCHEMA,
            on_timeout="default",
            default_input={"decision": "maybe", "x": 1},
        )
    assert refused.value.details == [
        {"path": "default_input", "message": "Additional properties are not allowed "
         "('x' was unexpected)"},
        {"path": "default_input.decision", "message": "'maybe' is not one of ['yes', 'no']"},
    ]  # fmt: skip
    waiting = ask(
        running(), input_schema=SCHEMA, on_timeout="default", default_input={"decision": "no"}
    )
    assert waiting.input_request is not None
    assert waiting.input_request.default_input == {"decision": "no"}


def test_one_question_at_a_time_and_a_named_one_is_never_asked_twice() -> None:
    waiting = ask(running(), input_seq=1)
    repeat = RequestInput(task_id=waiting.task_id, attempt=1, prompt="again?", input_seq=1)
    assert asking.request_input(waiting, repeat, AGENT, DEFAULTS, NOW) is None
    with pytest.raises(Conflict, match="already waits for the answer to question 1"):
        ask(waiting)
    with pytest.raises(Conflict):
        ask(waiting, input_seq=2)
    resumed = answer(waiting, "yes").task
    assert asking.request_input(resumed, repeat, AGENT, DEFAULTS, NOW) is None  # answered
    with pytest.raises(Conflict, match="the next one is 2, not 3"):
        ask(resumed, input_seq=3)
    second = ask(resumed, input_seq=2)
    assert second.input_request is not None
    assert second.input_request.input_seq == 2


def test_a_task_asks_at_most_max_input_requests_questions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(asking, "MAX_INPUT_REQUESTS", 2)
    task = running()
    for _ in range(2):
        task = answer(ask(task), 1).task
    with pytest.raises(Conflict, match="the most one task may ask"):
        ask(task)


# --- answering -------------------------------------------------------------------------------


def test_an_answer_resumes_the_task_and_is_recorded_under_its_question() -> None:
    task = running()
    asked_at = NOW + timedelta(seconds=100)
    waiting = ask(task, asked_at, input_schema=SCHEMA)
    answered_at = asked_at + timedelta(seconds=1000)
    change = answer(waiting, {"decision": "yes"}, answered_at, input_seq=1)
    resumed = change.task
    assert (resumed.status, resumed.input_request, resumed.input_wait_s) == (S.RUNNING, None, 1000)
    [recorded] = resumed.input_answers
    assert (recorded.input_seq, recorded.input, recorded.source) == (
        1,
        {"decision": "yes"},
        InputSource.PROVIDED,
    )
    assert (recorded.answered_by, recorded.asked_at, recorded.answered_at) == (
        "alice",
        asked_at,
        answered_at,
    )
    # The worker has a heartbeat window again; the time waited does not count to timeout_s.
    assert resumed.deadline_at == answered_at + timedelta(seconds=30)
    assert rules.attempt_ends_at(resumed) == NOW + timedelta(seconds=600 + 1000)
    assert change.event is not None
    assert change.event.type is EventKind.TASK_INPUT_PROVIDED
    assert change.event.data["input"] == {"decision": "yes"}
    assert change.event.data["answered_by"] == "alice"


def test_an_input_that_does_not_match_lists_every_failing_path() -> None:
    waiting = ask(running(), input_schema=SCHEMA)
    with pytest.raises(ValidationFailed) as refused:
        answer(waiting, {"decision": "maybe", "note": 3})
    assert [d["path"] for d in refused.value.details] == ["input.decision", "input.note"]
    with pytest.raises(ValidationFailed) as not_an_object:
        answer(waiting, "yes")
    assert [d["path"] for d in not_an_object.value.details] == ["input"]


def test_the_reused_template_check_still_names_its_schema() -> None:
    with pytest.raises(ValidationFailed, match="does not match the template's config_schema"):
        validate_configuration({"type": "object", "required": ["a"]}, {}, field="configuration")


def test_a_schema_that_cannot_be_applied_is_a_validation_error_not_a_crash() -> None:
    waiting = ask(running(), input_schema={"$ref": "#/$defs/missing"})
    with pytest.raises(ValidationFailed, match="cannot be applied"):
        answer(waiting, 1)


def test_a_second_answer_to_the_same_question_is_a_conflict() -> None:
    waiting = ask(running())
    resumed = answer(waiting, "first").task
    with pytest.raises(Conflict, match=r"question 1 .* was already answered"):
        answer(resumed, "second", input_seq=1)
    with pytest.raises(Conflict, match="waits for no input"):
        answer(resumed, "second")
    again = ask(resumed)
    with pytest.raises(Conflict, match=r"question 1 .* was already answered"):
        answer(again, "late", input_seq=1)  # a late answer never answers question 2
    with pytest.raises(Conflict, match="waits for the answer to question 2, not 3"):
        answer(again, "early", input_seq=3)


def test_nothing_to_answer_before_a_question_or_after_the_end() -> None:
    with pytest.raises(Conflict):
        answer(running(), 1)
    waiting = ask(running())
    cancelled = rules.cancel(waiting, "no", AGENT, NOW, actor="bob")
    assert cancelled is not None
    with pytest.raises(Conflict, match="already ended CANCELLED"):
        answer(cancelled.task, 1)


# --- the worker while a person is asked --------------------------------------------------------


def test_a_cancel_withdraws_the_question_at_once() -> None:
    waiting = ask(running())
    change = rules.cancel(waiting, "changed my mind", AGENT, NOW, actor="bob")
    assert change is not None
    assert (change.task.status, change.task.input_request, change.task.deadline_at) == (
        S.CANCELLED,
        None,
        None,
    )
    beat = ReportProgress(task_id=waiting.task_id, attempt=1)
    with pytest.raises(Conflict):  # the waiting worker learns of it at its next report
        rules.report(change.task, beat, AGENT, DEFAULTS, NOW)


def test_no_heartbeat_or_attempt_timeout_while_a_person_is_asked() -> None:
    waiting = ask(running(), timeout_s=48 * 3600)
    much_later = NOW + timedelta(hours=47)
    assert rules.time_out(waiting, AGENT, much_later) is None
    assert asking.due(waiting, AGENT, DEFAULTS, much_later) is None
    assert rules.give_up(waiting, "its agent was recovered", AGENT, much_later) is None
    beat = ReportProgress(task_id=waiting.task_id, attempt=1)
    assert rules.report(waiting, beat, AGENT, DEFAULTS, much_later) is None
    step = ReportProgress(task_id=waiting.task_id, attempt=1, progress=50, message="waiting")
    progressed = rules.report(waiting, step, AGENT, DEFAULTS, much_later)
    assert progressed is not None
    assert progressed.task.progress == 50
    assert progressed.task.deadline_at == waiting.deadline_at


def test_the_worker_may_end_the_attempt_while_its_question_waits() -> None:
    waiting = ask(running())
    done = rules.complete(waiting, CompleteTask(task_id=waiting.task_id, attempt=1), AGENT, NOW)
    assert done is not None
    assert (done.task.status, done.task.input_request) == (S.SUCCEEDED, None)
    body = FailTask(task_id=waiting.task_id, attempt=1, error="gave up", retry=True)
    retry = rules.fail(waiting, body, AGENT, NOW)
    assert retry is not None
    assert (retry.task.status, retry.task.input_request) == (S.QUEUED, None)


def test_a_new_attempt_replays_its_answered_questions_and_asks_the_rest() -> None:
    first = answer(ask(running(), input_seq=1), "one").task
    first = ask(first, input_seq=2)
    # The worker dies; the question waits for its answer, then the silent attempt is given up.
    resumed = answer(first, "two", NOW + timedelta(seconds=60)).task
    retry = rules.time_out(resumed, AGENT, NOW + timedelta(seconds=200))
    assert retry is not None
    assert retry.task.status is S.QUEUED
    started = rules.start(retry.task, 2, AGENT, DEFAULTS, NOW + timedelta(seconds=201))
    assert started is not None
    second = started.task
    assert (second.input_wait_s, [a.input for a in second.input_answers]) == (0, ["one", "two"])
    for seq in (1, 2):  # already answered: nothing is asked, the task holds the answers
        replay = RequestInput(task_id=second.task_id, attempt=2, prompt="?", input_seq=seq)
        assert asking.request_input(second, replay, AGENT, DEFAULTS, NOW) is None
    third = ask(second, input_seq=3)
    assert third.input_request is not None
    assert (third.input_request.input_seq, third.input_request.attempt) == (3, 2)


# --- timeouts ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("on_timeout", "status", "kind"),
    [
        ("fail", S.FAILED, EventKind.TASK_FAILED),
        ("cancel", S.CANCELLED, EventKind.TASK_CANCELLED),
    ],
)
def test_an_unanswered_question_fails_or_cancels_its_task_once(
    on_timeout: str, status: TaskStatus, kind: EventKind
) -> None:
    waiting = ask(running(), timeout_s=60, on_timeout=on_timeout)
    assert asking.input_timed_out(waiting, AGENT, DEFAULTS, NOW + timedelta(seconds=59)) is None
    change = asking.due(waiting, AGENT, DEFAULTS, NOW + timedelta(seconds=60))
    assert change is not None
    assert (change.task.status, change.task.input_request, change.task.deadline_at) == (
        status,
        None,
        None,
    )
    assert change.task.status_reason == "question 1 was not answered within 60 s"
    assert change.event is not None
    assert change.event.type is kind
    later = NOW + timedelta(seconds=61)
    assert asking.input_timed_out(change.task, AGENT, DEFAULTS, later) is None  # once
    with pytest.raises(Conflict):
        answer(change.task, 1, later)


def test_an_answer_at_or_past_the_deadline_is_too_late_even_before_the_sweep() -> None:
    waiting = ask(running(), timeout_s=60)
    answer(waiting, 1, NOW + timedelta(seconds=59))
    with pytest.raises(Conflict, match="timed out") as late:
        answer(waiting, 1, NOW + timedelta(seconds=60))
    assert late.value.details["on_timeout"] == "fail"


def test_an_unanswered_question_with_a_default_goes_on_with_it() -> None:
    waiting = ask(
        running(),
        timeout_s=60,
        input_schema=SCHEMA,
        on_timeout="default",
        default_input={"decision": "no"},
    )
    at = NOW + timedelta(seconds=61)
    change = asking.input_timed_out(waiting, AGENT, DEFAULTS, at)
    assert change is not None
    resumed = change.task
    assert resumed.status is S.RUNNING
    assert resumed.deadline_at == at + timedelta(seconds=30)
    [recorded] = resumed.input_answers
    assert (recorded.input, recorded.source, recorded.answered_by) == (
        {"decision": "no"},
        InputSource.DEFAULT,
        asking.TIMEOUT_ACTOR,
    )
    assert asking.input_timed_out(resumed, AGENT, DEFAULTS, at) is None
    with pytest.raises(Conflict, match="already answered"):
        answer(resumed, {"decision": "yes"}, at, input_seq=1)


# --- a busy agent -----------------------------------------------------------------------------


def test_an_agent_without_a_limit_takes_every_task() -> None:
    assert asking.admit(TaskPolicy.of({}), busy=10_000) is True
    asking.check_room(TaskPolicy.of({}), busy=10_000)


def test_a_task_starts_only_when_its_agent_has_room() -> None:
    policy = TaskPolicy(max_concurrent_tasks=1, on_busy=OnBusy.REJECT)
    asking.check_room(policy, busy=0)
    with pytest.raises(CapacityReached) as full:
        asking.check_room(policy, busy=1)
    assert full.value.code == "unavailable"


def test_at_its_limit_an_agent_queues_or_rejects() -> None:
    queueing = TaskPolicy.of({"tasks": {"max_concurrent_tasks": 2}})
    assert asking.admit(queueing, busy=1) is True
    assert asking.admit(queueing, busy=2) is False
    rejecting = TaskPolicy(max_concurrent_tasks=2, on_busy=OnBusy.REJECT)
    assert asking.admit(rejecting, busy=1) is True
    with pytest.raises(Conflict, match="max_concurrent_tasks") as refused:
        asking.admit(rejecting, busy=2)
    assert refused.value.details == {"busy": 2, "max_concurrent_tasks": 2, "on_busy": "reject"}


def test_an_invalid_tasks_policy_is_refused_with_the_agents_configuration() -> None:
    with pytest.raises(ValidationFailed) as refused:
        check_policies({"tasks": {"max_concurrent_tasks": 0, "on_busy": "drop"}})
    assert sorted(d["path"] for d in refused.value.details) == [
        "configuration.tasks.max_concurrent_tasks",
        "configuration.tasks.on_busy",
    ]
    check_policies({"tasks": {"max_concurrent_tasks": 3, "on_busy": "reject"}})


# --- any sequence of ask, answer, cancel, timeout, crash ------------------------------------


def schema_for(seq: int) -> dict[str, Any]:
    """Question ``seq`` wants ``{"seq": seq, ...}``: an answer to another question never fits."""
    return {"type": "object", "properties": {"seq": {"const": seq}}, "required": ["seq"]}


def prompt_for(seq: int) -> str:
    return f"question {seq}"


@dataclass
class World:
    """One task, the clock, and the worker running it (None: it crashed or none started)."""

    on_timeout: list[OnInputTimeout]
    task: Task = field(default_factory=lambda: running(max_attempts=3))
    now: datetime = NOW
    worker: int | None = 1  # the attempt the live worker runs
    position: int = 0  # questions its program got answers to
    timed_out: dict[int, int] = field(default_factory=dict)  # on_timeout applied, by question

    def request(self, seq: int) -> RequestInput:
        policy = self.on_timeout[(seq - 1) % len(self.on_timeout)]
        default = {"default_input": {"seq": seq}} if policy is OnInputTimeout.DEFAULT else {}
        return RequestInput.model_validate(
            {
                "task_id": self.task.task_id,
                "attempt": self.worker,
                "input_seq": seq,
                "prompt": prompt_for(seq),
                "input_schema": schema_for(seq),
                "timeout_s": 100 * seq,
                "on_timeout": policy,
                **default,
            }
        )


# Weighted so that most runs go deep: several questions, answers, timeouts and replays.
ACTIONS = [
    *["ask"] * 4,
    *["answer"] * 3,
    "answer_late",
    "answer_invalid",
    *["tick"] * 3,
    "crash",
    *["start"] * 2,
    *["beat"] * 3,
    "cancel",
    "complete",
]
TICKS = [1, 10, 25, 40, 500]


def step(world: World, action: str, n: int) -> rules.TaskChange | None:
    """Do ``action``; refusals are checked here, and raise only where none is expected."""
    task = world.task
    if action == "ask":
        if world.worker is None:
            return None
        seq = world.position + 1
        change = asking.request_input(task, world.request(seq), AGENT, DEFAULTS, world.now)
        if change is None and seq <= len(task.input_answers):
            # The program gets its answer, whoever gave it and whenever.
            assert task.input_answers[seq - 1].input == {"seq": seq}
            world.position = seq
        return change
    if action in ("answer", "answer_invalid"):
        pending = task.input_request
        seq = pending.input_seq if pending is not None else len(task.input_answers) + 1
        value = {"seq": seq if action == "answer" else -seq}
        named = [None, seq][n % 2]
        body = ProvideInput(task_id=task.task_id, input=value, input_seq=named)
        if action == "answer_invalid" and pending is not None and world.now < pending.deadline_at:
            with pytest.raises(ValidationFailed):
                asking.provide_input(task, body, AGENT, DEFAULTS, world.now, actor="p")
            return None
        if pending is None or world.now >= pending.deadline_at:
            with pytest.raises(Conflict):  # nothing asked, or too late: on_timeout applies
                asking.provide_input(task, body, AGENT, DEFAULTS, world.now, actor="p")
            return None
        return asking.provide_input(task, body, AGENT, DEFAULTS, world.now, actor="p")
    if action == "answer_late":  # a second answer to a question already answered
        if not task.input_answers:
            return None
        seq = 1 + n % len(task.input_answers)
        body = ProvideInput(task_id=task.task_id, input={"seq": seq}, input_seq=seq)
        with pytest.raises(Conflict):
            asking.provide_input(task, body, AGENT, DEFAULTS, world.now, actor="p")
        return None
    if action in ("cancel", "complete") and n != 0:
        return None  # rarely: either ends the story
    if action == "cancel":
        if task.status in rules.FINAL and task.status is not S.CANCELLED:
            with pytest.raises(Conflict):
                rules.cancel(task, None, AGENT, world.now, actor="p")
            return None
        return rules.cancel(task, None, AGENT, world.now, actor="p")
    if action == "tick":
        world.now += timedelta(seconds=TICKS[n % len(TICKS)])
        change = asking.due(task, AGENT, DEFAULTS, world.now)
        if task.input_request is not None and world.now >= task.input_request.deadline_at:
            assert change is not None, "a question past its deadline gets its on_timeout"
        if change is not None and task.status is S.INPUT_REQUIRED:
            assert task.input_request is not None
            seq = task.input_request.input_seq
            world.timed_out[seq] = world.timed_out.get(seq, 0) + 1
        return change
    if action == "crash":
        world.worker = None
        return None
    if action == "start":
        if task.status is not S.QUEUED:
            return None
        change = rules.start(task, task.attempts + 1, AGENT, DEFAULTS, world.now)
        world.worker, world.position = task.attempts + 1, 0  # a new worker replays the task
        return change
    if world.worker is None or task.status not in rules.ACTIVE or world.worker != task.attempts:
        return None
    if action == "beat":
        body = ReportProgress(task_id=task.task_id, attempt=world.worker)
        return rules.report(task, body, AGENT, DEFAULTS, world.now)
    body = CompleteTask(task_id=task.task_id, attempt=world.worker, result=world.position)
    return rules.complete(task, body, AGENT, world.now)


def check(before: Task, after: Task, world: World) -> None:
    """The invariants, after every step."""
    if before.status in rules.FINAL:
        assert after == before, "a final task never changes"
    assert (after.status is S.INPUT_REQUIRED) == (after.input_request is not None)
    if after.input_request is not None:
        assert after.deadline_at == after.input_request.deadline_at
        assert after.input_request.prompt == prompt_for(after.input_request.input_seq)
        assert after.input_request.input_seq == len(after.input_answers) + 1
    if after.status in rules.FINAL:
        assert after.deadline_at is None
    assert after.attempts <= after.max_attempts
    # Each answer reaches its own question, in order, valid against its schema, and stays.
    assert after.input_answers[: len(before.input_answers)] == before.input_answers
    for seq, given_answer in enumerate(after.input_answers, start=1):
        assert given_answer.input_seq == seq
        assert given_answer.prompt == prompt_for(seq)
        assert Draft202012Validator(schema_for(seq)).is_valid(given_answer.input)
        if given_answer.source is InputSource.DEFAULT:
            assert world.timed_out.get(seq) == 1
    assert all(count == 1 for count in world.timed_out.values()), "on_timeout at most once"
    if before.status is S.INPUT_REQUIRED and after.status is S.RUNNING:
        assert len(after.input_answers) == len(before.input_answers) + 1
    if before.status is S.INPUT_REQUIRED and after.status in (S.QUEUED, S.TIMED_OUT):
        raise AssertionError("a silent worker is never given up while a person is asked")


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(ACTIONS), st.integers(0, 7)), min_size=20, max_size=80),
    st.lists(st.sampled_from(list(OnInputTimeout)), min_size=1, max_size=4),
)
def test_any_sequence_of_ask_answer_cancel_timeout_and_crash_keeps_the_rules(
    actions: list[tuple[str, int]], on_timeout: list[OnInputTimeout]
) -> None:
    world = World(on_timeout)
    for action, n in actions:
        before = world.task
        try:
            change = step(world, action, n)
        except Conflict:
            # Only the worker's own reports may be refused here, and only once it lost the
            # attempt: ended, cancelled, or handed to another attempt.
            assert action in ("ask", "beat", "complete", "start")
            assert before.status not in rules.ACTIVE or before.attempts != world.worker
            continue
        if change is not None:
            world.task = change.task
            if before.status in rules.FINAL:
                raise AssertionError(f"{action} changed a final task")
        check(before, world.task, world)
