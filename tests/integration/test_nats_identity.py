"""The production layout on a real nats-server: tenants and agents isolated by NATS itself.

nats-server runs the accounts ``agent-orchestrator credentials`` generates: the service's
account, projects ``acme`` and ``beta`` importing the commands with ``share: true``, and a
worker user per agent. Every attack of issue 22 fails, and the same call by the rightful
identity works.
"""

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import nats
import nats.aio.client
import nats.errors
import pytest
import pytest_asyncio
from synadia_ai.agents import Agents, DiscoverFilter, Query, ResponseChunk, StatusChunk

from agent_orchestrator.client import AgentWorker, OrchestratorClient, ServiceUnavailable, TaskRun
from agent_orchestrator.contracts import subjects
from agent_orchestrator.contracts.subjects import heartbeat_subject
from agent_orchestrator.runtime import EmbeddedNats, EmbeddedPostgres
from agent_orchestrator.runtime.nats_accounts import (
    Credentials,
    project_operator,
    server_config,
    url,
)
from agent_orchestrator.service import Service
from agent_orchestrator.settings import Settings
from tests.support.calls import Reply, call, ok
from tests.support.polling import eventually

NC = nats.aio.client.Client
ACME, BETA = "acme", "beta"


@dataclass
class Layout:
    """The servers, the credentials and a way to connect as anybody."""

    nats: EmbeddedNats
    credentials: Credentials
    service: Service

    def url(self, account: str, user: str) -> str:
        host = self.nats.url.removeprefix("nats://")
        return url(self.credentials, account, user, host)

    async def connect(self, account: str, user: str) -> NC:
        return await nats.connect(self.url(account, user), allow_reconnect=False)

    def add_workers(self, *agents: tuple[str, str]) -> None:
        """Give agents worker users and have the running server read them."""
        self.credentials.add(agents=agents)
        self.nats.extra_config = server_config(self.credentials)
        self.nats.write_config()
        self.nats.reload()


@pytest_asyncio.fixture(scope="module")
async def layout(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Layout]:
    tmp = tmp_path_factory.mktemp("secure")
    credentials = Credentials()
    credentials.add(projects=[ACME, BETA])
    server = EmbeddedNats(tmp)
    server.extra_config = server_config(credentials)
    server.start()
    postgres = EmbeddedPostgres(tmp, extra_args=("-c", "fsync=off"))
    try:
        database_url = postgres.start()
        try:
            host = server.url.removeprefix("nats://")
            service = Service(
                Settings(
                    nats_url=url(credentials, credentials.service_account, "service", host),
                    database_url=database_url,
                    nats_service_account=credentials.service_account,
                    init_job_ack_wait_s=2.0,
                    outbox_sweep_s=0.5,
                    task_heartbeat_s=2.0,
                )
            )
            await service.start()
            try:
                yield Layout(server, credentials, service)
            finally:
                await service.stop()
        finally:
            postgres.stop()
    finally:
        server.stop()


@pytest_asyncio.fixture(scope="module")
async def acme(layout: Layout) -> AsyncIterator[NC]:
    nc = await layout.connect(ACME, project_operator(ACME))
    yield nc
    await nc.close()


@pytest_asyncio.fixture(scope="module")
async def beta(layout: Layout) -> AsyncIterator[NC]:
    nc = await layout.connect(BETA, project_operator(BETA))
    yield nc
    await nc.close()


@pytest_asyncio.fixture(scope="module")
async def ops(layout: Layout) -> AsyncIterator[NC]:
    nc = await layout.connect(layout.credentials.service_account, "operator")
    yield nc
    await nc.close()


async def active_agent(nc: NC, name: str = "a") -> str:
    agent = await ok(nc, "agent.create", {"name": name, "type": "t"})
    await ok(nc, "agent.initialize", {"agent_id": agent["agent_id"]})
    for _ in range(100):
        status = (await ok(nc, "agent.get", {"agent_id": agent["agent_id"]}))["status"]
        if status == "READY":
            break
        await asyncio.sleep(0.05)
    await ok(nc, "agent.activate", {"agent_id": agent["agent_id"]})
    return str(agent["agent_id"])


def forbidden_or_not_found(reply: Reply) -> None:
    assert reply.error_code in ("forbidden", "not_found"), reply.body


async def test_the_project_is_the_callers_account_whatever_it_claims(acme: NC, beta: NC) -> None:
    forged = {
        "Project-Scope": BETA,
        "Actor": "mallory",
        "Nats-Request-Info": json.dumps({"acc": BETA, "user": "operator-beta"}),
    }
    made = await ok(acme, "agent.create", {"name": "mine", "type": "t"}, headers=forged)
    assert made["project_id"] == ACME
    refused = await call(
        acme, "agent.create", {"name": "x", "type": "t", "project_id": BETA}, headers=forged
    )
    assert refused.error_code == "forbidden"
    # beta cannot see acme's agent, whatever it claims.
    hidden = await call(beta, "agent.get", {"agent_id": made["agent_id"]}, headers=forged)
    assert hidden.error_code == "not_found"
    await ok(acme, "agent.initialize", {"agent_id": made["agent_id"]}, headers=forged)
    history = await ok(acme, "agent.history", {"agent_id": made["agent_id"]})
    actors = {t["actor"] for t in history["items"]}
    assert "mallory" not in actors
    assert f"{ACME}/{project_operator(ACME)}" in actors


async def test_a_tenant_cannot_reach_the_services_streams_or_jetstream_api(
    acme: NC, ops: NC
) -> None:
    agent_id = await active_agent(ops)
    for subject in (
        f"$JS.API.STREAM.PURGE.{subjects.EVENTS_STREAM}",
        f"$JS.API.STREAM.DELETE.{subjects.STATE_BUCKET}",
        f"$JS.API.STREAM.PURGE.KV_{subjects.STATE_BUCKET}",
        "$JS.API.INFO",
        heartbeat_subject(agent_id),
        f"$KV.{subjects.STATE_BUCKET}.{agent_id}",
        f"agent.inbox.{agent_id}",
        f"agent.task.{agent_id}",
    ):
        with pytest.raises((nats.errors.NoRespondersError, nats.errors.TimeoutError)):
            await acme.request(subject, b"{}", timeout=1)


async def test_operators_in_the_services_account_keep_scope_and_actor_headers(ops: NC) -> None:
    project = f"p-{uuid.uuid4()}"
    made = await ok(
        ops,
        "agent.create",
        {"name": "o", "type": "t"},
        headers={"Project-Scope": project, "Actor": "ops-bob"},
    )
    assert made["project_id"] == project


@pytest_asyncio.fixture(scope="module")
async def workers(layout: Layout, acme: NC, beta: NC) -> AsyncIterator[dict[str, Any]]:
    """An ACTIVE agent with a worker in each project, and a second one in acme."""
    a, a2, b = await active_agent(acme), await active_agent(acme), await active_agent(beta)
    layout.add_workers((ACME, a), (ACME, a2), (BETA, b))
    await asyncio.sleep(0.5)  # the reload
    conns = {
        "a": await layout.connect(ACME, f"agent-{a}"),
        "b": await layout.connect(BETA, f"agent-{b}"),
    }
    yield {"a": a, "a2": a2, "b": b, **{f"nc_{k}": v for k, v in conns.items()}}
    for nc in conns.values():
        await nc.close()


async def task_for(nc: NC, agent_id: str) -> str:
    task = await ok(nc, "agent.execute", {"agent_id": agent_id, "input": "work"})
    return str(task["task_id"])


async def test_a_worker_cannot_report_on_another_agents_task(
    workers: dict[str, Any], acme: NC, beta: NC
) -> None:
    worker_a: NC = workers["nc_a"]
    theirs = await task_for(beta, workers["b"])
    neighbours = await task_for(acme, workers["a2"])
    for task_id in (theirs, neighbours):
        for subject, extra in [
            ("task.start", {"attempt": 1}),
            ("task.progress", {"progress": 50}),
            ("task.complete", {"result": "stolen"}),
            ("task.fail", {"error": "sabotage"}),
        ]:
            reply = await call(worker_a, subject, {"task_id": task_id, **extra})
            forbidden_or_not_found(reply)
    assert (await ok(beta, "task.get", {"task_id": theirs}))["status"] == "QUEUED"
    # Its own task: it may.
    own = await task_for(acme, workers["a"])
    started = await ok(worker_a, "task.start", {"task_id": own, "attempt": 1})
    assert started["status"] == "RUNNING"
    done = await ok(worker_a, "task.complete", {"task_id": own, "attempt": 1, "result": 1})
    assert done["status"] == "SUCCEEDED"


async def test_a_worker_cannot_confirm_another_agents_message(
    workers: dict[str, Any], acme: NC
) -> None:
    worker_a: NC = workers["nc_a"]
    to_a2 = await ok(
        acme, "agent.send", {"from_agent_id": workers["a"], "to_agent_id": workers["a2"]}
    )
    refused = await call(
        worker_a, "communication.delivered", {"communication_id": to_a2["communication_id"]}
    )
    assert refused.error_code == "forbidden", refused.body
    to_a = await ok(
        acme, "agent.send", {"from_agent_id": workers["a2"], "to_agent_id": workers["a"]}
    )
    confirmed = await ok(
        worker_a, "communication.delivered", {"communication_id": to_a["communication_id"]}
    )
    assert confirmed["status"] == "DELIVERED"


async def test_a_worker_beats_and_writes_state_for_its_own_agent_only(
    workers: dict[str, Any],
) -> None:
    worker_a: NC = workers["nc_a"]
    js = worker_a.jetstream()
    beat = json.dumps({"by": "worker", "worker": "w", "at": "2026-12-03T00:00:00Z"}).encode()
    ack = await js.publish(heartbeat_subject(workers["a"]), beat)
    assert ack.seq >= 1
    for other in (workers["a2"], workers["b"]):
        with pytest.raises((nats.errors.NoRespondersError, nats.errors.TimeoutError)):
            await worker_a.request(heartbeat_subject(other), beat, timeout=1)
    own = await ok(worker_a, "agent.state.update", {"agent_id": workers["a"], "state": {"k": 1}})
    assert own["state"] == {"k": 1}
    forbidden_or_not_found(
        await call(worker_a, "agent.state.update", {"agent_id": workers["a2"], "state": {"k": 2}})
    )
    forbidden_or_not_found(
        await call(worker_a, "agent.state.update", {"agent_id": workers["b"], "state": {"k": 2}})
    )


async def test_a_worker_may_not_use_lifecycle_or_delete_commands(workers: dict[str, Any]) -> None:
    worker_a: NC = workers["nc_a"]
    for subject in ("agent.terminate", "agent.delete", "agent.pause", "agent.create"):
        # Its user may not even publish there: no reply comes.
        with pytest.raises((nats.errors.NoRespondersError, nats.errors.TimeoutError)):
            await worker_a.request(
                subject, json.dumps({"agent_id": workers["a"]}).encode(), timeout=1
            )


async def test_the_sdk_worker_runs_its_agents_tasks_through_the_accounts(
    workers: dict[str, Any], acme: NC
) -> None:
    worker = AgentWorker(
        workers["nc_a"],
        workers["a"],
        poll_s=0.2,
        api_prefix=subjects.WORKER_JS_API_PREFIX,
    )

    @worker.task
    async def double(run: Any) -> Any:
        return run.input * 2

    running = asyncio.create_task(worker.run())
    try:
        task = await ok(acme, "agent.execute", {"agent_id": workers["a"], "input": 21})
        async with asyncio.timeout(20):
            while True:
                got = await ok(acme, "task.get", {"task_id": task["task_id"]})
                if got["status"] == "SUCCEEDED":
                    break
                await asyncio.sleep(0.1)
        assert got["result"] == 42
    finally:
        worker.stop(cancel_running=True)
        await asyncio.wait_for(running, 15)


async def test_a_worker_follows_its_own_agents_events_only(
    workers: dict[str, Any], acme: NC, beta: NC
) -> None:
    worker_a: NC = workers["nc_a"]
    own = await worker_a.subscribe(f"agent.event.{workers['a']}.*")
    # Another project's agent: never imported into acme's account, so nothing arrives.
    other = await worker_a.subscribe(f"agent.event.{workers['b']}.*")
    # A neighbour in the same project: imported for its own worker only; the permission refuses.
    neighbour = await worker_a.subscribe(f"agent.event.{workers['a2']}.*")
    for nc, agent_id in ((beta, workers["b"]), (acme, workers["a2"]), (acme, workers["a"])):
        await ok(nc, "agent.update", {"agent_id": agent_id, "description": "seen?"})
    seen = []
    while "updated" not in seen:  # earlier tests' events of this agent may come first
        event = json.loads((await own.next_msg(timeout=10)).data)
        assert event["agent_id"] == workers["a"]
        seen.append(event["type"])
    for sub in (other, neighbour):
        with pytest.raises(nats.errors.TimeoutError):
            await sub.next_msg(timeout=1)
    for sub in (own, other, neighbour):
        with contextlib.suppress(nats.errors.Error):
            await sub.unsubscribe()


async def test_a_worker_cannot_pull_another_agents_queues(workers: dict[str, Any]) -> None:
    worker_a: NC = workers["nc_a"]
    for stream, consumer in (
        (subjects.TASKS_STREAM, subjects.task_consumer(workers["b"])),
        (subjects.MESSAGES_STREAM, subjects.inbox_consumer(workers["a2"])),
    ):
        api = subjects.WORKER_JS_API_PREFIX
        for subject in (
            f"{api}.CONSUMER.MSG.NEXT.{stream}.{consumer}",
            f"{api}.CONSUMER.INFO.{stream}.{consumer}",
            f"{api}.CONSUMER.DELETE.{stream}.{consumer}",
            f"$JS.API.CONSUMER.DELETE.{stream}.{consumer}",
        ):
            with pytest.raises((nats.errors.NoRespondersError, nats.errors.TimeoutError)):
                await worker_a.request(subject, b'{"batch": 1}', timeout=1)


async def test_an_operator_of_the_project_may_act_for_its_agents(
    workers: dict[str, Any], acme: NC, beta: NC
) -> None:
    task_id = await task_for(acme, workers["a2"])
    started = await ok(acme, "task.start", {"task_id": task_id, "attempt": 1})
    assert started["status"] == "RUNNING"
    await ok(acme, "agent.state.update", {"agent_id": workers["a2"], "state": {"by": "operator"}})
    # ... but not for another project's.
    theirs = await task_for(beta, workers["b"])
    assert (await call(acme, "task.start", {"task_id": theirs, "attempt": 1})).error_code == (
        "not_found"
    )


async def test_a_worker_sends_without_a_request_only_as_its_own_agent(
    workers: dict[str, Any], acme: NC
) -> None:
    worker_a: NC = workers["nc_a"]
    client = OrchestratorClient(worker_a)
    sent = await client.send_direct(workers["a"], workers["a2"], content="hi")
    stored = await eventually(
        lambda: call(acme, "communication.get", {"communication_id": str(sent)}),
        lambda reply: reply.error_code is None,
        within=10,
        what="the direct message recorded",
    )
    assert stored.body["from_agent_id"] == workers["a"]
    assert stored.body["status"] == "SENT"
    # Posing as another agent, of its project or another: the publish is not even allowed.
    for other in (workers["a2"], workers["b"]):
        with pytest.raises(ServiceUnavailable):
            await OrchestratorClient(worker_a, timeout=1).send_direct(
                other, workers["a"], content="forged"
            )


async def test_an_operator_prompts_an_agent_whose_worker_answers_through_the_accounts(
    layout: Layout, acme: NC
) -> None:
    """The SDK worker's default agent protocol endpoint, under a generated worker user."""
    agent_id = await active_agent(acme, "prompted")
    layout.add_workers((ACME, agent_id))
    await asyncio.sleep(0.5)  # the reload
    worker_nc = await layout.connect(ACME, f"agent-{agent_id}")
    worker = AgentWorker(worker_nc, agent_id, poll_s=0.2, api_prefix=subjects.WORKER_JS_API_PREFIX)

    @worker.task
    async def region(run: TaskRun) -> Any:
        return {"region": await run.ask("eu or us?"), "asked": run.input}

    operator = await layout.connect(ACME, project_operator(ACME))
    agents = Agents(nc=operator)
    running = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(20):
            while not (hits := await agents.discover(filter=DiscoverFilter(session_name=agent_id))):
                await asyncio.sleep(0.2)
        (agent,) = hits
        assert agent.prompt_subject == f"agents.prompt.t.acme.{agent_id}"
        assert await agents.ping(agent.instance_id)
        chunks: list[Any] = []
        async for msg in agent.prompt("where?"):
            chunks.append(msg)
            if isinstance(msg, Query):
                await msg.reply("eu")
        assert [c.status for c in chunks if isinstance(c, StatusChunk)][-1] == "done"
        (answer,) = [json.loads(c.text) for c in chunks if isinstance(c, ResponseChunk)]
        assert answer == {"region": "eu", "asked": {"text": "where?"}}
        async with asyncio.timeout(10):  # the status reads the worker's beat from the bucket
            while (status := await agent.status()).extras.get("worker") != worker.worker_id:
                await asyncio.sleep(0.2)
        assert status.extras["status"] == "ACTIVE"
    finally:
        worker.stop(cancel_running=True)
        await asyncio.wait_for(running, 15)
        await agents.close()
        await operator.close()
        await worker_nc.close()
        await ok(acme, "agent.terminate", {"agent_id": agent_id})


async def test_a_worker_cannot_take_prompts_beat_or_execute_for_another_agent(
    workers: dict[str, Any], acme: NC
) -> None:
    worker_a: NC = workers["nc_a"]
    neighbour = workers["a2"]
    prompts = f"agents.prompt.t.acme.{neighbour}"
    stolen = await worker_a.subscribe(prompts, queue="agents")
    beats = await acme.subscribe(f"agents.hb.*.acme.{neighbour}")
    await worker_a.publish(f"agents.hb.t.acme.{neighbour}", b'{"agent": "t"}')
    with pytest.raises((nats.errors.NoRespondersError, nats.errors.TimeoutError)):
        await acme.request(prompts, b"hello", timeout=1)
    # Nor may a worker prompt anybody, itself included.
    with pytest.raises((nats.errors.NoRespondersError, nats.errors.TimeoutError)):
        await worker_a.request(f"agents.prompt.t.acme.{workers['a']}", b"hello", timeout=1)
    for sub in (stolen, beats):
        with pytest.raises(nats.errors.TimeoutError):
            await sub.next_msg(timeout=0.5)
        with contextlib.suppress(nats.errors.Error):
            await sub.unsubscribe()
    refused = await call(worker_a, "agent.execute", {"agent_id": neighbour, "input": "x"})
    assert refused.error_code == "forbidden", refused.body
    forbidden_or_not_found(
        await call(worker_a, "agent.execute", {"agent_id": workers["b"], "input": "x"})
    )
    theirs = await task_for(acme, neighbour)
    for subject, extra in (("task.provide_input", {"input": "eu"}), ("task.get", {})):
        reply = await call(worker_a, subject, {"task_id": theirs, **extra})
        assert reply.error_code == "forbidden", reply.body
    await ok(acme, "task.cancel", {"task_id": theirs})
