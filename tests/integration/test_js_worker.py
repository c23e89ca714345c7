"""The JavaScript worker of examples/js-worker serves an agent end to end, on the official
NATS clients alone (docs/worker-protocol.md is all it knows of the service).

Skipped where `node` is missing; its dependencies are installed with `npm ci` when
examples/js-worker/node_modules is missing (skipped if that is impossible).
"""

import asyncio
import json
import re
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import nats.aio.client
import pytest

from agent_orchestrator.client import OrchestratorClient
from agent_orchestrator.contracts import subjects
from agent_orchestrator.contracts.agents import AgentStatus, CreateAgent
from agent_orchestrator.contracts.communications import CommunicationStatus
from agent_orchestrator.contracts.tasks import Task, TaskStatus
from tests.support.events import read_events, wait_for_events
from tests.support.servers import ServerUrls

NC = nats.aio.client.Client
S = TaskStatus
WORKER_DIR = Path(__file__).resolve().parents[2] / "examples" / "js-worker"
NPM_CI_TIMEOUT_S = 300
MIN_NODE = (20, 3)  # AbortSignal.any
# Beats every second; a killed worker would be noticed within 3 s.
LIVENESS = {"liveness": {"heartbeat_window_s": 3}}


@pytest.fixture(scope="module")
def node() -> str:
    """The node executable, with the worker's dependencies installed."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node (Node.js >= 20.3) is not installed: the JavaScript worker cannot run")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=False)
    found = tuple(int(n) for n in re.findall(r"\d+", version.stdout)[:2])
    if found < MIN_NODE:
        pytest.skip(f"node {version.stdout.strip()} is older than the worker needs (20.3)")
    if not (WORKER_DIR / "node_modules" / "@nats-io" / "jetstream").is_dir():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("examples/js-worker/node_modules is missing and npm is not installed")
        try:
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--prefix", str(WORKER_DIR)],
                capture_output=True,
                text=True,
                timeout=NPM_CI_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            pytest.skip(f"npm ci in examples/js-worker took over {NPM_CI_TIMEOUT_S} s")
        if done.returncode != 0:
            pytest.skip(f"npm ci in examples/js-worker failed: {done.stderr.strip()[-500:]}")
    return node


@asynccontextmanager
async def js_worker(
    node: str, nats_url: str, agent_id: str, log: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    """worker.js serving ``agent_id`` as a child process (killed at the end if still running),
    its output appended to ``log``."""
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            node,
            str(WORKER_DIR / "worker.js"),
            "--agent-id",
            agent_id,
            "--nats",
            nats_url,
            stdout=out,
            stderr=out,
        )
        try:
            yield proc
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def started_agent(client: OrchestratorClient, name: str) -> str:
    agent = await client.create_agent(
        CreateAgent(name=name, type="word-counter", project_id="js-worker", configuration=LIVENESS)
    )
    await client.start_agent(agent.agent_id)
    return str(agent.agent_id)


def output(log: Path) -> str:
    """What the worker printed so far."""
    return log.read_text()


async def logged(log: Path, text: str, within: float = 20.0) -> None:
    """Wait for the worker to print ``text``."""
    try:
        async with asyncio.timeout(within):
            while text not in output(log):
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"the worker never printed {text!r}:\n{output(log)}") from None


async def test_the_js_worker_beats_runs_a_task_and_receives_a_message(
    nc: NC, client: OrchestratorClient, servers: ServerUrls, node: str, tmp_path: Path
) -> None:
    agent_id = await started_agent(client, "js counter")
    sender_id = await started_agent(client, "js sender")
    log = tmp_path / "worker.log"
    async with js_worker(node, servers.nats_url, agent_id, log) as proc:
        await logged(log, f"agent {agent_id} is served by worker")

        # Its heartbeat: the agent's key in agent_heartbeats, with the window as Nats-TTL.
        beat = await nc.jetstream().get_msg(
            "KV_agent_heartbeats", subject=subjects.heartbeat_subject(agent_id), direct=True
        )
        assert beat.headers is not None
        assert beat.headers["Nats-TTL"] in ("3s", "3")
        value = json.loads(beat.data or b"")
        assert value["by"] == "worker"
        assert isinstance(value["worker"], str)
        async with asyncio.timeout(10):
            while (await client.get_agent(agent_id)).last_heartbeat_at is None:
                await asyncio.sleep(0.1)

        task = await client.execute(agent_id, {"text": "to be or not to be"})
        done = await client.wait_for_task(task.task_id, timeout=20)
        assert (done.status, done.result, done.attempts, done.progress) == (
            S.SUCCEEDED,
            {"words": 6},
            1,
            100,
        )
        await logged(log, f"task {task.task_id} (attempt 1): 6 words")

        sent = await client.send(sender_id, agent_id, content={"text": "hello js"}, type="notice")
        async with asyncio.timeout(20):
            while (
                message := await client.get_communication(sent.communication_id)
            ).status is CommunicationStatus.SENT:
                await asyncio.sleep(0.1)
        assert message.status is CommunicationStatus.DELIVERED
        await logged(log, f'message {sent.communication_id} from {sender_id} (notice): {{"text"')

        # Three beats later the agent is still ACTIVE: the worker keeps its key alive.
        await asyncio.sleep(3.5)
        assert (await client.get_agent(agent_id)).status is AgentStatus.ACTIVE

        await client.change(subjects.AGENT_TERMINATE, agent_id)
        assert await asyncio.wait_for(proc.wait(), 30) == 0, output(log)
    await logged(log, f"agent {agent_id} was terminated; bye")
    js = nc.jetstream()
    await wait_for_events(js, subjects.event_subject(agent_id, "task_succeeded"), 1)
    events = await read_events(js, subjects.event_subject(agent_id, "*"))
    kinds = [e.envelope["type"] for e in events if e.envelope["type"].startswith("task_")]
    assert kinds == ["task_queued", "task_started", "task_succeeded"]


async def test_the_js_worker_stops_a_cancelled_task(
    client: OrchestratorClient, servers: ServerUrls, node: str, tmp_path: Path
) -> None:
    agent_id = await started_agent(client, "js canceller")
    log = tmp_path / "worker.log"
    async with js_worker(node, servers.nats_url, agent_id, log):
        await logged(log, f"agent {agent_id} is served by worker")
        task = await client.execute(
            agent_id, {"text": "one two three four five six"}, parameters={"seconds_per_word": 1}
        )
        await client.wait_for_task(task.task_id, S.RUNNING, timeout=15)
        cancelled = await client.request(
            subjects.TASK_CANCEL, {"task_id": str(task.task_id), "reason": "enough"}, Task
        )
        assert cancelled.status is S.CANCELLED
        # It hears of it at its next report (a conflict reply) and drops the attempt.
        await logged(log, f"task {task.task_id} (attempt 1) was cancelled")
    after = await client.get_task(task.task_id)
    assert (after.status, after.result, after.status_reason) == (S.CANCELLED, None, "enough")


async def test_the_agent_of_a_killed_js_worker_loses_its_heartbeat(
    client: OrchestratorClient, servers: ServerUrls, node: str, tmp_path: Path
) -> None:
    agent_id = await started_agent(client, "js mortal")
    log = tmp_path / "worker.log"
    async with js_worker(node, servers.nats_url, agent_id, log) as proc:
        await logged(log, f"agent {agent_id} is served by worker")
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    # Its key expires by the Nats-TTL the worker set (3 s), and the service notices.
    async with asyncio.timeout(20):
        while (agent := await client.get_agent(agent_id)).status is AgentStatus.ACTIVE:
            await asyncio.sleep(0.2)
    assert (agent.status, agent.status_reason) == (AgentStatus.ERROR, "heartbeat_lost")
