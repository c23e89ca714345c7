"""Tasks over real NATS and PostgreSQL, run by the example agent and by in-process workers.

The session service gives a RUNNING task 2 s without a report (task_heartbeat_s) before it
retries or ends it, and sweeps every 0.2 s.
"""

import asyncio
import logging
import re
import signal
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import nats
import nats.aio.client
import pytest

from agent_orchestrator.client import (
    AgentWorker,
    OrchestratorClient,
    RetryTask,
    ServiceUnavailable,
    TaskRun,
)
from agent_orchestrator.contracts import subjects
from agent_orchestrator.contracts.agents import AgentStatus
from agent_orchestrator.contracts.tasks import ProvideInput, RequestInput, Task, TaskStatus
from agent_orchestrator.domain import task_input
from agent_orchestrator.domain import tasks as task_rules
from agent_orchestrator.storage.postgres import Database
from agent_orchestrator.storage.tasks import TaskRepository
from tests.support.agents import sdk_agent
from tests.support.calls import call
from tests.support.events import wait_for_events
from tests.support.own_service import own_service
from tests.support.polling import eventually
from tests.support.queues import subject_is_empty
from tests.support.servers import ServerUrls
from tests.support.workers import example_agent, worker_running

NC = nats.aio.client.Client
S = TaskStatus
ROOT = Path(__file__).resolve().parents[2]


def printed_agent(log: Path) -> str | None:
    """The agent id the example program printed once its agent was ready, if it did yet."""
    match = re.search(r"agent (\S+) is ready for tasks", log.read_text())
    return match.group(1) if match else None


async def agent_it_made(log: Path, within: float = 30.0) -> str:
    """Wait for the example program to say which agent it made and started."""

    async def printed() -> str | None:
        return printed_agent(log)

    agent_id = await eventually(
        printed, lambda found: found is not None, within=within, what=f"an agent id in {log}"
    )
    assert agent_id is not None
    return agent_id


async def test_a_task_runs_end_to_end_through_the_example_agent(
    nc: NC, client: OrchestratorClient, servers: ServerUrls, tmp_path: Path
) -> None:
    async with example_agent(servers.nats_url, None, tmp_path / "agent.log") as proc:
        agent_id = await agent_it_made(tmp_path / "agent.log")
        assert (await client.get_agent(agent_id)).status is AgentStatus.ACTIVE
        task = await client.execute(agent_id, {"text": "to be or not to be"})
        assert (task.status, task.attempts, task.progress) == (S.QUEUED, 0, 0)
        done = await client.wait_for_task(task.task_id)
        assert (done.status, done.result, done.attempts, done.progress) == (
            S.SUCCEEDED,
            {"words": 6},
            1,
            100,
        )
        assert done.started_at is not None
        assert done.finished_at is not None
        assert (await client.get_state(agent_id)).state == {"words_counted": 6}
        await client.change(subjects.AGENT_TERMINATE, agent_id)
        assert await asyncio.wait_for(proc.wait(), 30) == 0  # it stops with its agent
    out = (tmp_path / "agent.log").read_text()
    assert f"task {task.task_id} (attempt 1): 6 words" in out
    events = await wait_for_events(nc.jetstream(), subjects.event_subject(agent_id, "*"), 9)
    kinds = [e.envelope["type"] for e in events if e.envelope["type"].startswith("task_")]
    assert kinds == ["task_queued", "task_started", "task_succeeded"]


async def test_progress_reports_are_recorded_and_published(
    nc: NC, client: OrchestratorClient, servers: ServerUrls, tmp_path: Path
) -> None:
    agent_id = await sdk_agent(client)
    async with example_agent(servers.nats_url, agent_id, tmp_path / "agent.log"):
        task = await client.execute(
            agent_id, {"text": "one two three four"}, parameters={"seconds_per_word": 0.1}
        )
        done = await client.wait_for_task(task.task_id)
    assert done.progress_message == "4 of 4 words"
    events = await wait_for_events(
        nc.jetstream(), subjects.event_subject(agent_id, "task_progress"), 4
    )
    assert [e.envelope["data"]["progress"] for e in events] == [25, 50, 75, 100]


async def test_a_worker_killed_mid_task_leads_to_a_retry(
    client: OrchestratorClient, servers: ServerUrls, tmp_path: Path
) -> None:
    agent_id = await sdk_agent(client)
    text = {"text": "slow words to count"}
    async with example_agent(servers.nats_url, agent_id, tmp_path / "first.log") as first:
        task = await client.execute(
            agent_id, text, parameters={"seconds_per_word": 1}, max_attempts=2
        )
        await client.wait_for_task(task.task_id, S.RUNNING, timeout=15)
        first.send_signal(signal.SIGKILL)
        await first.wait()
    async with example_agent(servers.nats_url, agent_id, tmp_path / "second.log"):
        done = await client.wait_for_task(task.task_id, timeout=30)
    assert (done.status, done.attempts, done.result) == (S.SUCCEEDED, 2, {"words": 4})
    assert f"task {task.task_id} (attempt 2): 4 words" in (tmp_path / "second.log").read_text()


async def test_a_worker_that_never_reports_is_timed_out_after_its_last_attempt(
    client: OrchestratorClient, servers: ServerUrls, tmp_path: Path
) -> None:
    agent_id = await sdk_agent(client)
    async with example_agent(servers.nats_url, agent_id, tmp_path / "agent.log") as proc:
        task = await client.execute(
            agent_id, {"text": "a b c"}, parameters={"seconds_per_word": 5}, max_attempts=1
        )
        await client.wait_for_task(task.task_id, S.RUNNING, timeout=15)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    ended = await client.wait_for_task(task.task_id, timeout=15)
    assert (ended.status, ended.attempts) == (S.TIMED_OUT, 1)
    assert ended.status_reason == "attempt 1: no report from its worker in time; no attempts left"
    assert ended.deadline_at is None


async def test_a_cancelled_task_is_never_started(
    nc: NC, client: OrchestratorClient, servers: ServerUrls
) -> None:
    agent_id = await sdk_agent(client)
    task = await client.execute(agent_id, {"text": "cancel me"})
    cancelled = await client.cancel_task(task.task_id, "changed my mind")
    assert (cancelled.status, cancelled.status_reason) == (S.CANCELLED, "changed my mind")
    assert (await client.cancel_task(task.task_id)).status is S.CANCELLED  # idempotent
    started: list[str] = []

    async def handler(run: TaskRun) -> Any:
        started.append(str(run.task_id))
        return None

    async with worker_running(servers, agent_id, handler):
        later = await client.execute(agent_id, {"text": "but this one"})
        assert (await client.wait_for_task(later.task_id)).status is S.SUCCEEDED
    assert started == [str(later.task_id)]
    assert (await client.get_task(task.task_id)).status is S.CANCELLED
    assert await subject_is_empty(nc, subjects.TASKS_STREAM, subjects.task_subject(agent_id))


async def test_cancelling_a_running_task_stops_its_handler(
    client: OrchestratorClient, servers: ServerUrls
) -> None:
    agent_id = await sdk_agent(client)
    stopped = asyncio.Event()

    async def handler(run: TaskRun) -> Any:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            stopped.set()
            raise

    async with worker_running(servers, agent_id, handler):
        task = await client.execute(agent_id, "long")
        await client.wait_for_task(task.task_id, S.RUNNING)
        await client.cancel_task(task.task_id)
        await asyncio.wait_for(stopped.wait(), 10)  # noticed at its next heartbeat
    assert (await client.get_task(task.task_id)).status is S.CANCELLED


async def test_cancelling_a_slow_task_of_the_example_agent_is_one_info_line(
    client: OrchestratorClient, servers: ServerUrls, tmp_path: Path
) -> None:
    agent_id = await sdk_agent(client)
    log = tmp_path / "agent.log"
    async with example_agent(servers.nats_url, agent_id, log):
        task = await client.execute(
            agent_id, {"text": "slow " * 100}, parameters={"seconds_per_word": 0.2}
        )
        working = await client.wait_for_task(task.task_id, S.RUNNING, timeout=15)
        async with asyncio.timeout(10):
            while working.progress == 0:  # mid-task: it has reported progress
                await asyncio.sleep(0.1)
                working = await client.get_task(task.task_id)
        await client.cancel_task(task.task_id, "changed my mind")
        async with asyncio.timeout(10):
            while "was cancelled" not in log.read_text():
                await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # whatever it would log after the cancellation
    out = log.read_text()
    about_it = [line for line in out.splitlines() if str(task.task_id) in line]
    assert about_it == [
        f"INFO agent_orchestrator.client.task_run: task {task.task_id} was cancelled "
        "(changed my mind); its handler was stopped"
    ], out
    assert "Traceback" not in out
    assert not [line for line in out.splitlines() if line.startswith(("WARNING", "ERROR"))], out
    assert (await client.get_task(task.task_id)).status is S.CANCELLED


async def test_a_handler_reporting_progress_sees_the_cancellation_as_cancelled_error(
    client: OrchestratorClient, servers: ServerUrls, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agent_orchestrator.client")
    agent_id = await sdk_agent(client)
    saw: list[BaseException] = []
    reports = 0

    async def handler(run: TaskRun) -> Any:
        nonlocal reports
        try:
            while True:
                await asyncio.sleep(0.1)
                await run.progress(message="still at it")
                reports += 1
        except asyncio.CancelledError as exc:
            saw.append(exc)
            raise

    async with worker_running(servers, agent_id, handler):
        task = await client.execute(agent_id, "long")
        await client.wait_for_task(task.task_id, S.RUNNING)
        async with asyncio.timeout(10):
            while reports == 0:
                await asyncio.sleep(0.05)
        await client.cancel_task(task.task_id)
        async with asyncio.timeout(10):
            while not saw:
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
    assert [type(e) for e in saw] == [asyncio.CancelledError]
    mine = [r for r in caplog.records if str(task.task_id) in r.getMessage()]
    assert [(r.levelno, r.getMessage()) for r in mine] == [
        (logging.INFO, f"task {task.task_id} was cancelled; its handler was stopped")
    ]
    assert all(r.exc_info is None for r in mine)


async def test_a_paused_agents_task_starts_after_activation(
    client: OrchestratorClient, servers: ServerUrls
) -> None:
    agent_id = await sdk_agent(client)
    task = await client.execute(agent_id, "wait for me")
    await client.change(subjects.AGENT_PAUSE, agent_id)

    async def handler(run: TaskRun) -> Any:
        return "done"

    async with worker_running(servers, agent_id, handler):
        await asyncio.sleep(1.5)
        assert (await client.get_task(task.task_id)).status is S.QUEUED
        await client.change(subjects.AGENT_ACTIVATE, agent_id)
        done = await client.wait_for_task(task.task_id)
    assert (done.status, done.result) == (S.SUCCEEDED, "done")


MOVES = {"PAUSED": subjects.AGENT_PAUSE, "TERMINATED": subjects.AGENT_TERMINATE}


@pytest.mark.parametrize("status", ["CREATED", "READY", "PAUSED", "TERMINATED"])
async def test_execute_on_an_agent_that_is_not_active_is_refused_and_stores_nothing(
    nc: NC, client: OrchestratorClient, db: asyncpg.Pool, status: str
) -> None:
    agent_id = await sdk_agent(client, start=status not in ("CREATED", "READY"))
    if status == "READY":
        await client.change(subjects.AGENT_INITIALIZE, agent_id)
        await client.wait_for_status(agent_id, AgentStatus.READY)
    elif status != "CREATED":
        await client.change(MOVES[status], agent_id)
    reply = await call(nc, subjects.AGENT_EXECUTE, {"agent_id": agent_id, "input": 1})
    assert reply.error_code == "invalid_transition", reply.body
    assert reply.body["error"]["details"]["status"] == status
    count = await db.fetchval("SELECT count(*) FROM tasks WHERE agent_id = $1", uuid.UUID(agent_id))
    assert count == 0


async def test_terminating_an_agent_cancels_its_queued_and_running_tasks(
    client: OrchestratorClient, servers: ServerUrls
) -> None:
    agent_id = await sdk_agent(client)

    async def handler(run: TaskRun) -> Any:
        await asyncio.sleep(60)

    async with worker_running(servers, agent_id, handler):
        running = await client.execute(agent_id, "first")
        await client.wait_for_task(running.task_id, S.RUNNING)
        queued = await client.execute(agent_id, "second")
        await client.change(subjects.AGENT_TERMINATE, agent_id)
        for task in (running, queued):
            ended = await client.wait_for_task(task.task_id, timeout=10)
            assert (ended.status, ended.status_reason) == (S.CANCELLED, "agent terminated")


async def test_a_handler_that_raises_fails_the_task_and_retry_task_retries_it(
    client: OrchestratorClient, servers: ServerUrls
) -> None:
    agent_id = await sdk_agent(client)

    async def handler(run: TaskRun) -> Any:
        if run.input == "retry" and run.attempt == 1:
            raise RetryTask("flaky tool")
        if run.input == "boom":
            raise ValueError("no good")
        return run.attempt

    async with worker_running(servers, agent_id, handler):
        boom = await client.execute(agent_id, "boom")
        retry = await client.execute(agent_id, "retry")
        failed = await client.wait_for_task(boom.task_id)
        retried = await client.wait_for_task(retry.task_id)
    assert failed.status is S.FAILED
    assert failed.error == {"message": "ValueError: no good", "details": None}
    assert (retried.status, retried.result, retried.attempts) == (S.SUCCEEDED, 2, 2)


async def test_worker_reports_for_another_attempt_or_an_ended_task_are_conflicts(
    nc: NC, client: OrchestratorClient
) -> None:
    agent_id = await sdk_agent(client)
    task = await client.execute(agent_id, "manual")
    tid = str(task.task_id)
    assert (await call(nc, subjects.TASK_START, {"task_id": tid, "attempt": 2})).error_code == (
        "conflict"
    )
    started = await call(nc, subjects.TASK_START, {"task_id": tid, "attempt": 1})
    again = await call(nc, subjects.TASK_START, {"task_id": tid, "attempt": 1})
    assert started.body == again.body  # a repeated start changes nothing
    assert started.body["status"] == "RUNNING"
    stale = await call(nc, subjects.TASK_PROGRESS, {"task_id": tid, "attempt": 3, "progress": 5})
    assert stale.error_code == "conflict"
    body = {"task_id": tid, "attempt": 1, "result": {"ok": True}}
    first = await call(nc, subjects.TASK_COMPLETE, body)
    assert first.body["status"] == "SUCCEEDED"
    assert (await call(nc, subjects.TASK_COMPLETE, body)).body == first.body  # idempotent
    late = await call(nc, subjects.TASK_FAIL, {"task_id": tid, "attempt": 1, "error": "x"})
    assert late.error_code == "conflict"
    assert (await call(nc, subjects.TASK_CANCEL, {"task_id": tid})).error_code == "conflict"
    unknown = await call(nc, subjects.TASK_GET, {"task_id": str(uuid.uuid4())})
    assert unknown.error_code == "not_found"


async def test_tasks_list_by_agent_and_status_newest_first_in_pages(
    client: OrchestratorClient,
) -> None:
    agent_id = await sdk_agent(client)
    made = [await client.execute(agent_id, n) for n in range(5)]
    await client.cancel_task(made[1].task_id)
    ids = [t.task_id for t in made][::-1]
    seen = []
    cursor = None
    while True:
        page = await client.tasks(agent_id=agent_id, limit=2, cursor=cursor)
        seen += [t.task_id for t in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == ids
    cancelled = await client.tasks(agent_id=agent_id, status=S.CANCELLED)
    assert [t.task_id for t in cancelled.items] == [made[1].task_id]


async def test_the_worker_rides_out_a_nats_server_restart(tmp_path: Path) -> None:
    async with own_service(tmp_path, task_heartbeat_s=5.0, sweep_s=0.2) as own:
        client = OrchestratorClient(own.nc)
        agent_id = await sdk_agent(client)

        async def handler(run: TaskRun) -> Any:
            return run.input

        worker_nc = await nats.connect(own.nats.url, max_reconnect_attempts=-1)
        worker = AgentWorker(worker_nc, agent_id, poll_s=0.2)
        worker.task(handler)
        running = asyncio.create_task(worker.run())
        try:
            before = await client.execute(agent_id, "before")
            assert (await client.wait_for_task(before.task_id)).result == "before"
            await asyncio.to_thread(own.nats.restart)

            async def execute_after() -> Task | None:
                try:
                    return await client.execute(agent_id, "after")
                except ServiceUnavailable:  # until the service is connected again
                    return None

            after = await eventually(
                execute_after,
                lambda task: task is not None,
                within=30,
                what="agent.execute accepted after the restart",
                interval=0.2,
            )
            assert after is not None
            done = await client.wait_for_task(after.task_id)
            assert (done.status, done.result, done.attempts) == (S.SUCCEEDED, "after", 1)
        finally:
            worker.stop()
            try:
                await asyncio.wait_for(running, 15)
            finally:
                await worker_nc.close()


async def test_a_task_waiting_for_input_round_trips_through_its_row_and_is_in_the_inbox(
    client: OrchestratorClient, servers: ServerUrls
) -> None:
    """The storage of task input (no handler serves task.request_input yet): the question and
    its answers survive a read back, and task.list status=INPUT_REQUIRED is the inbox."""
    defaults = task_rules.TaskDefaults(timeout_s=600, max_attempts=3, heartbeat_s=60)
    database = Database(servers.database_url, min_size=1, max_size=2)
    await database.open()
    try:
        repo = TaskRepository(database)
        agent_id = await sdk_agent(client)
        queued = await client.execute(agent_id, {"ticket": 1})
        stored = await repo.get(queued.task_id)
        now = datetime.now(UTC)
        started = task_rules.start(stored.task, 1, stored.agent, defaults, now)
        assert started is not None
        assert await repo.save(started, revision=stored.revision, taken=True)
        stored = await repo.get(queued.task_id)
        question = RequestInput(
            task_id=queued.task_id,
            attempt=1,
            prompt={"question": "refund?", "choices": ["yes", "no"]},
            input_schema={"enum": ["yes", "no"]},
            timeout_s=3600,
        )
        asked = task_input.request_input(stored.task, question, stored.agent, defaults, now)
        assert asked is not None
        assert await repo.save(asked, revision=stored.revision)
        stored = await repo.get(queued.task_id)
        assert stored.task == asked.task
        inbox = await client.tasks(agent_id=agent_id, status=S.INPUT_REQUIRED)
        assert [t.task_id for t in inbox.items] == [queued.task_id]
        assert inbox.items[0].input_request == asked.task.input_request
        assert await repo.busy_count(stored.agent.agent_id) == 1
        assert queued.task_id in [s.task.task_id for s in await repo.open_tasks_of(
            stored.agent.agent_id, limit=10)]  # fmt: skip
        later = datetime.now(UTC) + timedelta(hours=2)
        assert queued.task_id in [s.task.task_id for s in await repo.overdue(later, limit=10_000)]
        answer = ProvideInput(task_id=queued.task_id, input="yes", input_seq=1)
        answered = task_input.provide_input(
            stored.task, answer, stored.agent, defaults, datetime.now(UTC), actor="alice"
        )
        assert await repo.save(answered, revision=stored.revision)
        assert not await repo.save(answered, revision=stored.revision)  # only once
        resumed = await repo.get(queued.task_id)
        assert resumed.task == answered.task
        assert [(a.input_seq, a.input, a.answered_by) for a in resumed.task.input_answers] == [
            (1, "yes", "alice")
        ]
        assert (await client.tasks(agent_id=agent_id, status=S.INPUT_REQUIRED)).items == []
    finally:
        await database.close()
