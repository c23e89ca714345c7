"""Agent liveness and recovery against real servers, with real worker processes to kill.

Agents here use a 1 s heartbeat window (configuration.liveness), so their worker (the example
agent program, a child process) beats every third of a second.
"""

import asyncio
import signal
from pathlib import Path
from typing import Any

import nats.aio.client
import pytest

from agent_orchestrator.client import OrchestratorClient, TaskRun
from agent_orchestrator.contracts import subjects
from agent_orchestrator.contracts.agents import Agent, AgentStatus, TransitionPage
from agent_orchestrator.contracts.tasks import TaskStatus
from agent_orchestrator.service import Service
from tests.support.agents import sdk_agent
from tests.support.calls import call, ok
from tests.support.events import wait_for_events
from tests.support.own_service import own_service
from tests.support.polling import eventually
from tests.support.servers import ServerUrls
from tests.support.workers import example_agent, worker_running

NC = nats.aio.client.Client
S = AgentStatus
ROOT = Path(__file__).resolve().parents[2]
WINDOW = {"liveness": {"heartbeat_window_s": 1}}
# A restarted worker process has 5 s to come up after a recovery before it counts as lost.
GRACE = {"liveness": {"heartbeat_window_s": 1, "activation_grace_s": 5}}
AUTOMATIC = {"recovery": {"automatic": True, "max_attempts": 2, "window_s": 600}}


async def beating(client: OrchestratorClient, agent_id: str, within: float = 20.0) -> Agent:
    """The agent once its worker's heartbeat shows."""
    return await eventually(
        lambda: client.get_agent(agent_id),
        lambda agent: agent.last_heartbeat_at is not None,
        within=within,
        what=f"a heartbeat of agent {agent_id}",
    )


async def status_reached(
    client: OrchestratorClient, agent_id: str, status: S, reason: str | None = None
) -> Agent:
    try:
        return await eventually(
            lambda: client.get_agent(agent_id),
            lambda agent: agent.status is status and reason in (None, agent.status_reason),
            within=30,
            what=f"agent {agent_id} {status} ({reason})",
        )
    except pytest.fail.Exception:
        page = await client.request(
            subjects.AGENT_HISTORY, {"agent_id": agent_id, "limit": 500}, TransitionPage
        )
        moves = [(t.at.time().isoformat(), t.to_status, t.actor, t.reason) for t in page.items]
        raise AssertionError(f"never {status} ({reason}); history: {moves}") from None


async def history(nc: NC, agent_id: str) -> list[tuple[str, str, str | None]]:
    """(to, actor, reason) of every transition."""
    page = await ok(nc, subjects.AGENT_HISTORY, {"agent_id": agent_id, "limit": 500})
    return [(t["to"], t["actor"], t["reason"]) for t in page["items"]]


async def kill(proc: asyncio.subprocess.Process) -> None:
    proc.send_signal(signal.SIGKILL)
    await proc.wait()


async def test_killing_a_worker_moves_its_agent_to_error(
    nc: NC, client: OrchestratorClient, servers: ServerUrls, tmp_path: Path
) -> None:
    agent_id = await sdk_agent(client, configuration=WINDOW)
    async with example_agent(servers.nats_url, agent_id, tmp_path / "worker.log") as proc:
        alive = await beating(client, agent_id)
        await kill(proc)
    lost = await status_reached(client, agent_id, S.ERROR)
    assert lost.status_reason == "heartbeat_lost"
    assert lost.last_heartbeat_at is None  # nothing alive beats for it
    assert alive.last_heartbeat_at is not None
    assert (await history(nc, agent_id))[-1] == ("ERROR", "liveness-monitor", "heartbeat_lost")
    [event] = await wait_for_events(nc.jetstream(), subjects.event_subject(agent_id, "error"), 1)
    assert event.envelope["data"]["actor"] == "liveness-monitor"


async def test_automatic_recovery_restores_the_checkpoint_and_a_new_worker_takes_over(
    nc: NC, client: OrchestratorClient, servers: ServerUrls, tmp_path: Path
) -> None:
    agent_id = await sdk_agent(client, configuration=GRACE | AUTOMATIC)
    await client.update_state(agent_id, {"step": 1})
    await client.checkpoint(agent_id, label="good")
    await client.update_state(agent_id, {"step": 2})
    async with example_agent(servers.nats_url, agent_id, tmp_path / "first.log") as first:
        await beating(client, agent_id)
        await kill(first)
    # ERROR lasts only until the recovery starts: wait for where the recovery ends.
    await status_reached(client, agent_id, S.ACTIVE, "recovered")
    assert (await client.get_state(agent_id)).state == {"step": 1}
    async with example_agent(servers.nats_url, agent_id, tmp_path / "second.log"):
        await beating(client, agent_id)
        task = await client.execute(agent_id, {"text": "back at work"})
        assert (await client.wait_for_task(task.task_id)).status is TaskStatus.SUCCEEDED
        assert (await client.get_agent(agent_id)).status is S.ACTIVE
    assert (await history(nc, agent_id))[-4:] == [
        ("ERROR", "liveness-monitor", "heartbeat_lost"),
        ("INITIALIZING", "recovery-policy", "automatic recovery after heartbeat_lost"),
        ("READY", "recovery-policy", "recovered"),
        ("ACTIVE", "recovery-policy", "recovered"),
    ]


async def test_a_worker_that_crashes_on_every_start_ends_in_recovery_exhausted(
    nc: NC, client: OrchestratorClient, servers: ServerUrls, tmp_path: Path
) -> None:
    agent_id = await sdk_agent(client, configuration=GRACE | AUTOMATIC)
    starts = 0
    done = asyncio.Event()  # a flag, not cancel(): see AgentWorker.stop

    async def supervise() -> None:
        """Start the worker each time the agent is (re)activated; it dies once it has beaten.
        A loss and its recovery take milliseconds, so a new activation shows as a new
        version, not as a status seen in between."""
        nonlocal starts
        activated = 0
        while not done.is_set():
            agent = await client.get_agent(agent_id)
            if agent.status is S.ACTIVE and agent.version > activated:
                activated = agent.version
                async with example_agent(servers.nats_url, agent_id, tmp_path / "w.log") as p:
                    starts += 1
                    await beating(client, agent_id)
                    await kill(p)
            await asyncio.sleep(0.1)

    supervisor = asyncio.create_task(supervise())
    try:
        exhausted = await status_reached(client, agent_id, S.ERROR, "recovery_exhausted")
    finally:
        done.set()
        await asyncio.wait_for(supervisor, 30)
    assert exhausted.status_reason == "recovery_exhausted"
    moves = await history(nc, agent_id)
    assert [m for m in moves if m[1] == "recovery-policy" and m[0] == "INITIALIZING"] == [
        ("INITIALIZING", "recovery-policy", "automatic recovery after heartbeat_lost")
    ] * 2
    assert starts == 3  # the first start and one per recovery


async def test_an_agent_that_never_had_a_worker_is_watched_only_if_required(
    client: OrchestratorClient,
) -> None:
    plain = await sdk_agent(client, configuration=WINDOW)
    required = await sdk_agent(
        client, configuration={"liveness": {"heartbeat_window_s": 1, "require_heartbeat": True}}
    )
    await status_reached(client, required, S.ERROR, "heartbeat_lost")
    # The same window has passed for both: the agent that never had a worker is left alone.
    assert (await client.get_agent(plain)).status is S.ACTIVE


async def test_recover_by_hand_restores_a_checkpoint_requeues_running_tasks_and_ends_ready(
    nc: NC, client: OrchestratorClient, servers: ServerUrls
) -> None:
    agent_id = await sdk_agent(client)
    await client.update_state(agent_id, {"v": "first"})
    first = await client.checkpoint(agent_id, label="first")
    await client.update_state(agent_id, {"v": "second"})
    await client.checkpoint(agent_id, label="second")
    started = asyncio.Event()

    async def stuck(run: TaskRun) -> Any:
        started.set()
        await asyncio.sleep(60)

    async with worker_running(servers, agent_id, stuck):
        task = await client.execute(agent_id, "stuck", max_attempts=3)
        await asyncio.wait_for(started.wait(), 10)
        await ok(nc, subjects.AGENT_STATUS, {"agent_id": agent_id, "status": "ERROR"})
        reply = await ok(
            nc,
            subjects.AGENT_RECOVER,
            {"agent_id": agent_id, "checkpoint_id": str(first.checkpoint_id), "target": "READY"},
            headers={subjects.ACTOR_HEADER: "operator"},
        )
        assert reply["status"] == "INITIALIZING"
        await status_reached(client, agent_id, S.READY)
    assert (await client.get_state(agent_id)).state == {"v": "first"}
    requeued = await client.get_task(task.task_id)
    assert (requeued.status, requeued.status_reason) == (
        TaskStatus.QUEUED,
        "its agent was recovered",
    )
    assert (await history(nc, agent_id))[-2:] == [
        ("INITIALIZING", "operator", "recovery"),
        ("READY", "operator", "recovered"),
    ]


async def test_recover_refuses_an_agent_that_is_not_in_error_and_fails_on_a_missing_checkpoint(
    nc: NC, client: OrchestratorClient
) -> None:
    agent_id = await sdk_agent(client)
    refused = await call(nc, subjects.AGENT_RECOVER, {"agent_id": agent_id})
    assert refused.error_code == "invalid_transition"
    await ok(nc, subjects.AGENT_STATUS, {"agent_id": agent_id, "status": "ERROR"})
    missing = "01000000-0000-7000-8000-000000000000"
    await ok(nc, subjects.AGENT_RECOVER, {"agent_id": agent_id, "checkpoint_id": missing})
    failed = await status_reached(client, agent_id, S.ERROR)
    assert failed.status_reason is not None
    assert failed.status_reason.startswith("initialization failed: ")
    assert f"has no checkpoint {missing}" in failed.status_reason


@pytest.mark.parametrize(
    ("configuration", "path"),
    [
        ({"liveness": {"heartbeat_window_s": 0}}, "configuration.liveness.heartbeat_window_s"),
        ({"recovery": {"automatic": "sometimes"}}, "configuration.recovery.automatic"),
        ({"recovery": {"target": "PAUSED"}}, "configuration.recovery.target"),
        ({"liveness": {"heartbeat": 5}}, "configuration.liveness.heartbeat"),
    ],
)
async def test_policies_that_cannot_be_followed_are_refused(
    nc: NC, configuration: dict[str, Any], path: str
) -> None:
    reply = await call(
        nc, subjects.AGENT_CREATE, {"name": "x", "type": "t", "configuration": configuration}
    )
    assert reply.error_code == "validation_error"
    assert [d["path"] for d in reply.body["error"]["details"]] == [path]


async def test_each_loss_is_handled_once_with_two_instances_and_after_an_outage(
    tmp_path: Path,
) -> None:
    async with own_service(tmp_path) as own:
        client = OrchestratorClient(own.nc)
        second = Service(own.service.settings)
        await second.start()
        try:
            recover_to_ready = {"recovery": {"automatic": True, "target": "READY"}}
            agent_id = await sdk_agent(client, configuration=WINDOW | recover_to_ready)
            async with example_agent(own.nats.url, agent_id, tmp_path / "w.log") as proc:
                await beating(client, agent_id)
                await kill(proc)
            await status_reached(client, agent_id, S.READY, "recovered")
            # And while no instance runs at all:
            other = await sdk_agent(client, configuration=WINDOW)
            async with example_agent(own.nats.url, other, tmp_path / "w2.log") as proc:
                await beating(client, other)
                await own.service.stop()
                await second.stop()
                await kill(proc)
                await asyncio.sleep(2.5)  # the key expires while nobody watches
        finally:
            await second.stop()
        third = Service(own.service.settings)
        await third.start()
        try:
            await status_reached(client, other, S.ERROR, "heartbeat_lost")
            moves = await history(own.nc, agent_id)
        finally:
            await third.stop()
    losses = [m for m in moves if m[1] == "liveness-monitor"]
    recoveries = [m for m in moves if m[1] == "recovery-policy" and m[0] == "INITIALIZING"]
    assert (len(losses), len(recoveries)) == (1, 1)
