"""``run.ask`` in the worker SDK on real servers: a handler asks, a person answers, the handler
goes on; several questions in order; a cancel or a timeout while it waits; a worker SIGKILLed
while it waits; the service restarted between question and answer; two service instances
racing on a question's timeout.

The session service sweeps every 0.2 s and gives a RUNNING task 2 s without a report.
"""

import asyncio
import signal
from pathlib import Path
from typing import Any

import nats
import nats.aio.client

from agent_orchestrator.client import OrchestratorClient, TaskRun
from agent_orchestrator.contracts import subjects
from agent_orchestrator.contracts.tasks import (
    InputSource,
    OnInputTimeout,
    RequestInput,
    TaskStatus,
)
from agent_orchestrator.service import Service
from tests.support.agents import sdk_agent
from tests.support.events import read_events, wait_for_events
from tests.support.own_service import own_service
from tests.support.polling import eventually
from tests.support.servers import ServerUrls
from tests.support.service_process import ServiceProcess, instance_ids, own_servers
from tests.support.workers import APPROVAL_AGENT, example_agent, worker_running

NC = nats.aio.client.Client
S = TaskStatus


async def waiting(client: OrchestratorClient, task_id: Any, seq: int = 1) -> None:
    """Until the task waits for the answer to question ``seq``."""
    await eventually(
        lambda: client.get_task(task_id),
        lambda t: t.input_request is not None and t.input_request.input_seq == seq,
        within=15,
        what=f"task {task_id} asking question {seq}",
        interval=0.05,
    )


async def test_a_handler_gets_its_answer_and_heartbeats_resume_after_it(
    nc: NC, client: OrchestratorClient, servers: ServerUrls
) -> None:
    agent_id = await sdk_agent(client)

    async def handler(run: TaskRun) -> Any:
        answer = await run.ask({"question": "which region?"}, schema={"enum": ["eu", "us"]})
        await asyncio.sleep(3.0)  # longer than the heartbeat window: the beats are back
        return {"region": answer}

    async with worker_running(servers, agent_id, handler):
        task = await client.execute(agent_id, "deploy")
        await waiting(client, task.task_id)
        await asyncio.sleep(2.5)  # waiting longer than a heartbeat window changes nothing
        assert (await client.get_task(task.task_id)).status is S.INPUT_REQUIRED
        await client.provide_input(task.task_id, "eu")
        done = await client.wait_for_task(task.task_id, timeout=15)
    assert (done.status, done.result, done.attempts) == (S.SUCCEEDED, {"region": "eu"}, 1)
    assert done.input_wait_s >= 2


async def test_several_questions_in_one_task_are_answered_in_order(
    client: OrchestratorClient, servers: ServerUrls
) -> None:
    agent_id = await sdk_agent(client)

    async def handler(run: TaskRun) -> Any:
        return [await run.ask(f"question {n}") for n in (1, 2, 3)]

    async with worker_running(servers, agent_id, handler):
        task = await client.execute(agent_id, None)
        for seq in (1, 2, 3):
            await waiting(client, task.task_id, seq)
            await client.provide_input(task.task_id, f"answer {seq}", input_seq=seq)
        done = await client.wait_for_task(task.task_id, timeout=15)
    assert done.result == ["answer 1", "answer 2", "answer 3"]
    assert [(a.input_seq, a.prompt) for a in done.input_answers] == [
        (1, "question 1"),
        (2, "question 2"),
        (3, "question 3"),
    ]


async def test_a_cancel_while_waiting_cancels_the_waiting_handler_at_once(
    client: OrchestratorClient, servers: ServerUrls
) -> None:
    agent_id = await sdk_agent(client)
    stopped = asyncio.Event()

    async def handler(run: TaskRun) -> Any:
        try:
            return await run.ask("may I?")
        except asyncio.CancelledError:
            stopped.set()
            raise

    async with worker_running(servers, agent_id, handler):
        task = await client.execute(agent_id, None)
        await waiting(client, task.task_id)
        await client.cancel_task(task.task_id, "no longer needed")
        await asyncio.wait_for(stopped.wait(), 3)  # by the event, not the 20 s re-ask
    ended = await client.get_task(task.task_id)
    assert (ended.status, ended.input_request) == (S.CANCELLED, None)


async def test_a_timed_out_question_gives_the_default_or_ends_the_task(
    client: OrchestratorClient, servers: ServerUrls
) -> None:
    agent_id = await sdk_agent(client)
    cancelled = asyncio.Event()

    async def handler(run: TaskRun) -> Any:
        if run.input == "default":
            return await run.ask("approve?", timeout_s=1, default="no")
        try:
            return await run.ask("approve?", timeout_s=1, on_timeout="fail")
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with worker_running(servers, agent_id, handler):
        defaulted = await client.execute(agent_id, "default")
        done = await client.wait_for_task(defaulted.task_id, timeout=15)
        assert (done.status, done.result) == (S.SUCCEEDED, "no")
        assert done.input_answers[0].source is InputSource.DEFAULT
        failing = await client.execute(agent_id, "fail")
        failed = await client.wait_for_task(failing.task_id, timeout=15)
        await asyncio.wait_for(cancelled.wait(), 3)
    assert failed.status is S.FAILED
    assert failed.error == {
        "message": "question 1 was not answered within 1 s",
        "details": {"input_seq": 1},
    }


async def test_a_worker_killed_while_waiting_is_replaced_by_one_that_gets_the_answer(
    nc: NC, client: OrchestratorClient, servers: ServerUrls, tmp_path: Path
) -> None:
    """SIGKILL the approval agent while its question waits; answer it; the next worker runs the
    task again, its ask returns the recorded answer at once (the question is not asked again),
    and it acts once."""
    agent_id = await sdk_agent(client)
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    async with example_agent(servers.nats_url, agent_id, first_log, APPROVAL_AGENT) as first:
        task = await client.execute(agent_id, {"refund": 30, "order": 4711})
        await waiting(client, task.task_id)
        first.send_signal(signal.SIGKILL)
        await first.wait()
    async with example_agent(servers.nats_url, agent_id, second_log, APPROVAL_AGENT):
        await client.provide_input(task.task_id, {"approved": True})
        done = await client.wait_for_task(task.task_id, timeout=30)
    assert (done.status, done.attempts) == (S.SUCCEEDED, 2)
    assert done.result == {"done": True, "action": {"action": "carry out", "what": task.input}}
    assert "approved, done" in second_log.read_text()
    asked = await read_events(
        nc.jetstream(), subjects.event_subject(agent_id, "task_input_required")
    )
    assert len(asked) == 1
    state = await client.get_state(agent_id)
    assert state.state["actions"] == [done.result["action"]]  # type: ignore[index, call-overload]


async def test_question_and_answer_survive_a_service_restart(tmp_path: Path) -> None:
    """The worker waits through the restart; the answer reaches it by its event, well before
    its own re-ask (every 20 s with this heartbeat window)."""
    async with own_service(tmp_path, task_heartbeat_s=60.0, sweep_s=0.2) as own:
        client = OrchestratorClient(own.nc)
        agent_id = await sdk_agent(client)

        async def handler(run: TaskRun) -> Any:
            return await run.ask("proceed?")

        restarted: Service | None = None
        try:
            async with worker_running(own.nats.url, agent_id, handler):
                task = await client.execute(agent_id, None)
                await waiting(client, task.task_id)
                await own.service.stop()
                restarted = Service(own.service.settings)
                await restarted.start()
                assert (await client.get_task(task.task_id)).status is S.INPUT_REQUIRED
                await client.provide_input(task.task_id, "yes")
                done = await client.wait_for_task(task.task_id, timeout=5)
                assert (done.status, done.result, done.attempts) == (S.SUCCEEDED, "yes", 1)
        finally:
            if restarted is not None:
                await restarted.stop()
                await own.service.start()  # own_service stops it at the end


async def test_two_instances_racing_on_timeouts_apply_each_on_timeout_once(
    tmp_path: Path,
) -> None:
    """Two service processes sweep every 20 ms; 20 questions time out at the same moment with
    on_timeout `default`: each task gets exactly one answer and one task_input_provided."""
    env = {"AO_SWEEP_S": "0.02", "AO_TASK_HEARTBEAT_S": "60"}
    with own_servers(tmp_path) as servers:
        instances = [
            ServiceProcess(servers.nats_url, servers.database_url, tmp_path / f"{n}.log", env=env)
            for n in ("a", "b")
        ]
        try:
            for instance in instances:
                await instance.start_and_wait()
            nc = await nats.connect(servers.nats_url)
            try:
                assert len(await instance_ids(nc)) == 2
                client = OrchestratorClient(nc)
                agent_id = await sdk_agent(client)
                tasks = [await client.execute(agent_id, n) for n in range(20)]
                for task in tasks:
                    await client.start_task(task.task_id, 1)
                await asyncio.gather(
                    *(
                        client.request_input(
                            RequestInput(
                                task_id=task.task_id,
                                attempt=1,
                                prompt="later?",
                                timeout_s=1,
                                on_timeout=OnInputTimeout.DEFAULT,
                                default_input="later",
                            )
                        )
                        for task in tasks
                    )
                )
                await asyncio.sleep(1.5)
                for task in tasks:
                    after = await client.wait_for_task(task.task_id, S.RUNNING, timeout=10)
                    assert [(a.input, a.source) for a in after.input_answers] == [
                        ("later", InputSource.DEFAULT)
                    ]
                await wait_for_events(
                    nc.jetstream(), subjects.event_subject(agent_id, "task_input_provided"), 20
                )
                await asyncio.sleep(0.5)  # any second application would be relayed by now
                provided = await read_events(
                    nc.jetstream(), subjects.event_subject(agent_id, "task_input_provided")
                )
                by_task = sorted(e.envelope["data"]["task_id"] for e in provided)
                assert by_task == sorted(str(t.task_id) for t in tasks)
            finally:
                await nc.close()
        finally:
            for instance in instances:
                instance.kill()


async def test_a_busy_agents_next_task_waits_its_turn_behind_a_question(
    client: OrchestratorClient, servers: ServerUrls
) -> None:
    """max_concurrent_tasks 1: while one task waits for a person, the next stays QUEUED (even
    with a worker free to run it), and starts once the first is answered and done."""
    agent_id = await sdk_agent(client, configuration={"tasks": {"max_concurrent_tasks": 1}})

    async def handler(run: TaskRun) -> Any:
        if run.input == "ask":
            return await run.ask("may I?")
        return "quick"

    async with worker_running(servers, agent_id, handler, concurrency=2):
        asking = await client.execute(agent_id, "ask")
        await waiting(client, asking.task_id)
        later = await client.execute(agent_id, "later")
        await asyncio.sleep(2.5)  # the free worker slot tried, and was told to wait
        assert (await client.get_task(later.task_id)).status is S.QUEUED
        await client.provide_input(asking.task_id, "yes")
        first = await client.wait_for_task(asking.task_id, timeout=10)
        second = await client.wait_for_task(later.task_id, timeout=10)
    assert (first.result, second.result) == ("yes", "quick")
    assert second.started_at is not None
    assert first.finished_at is not None
    assert second.started_at >= first.finished_at


async def test_a_worker_lost_before_its_question_arrived_is_replaced_by_one_that_asks_it(
    client: OrchestratorClient, servers: ServerUrls
) -> None:
    """The first worker stops (its handler cancelled, no report) before it asks; the service
    gives the silent attempt up after the heartbeat window, and the next worker's program asks
    the question: answered, it finishes on attempt 2."""
    agent_id = await sdk_agent(client)
    thinking = asyncio.Event()

    async def slow_thinker(run: TaskRun) -> Any:
        thinking.set()
        await asyncio.sleep(3600)

    async def asker(run: TaskRun) -> Any:
        return {"answer": await run.ask("proceed?"), "attempt": run.attempt}

    async with worker_running(servers, agent_id, slow_thinker):
        task = await client.execute(agent_id, None, max_attempts=2)
        await asyncio.wait_for(thinking.wait(), 10)
    assert (await client.get_task(task.task_id)).input_request is None
    async with worker_running(servers, agent_id, asker):
        await waiting(client, task.task_id)
        asked = await client.get_task(task.task_id)
        assert asked.input_request is not None
        assert (asked.attempts, asked.input_request.attempt) == (2, 2)
        await client.provide_input(task.task_id, "go")
        done = await client.wait_for_task(task.task_id, timeout=10)
    assert (done.status, done.result) == (S.SUCCEEDED, {"answer": "go", "attempt": 2})
