"""Asking for input, on real servers, command by command: task.request_input, task.provide_input
(over NATS and REST), the inbox, on_timeout through the sweep, cancel while waiting, and
max_concurrent_tasks. The worker here is the test itself (task.start by hand); the SDK's
``run.ask`` is tested in test_task_ask.py.

The session service sweeps every 0.2 s and gives a RUNNING task 2 s without a report.
"""

import asyncio
from typing import Any

import httpx
import nats.aio.client
import pytest

from agent_orchestrator.client import OrchestratorClient, RequestFailed
from agent_orchestrator.contracts import subjects
from agent_orchestrator.contracts.errors import ErrorCode
from agent_orchestrator.contracts.tasks import (
    InputSource,
    OnInputTimeout,
    RequestInput,
    Task,
    TaskStatus,
)
from tests.support.agents import sdk_agent, unique
from tests.support.calls import call, ok
from tests.support.events import wait_for_events

NC = nats.aio.client.Client
S = TaskStatus
APPROVAL = {
    "type": "object",
    "properties": {"approved": {"type": "boolean"}, "note": {"type": "string"}},
    "required": ["approved"],
    "additionalProperties": False,
}


async def running_task(client: OrchestratorClient, agent_id: str, **execute: Any) -> Task:
    """A task of ``agent_id`` started by the test in place of a worker."""
    queued = await client.execute(agent_id, {"ticket": 7}, **execute)
    return await client.start_task(queued.task_id, 1)


def question(task: Task, **fields: Any) -> RequestInput:
    return RequestInput(task_id=task.task_id, attempt=task.attempts, **fields)


async def test_a_question_waits_in_the_inbox_and_its_answer_resumes_the_task(
    nc: NC, client: OrchestratorClient, http: httpx.AsyncClient
) -> None:
    project = unique("inbox")
    agent_id = await sdk_agent(client, project)
    task = await running_task(client, agent_id)
    prompt = {"action": "refund", "amount": 30}
    asked = await client.request_input(
        question(task, input_seq=1, prompt=prompt, input_schema=APPROVAL, timeout_s=600)
    )
    assert asked.status is S.INPUT_REQUIRED
    assert asked.input_request is not None
    assert (asked.input_request.input_seq, asked.input_request.prompt) == (1, prompt)
    assert asked.deadline_at == asked.input_request.deadline_at
    [required] = await wait_for_events(
        nc.jetstream(), subjects.event_subject(agent_id, "task_input_required"), 1
    )
    assert required.envelope["data"]["prompt"] == prompt
    assert required.envelope["project_id"] == project

    inbox = await http.get("/api/tasks", params={"status": "INPUT_REQUIRED", "project_id": project})
    assert inbox.status_code == 200
    assert [t["task_id"] for t in inbox.json()["items"]] == [str(task.task_id)]
    elsewhere = await client.tasks(project_id=unique("other"), status=S.INPUT_REQUIRED)
    assert elsewhere.items == []

    key = {"Idempotency-Key": f"answer-{task.task_id}"}
    path = f"/api/tasks/{task.task_id}/input"
    answered = await http.post(path, json={"input": {"approved": True}}, headers=key)
    assert answered.status_code == 200, answered.text
    body = answered.json()
    assert (body["status"], body["input_request"]) == ("RUNNING", None)
    assert [(a["input_seq"], a["input"], a["source"]) for a in body["input_answers"]] == [
        (1, {"approved": True}, "provided")
    ]
    again = await http.post(path, json={"input": {"approved": True}}, headers=key)
    assert again.json() == body  # the same key: the first reply
    second = await http.post(path, json={"input": {"approved": False}})
    assert second.status_code == 409
    assert second.json()["code"] == "conflict"
    [provided] = await wait_for_events(
        nc.jetstream(), subjects.event_subject(agent_id, "task_input_provided"), 1
    )
    assert provided.envelope["data"]["input"] == {"approved": True}
    assert (await client.tasks(project_id=project, status=S.INPUT_REQUIRED)).items == []


async def test_an_answer_that_does_not_match_the_schema_lists_every_failing_path(
    nc: NC, client: OrchestratorClient
) -> None:
    task = await running_task(client, await sdk_agent(client))
    await client.request_input(question(task, prompt="approve?", input_schema=APPROVAL))
    bad = {"task_id": str(task.task_id), "input": {"approved": "yes", "extra": 1}}
    reply = await call(nc, subjects.TASK_PROVIDE_INPUT, bad)
    assert reply.error_code == "validation_error"
    paths = sorted(d["path"] for d in reply.body["error"]["details"])
    assert paths == ["input", "input.approved"]
    still = await client.get_task(task.task_id)
    assert (still.status, still.input_answers) == (S.INPUT_REQUIRED, [])


async def test_questions_are_answered_in_order_and_a_repeated_ask_changes_nothing(
    client: OrchestratorClient,
) -> None:
    task = await running_task(client, await sdk_agent(client))
    first = question(task, input_seq=1, prompt="first?")
    await client.request_input(first)
    repeated = await client.request_input(first)
    assert (repeated.status, repeated.input_request and repeated.input_request.input_seq) == (
        S.INPUT_REQUIRED,
        1,
    )
    with pytest.raises(RequestFailed) as out_of_turn:
        await client.request_input(question(task, input_seq=2, prompt="second?"))
    assert out_of_turn.value.code is ErrorCode.CONFLICT
    await client.provide_input(task.task_id, "one", input_seq=1)
    await client.request_input(question(task, input_seq=2, prompt="second?"))
    with pytest.raises(RequestFailed) as late:
        await client.provide_input(task.task_id, "late", input_seq=1)
    assert late.value.code is ErrorCode.CONFLICT
    done = await client.provide_input(task.task_id, "two", input_seq=2)
    assert [(a.input_seq, a.prompt, a.input) for a in done.input_answers] == [
        (1, "first?", "one"),
        (2, "second?", "two"),
    ]
    replay = await client.request_input(first)  # answered: the task, with the answer
    assert (replay.status, replay.input_answers[0].input) == (S.RUNNING, "one")


@pytest.mark.parametrize(
    ("on_timeout", "ends"),
    [
        (OnInputTimeout.FAIL, S.FAILED),
        (OnInputTimeout.CANCEL, S.CANCELLED),
        (OnInputTimeout.DEFAULT, S.RUNNING),
    ],
)
async def test_a_question_nobody_answers_gets_its_on_timeout_once(
    nc: NC, client: OrchestratorClient, on_timeout: OnInputTimeout, ends: TaskStatus
) -> None:
    agent_id = await sdk_agent(client)
    task = await running_task(client, agent_id)
    default: dict[str, Any] = {}
    if on_timeout is OnInputTimeout.DEFAULT:
        default = {"default_input": {"approved": False}}
    await client.request_input(
        question(
            task,
            prompt="approve?",
            input_schema=APPROVAL,
            timeout_s=1,
            on_timeout=on_timeout,
            **default,
        )
    )
    after = await client.wait_for_task(task.task_id, ends, timeout=10)
    assert after.input_request is None
    if on_timeout is OnInputTimeout.DEFAULT:
        [answer] = after.input_answers
        assert (answer.input, answer.source, answer.answered_by) == (
            {"approved": False},
            InputSource.DEFAULT,
            "timeout",
        )
        assert after.deadline_at is not None  # a heartbeat window for the worker again
    else:
        assert "not answered within 1 s" in (after.status_reason or "")
    with pytest.raises(RequestFailed) as too_late:
        await client.provide_input(task.task_id, {"approved": True})
    assert too_late.value.code is ErrorCode.CONFLICT
    kind = {S.FAILED: "task_failed", S.CANCELLED: "task_cancelled"}.get(ends, "task_input_provided")
    await asyncio.sleep(1.0)  # more sweeps: none applies it again
    events = await wait_for_events(nc.jetstream(), subjects.event_subject(agent_id, kind), 1)
    assert len(events) == 1


async def test_cancel_while_waiting_withdraws_the_question(
    nc: NC, client: OrchestratorClient
) -> None:
    agent_id = await sdk_agent(client)
    task = await running_task(client, agent_id)
    await client.request_input(question(task, prompt="approve?"))
    cancelled = await client.cancel_task(task.task_id, "changed my mind")
    assert (cancelled.status, cancelled.input_request, cancelled.deadline_at) == (
        S.CANCELLED,
        None,
        None,
    )
    assert (await client.tasks(agent_id=agent_id, status=S.INPUT_REQUIRED)).items == []
    with pytest.raises(RequestFailed) as answered:
        await client.provide_input(task.task_id, "yes")
    assert answered.value.code is ErrorCode.CONFLICT


async def test_ask_and_answer_are_refused_for_other_projects_and_wrong_attempts(
    nc: NC, client: OrchestratorClient
) -> None:
    task = await running_task(client, await sdk_agent(client, "mine"))
    with pytest.raises(RequestFailed) as wrong_attempt:
        await client.request_input(RequestInput(task_id=task.task_id, attempt=2, prompt="?"))
    assert wrong_attempt.value.code is ErrorCode.CONFLICT
    await client.request_input(question(task, prompt="?"))
    body = {"task_id": str(task.task_id), "input": "x"}
    hidden = await call(nc, subjects.TASK_PROVIDE_INPUT, body, headers={"Project-Scope": "other"})
    assert hidden.error_code == "not_found"
    seen = await ok(nc, subjects.TASK_PROVIDE_INPUT, body, headers={"Project-Scope": "mine"})
    assert seen["status"] == "RUNNING"


async def test_an_agent_at_its_max_concurrent_tasks_queues_or_rejects_more(
    client: OrchestratorClient,
) -> None:
    queueing = await sdk_agent(client, configuration={"tasks": {"max_concurrent_tasks": 1}})
    first = await running_task(client, queueing)
    await client.request_input(question(first, prompt="waiting counts as busy"))
    second = await client.execute(queueing, "later")
    assert second.status is S.QUEUED
    with pytest.raises(RequestFailed) as no_room:
        await client.start_task(second.task_id, 1)
    assert no_room.value.code is ErrorCode.UNAVAILABLE
    assert no_room.value.details == {"busy": 1, "max_concurrent_tasks": 1}
    await client.cancel_task(first.task_id)
    assert (await client.start_task(second.task_id, 1)).status is S.RUNNING

    rejecting = await sdk_agent(
        client, configuration={"tasks": {"max_concurrent_tasks": 1, "on_busy": "reject"}}
    )
    await running_task(client, rejecting)
    with pytest.raises(RequestFailed) as rejected:
        await client.execute(rejecting, "one too many")
    assert rejected.value.code is ErrorCode.CONFLICT
    assert "max_concurrent_tasks (1)" in rejected.value.message
    assert (await client.tasks(agent_id=rejecting)).items[0].input == {"ticket": 7}
