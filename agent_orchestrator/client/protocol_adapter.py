"""Agents of the NATS agent protocol working for agent-orchestrator (adoption).

An adopted agent is an agent of ours whose ``metadata.protocol_agent`` names a protocol agent
``{agent, owner, session_name}``; :func:`adopt` finds one by discovery and creates it
(type = ``agent``, project = ``owner``, name = ``session_name``) and starts it, and a plain
``agent.create`` with that metadata does the same by hand. The :class:`ProtocolAdapter` (run by
every service instance) then:

- listens to ``agents.hb.*.*.*``: each heartbeat of an adopted agent is written as our heartbeat
  (KV ``agent_heartbeats``, ``by: protocol``) with the protocol's liveness rule as its time to
  live (3 x ``interval_s``), so silence ends in ``heartbeat_lost`` as for our own workers;
- runs an :class:`AgentWorker` for each adopted agent it hears of (a heartbeat, or its
  activation) whose task handler is a :class:`ProtocolPrompter`: tasks given through
  ``agent.execute`` go to the agent as prompts.
"""

import asyncio
import contextlib
import json
import logging
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import nats.aio.client
import nats.errors
from nats.aio.msg import Msg

from agent_orchestrator.client.errors import RequestFailed, ServiceUnavailable
from agent_orchestrator.client.protocol_prompter import ProtocolPrompter
from agent_orchestrator.client.requests import OrchestratorClient
from agent_orchestrator.client.worker import AgentWorker
from agent_orchestrator.contracts import agent_protocol as wire
from agent_orchestrator.contracts import subjects
from agent_orchestrator.contracts.agents import (
    Agent,
    AgentPage,
    AgentStatus,
    CreateAgent,
    ListAgents,
)
from agent_orchestrator.contracts.errors import ErrorCode
from agent_orchestrator.contracts.liveness import Heartbeat

__all__ = ["ProtocolAdapter", "adopt", "discover"]

log = logging.getLogger(__name__)

#: How long a heartbeat of an agent that is not adopted is not looked up again (an adoption
#: or activation is heard at once).
UNKNOWN_TTL_S = 60.0
DISCOVERY_WAIT_S = 1.0


async def discover(
    nc: nats.aio.client.Client, wait_s: float = DISCOVERY_WAIT_S
) -> list[dict[str, Any]]:
    """Every ``$SRV.INFO agents`` record answering within ``wait_s``."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    records: list[dict[str, Any]] = []
    try:
        await nc.publish(f"$SRV.INFO.{wire.SERVICE_NAME}", b"", reply=inbox)
        while True:
            try:
                msg = await sub.next_msg(timeout=wait_s)
            except (TimeoutError, nats.errors.TimeoutError):
                return records
            with contextlib.suppress(ValueError):
                record = json.loads(msg.data)
                if isinstance(record, dict):
                    records.append(record)
    finally:
        await sub.unsubscribe()


async def adopt(
    client: OrchestratorClient,
    ref: wire.ProtocolAgentRef,
    *,
    project_id: str | None = None,
    name: str | None = None,
) -> Agent:
    """Find the protocol agent ``ref`` by discovery, create our agent for it and start it.
    RequestFailed(not_found) when no such agent answers."""
    for record in await discover(client.nc):
        if _serves(record, ref):
            break
    else:
        raise RequestFailed(
            ErrorCode.NOT_FOUND, f"no protocol agent answers on {ref.prompt_subject}"
        )
    agent = await client.create_agent(
        CreateAgent(
            name=name or ref.session_name,
            type=ref.agent,
            project_id=project_id or ref.owner,
            description=str(record.get("description") or "") or None,
            metadata={wire.PROTOCOL_AGENT_KEY: ref.model_dump()},
        )
    )
    return await client.start_agent(agent.agent_id)


class ProtocolAdapter:
    """Serves the adopted agents (see the module docstring)."""

    def __init__(self, nc: nats.aio.client.Client, *, poll_s: float = 1.0) -> None:
        self.nc = nc
        self.client = OrchestratorClient(nc, actor="protocol-adapter")
        self._poll_s = poll_s
        self._known: dict[tuple[str, str, str], tuple[UUID | None, float]] = {}
        self._workers: dict[UUID, tuple[AgentWorker, asyncio.Task[None]]] = {}
        self._stopped = asyncio.Event()

    def stop(self) -> None:
        """Make ``run`` return."""
        self._stopped.set()

    async def run(self) -> None:
        """Serve until stopped."""
        beats = await self.nc.subscribe(wire.HEARTBEATS, cb=self._on_heartbeat)
        activations = await self.nc.subscribe(
            subjects.event_subject("*", "active"), cb=self._on_activation
        )
        try:
            await self._stopped.wait()
        finally:
            for sub in (beats, activations):
                with contextlib.suppress(nats.errors.Error):
                    await sub.unsubscribe()
            for worker, running in list(self._workers.values()):
                worker.stop(cancel_running=True)
                running.cancel()

    async def _on_heartbeat(self, msg: Msg) -> None:
        try:
            beat = wire.HeartbeatPayload.model_validate_json(msg.data)
        except ValueError:
            return
        tokens = msg.subject.split(".")[2:]
        if len(tokens) != 3 or wire.AGENT_ID_FIELD in beat.extras:
            return  # one of our own agents (see ProtocolEndpoint)
        agent_id = await self._adopted(tokens[0], tokens[1], tokens[2])
        if agent_id is None:
            return
        mark = Heartbeat(by="protocol", worker=beat.instance_id, at=datetime.now(UTC))
        try:
            await self.nc.jetstream().publish(
                subjects.heartbeat_subject(str(agent_id)),
                mark.model_dump_json().encode(),
                msg_ttl=3 * beat.interval_s,
            )
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("heartbeat of adopted agent %s not written: %r", agent_id, exc)
        self._serve(
            agent_id,
            wire.ProtocolAgentRef(agent=tokens[0], owner=tokens[1], session_name=tokens[2]),
        )

    async def _on_activation(self, msg: Msg) -> None:
        """An adopted agent's `active` event names its protocol agent in ``data`` (other
        agents' events do not): no request per activation."""
        try:
            event = json.loads(msg.data)
            agent_id = UUID(event["agent_id"])
            data = event.get("data")
        except (ValueError, KeyError, TypeError):
            return
        ref = wire.ref_of(data) if isinstance(data, dict) else None
        if ref is not None:
            self._known[(ref.agent, ref.owner, ref.session_name)] = (agent_id, _now())
            self._serve(agent_id, ref)

    async def _adopted(self, agent: str, owner: str, session_name: str) -> UUID | None:
        """Our agent adopted as ``(agent, owner, session_name)``, looked up by agent.list."""
        key = (agent, owner, session_name)
        known = self._known.get(key)
        if known is not None and (known[0] is not None or _now() - known[1] < UNKNOWN_TTL_S):
            return known[0]
        found: UUID | None = None
        cursor = None
        try:
            while found is None:
                body = ListAgents(type=agent, limit=200, cursor=cursor)
                page = await self.client.request(subjects.AGENT_LIST, body, AgentPage)
                for candidate in page.items:
                    ref = wire.ref_of(candidate.metadata)
                    if candidate.status is AgentStatus.TERMINATED:
                        continue
                    if ref is not None and (ref.agent, ref.owner, ref.session_name) == key:
                        found = candidate.agent_id
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
        except (RequestFailed, ServiceUnavailable):
            return None
        self._known[key] = (found, _now())
        return found

    def _serve(self, agent_id: UUID, ref: wire.ProtocolAgentRef) -> None:
        """Run the adapter worker of ``agent_id`` unless it runs already."""
        if agent_id in self._workers or self._stopped.is_set():
            return
        worker = AgentWorker(
            self.nc,
            agent_id,
            client=self.client,
            poll_s=self._poll_s,
            heartbeat=False,
            protocol=False,
        )
        worker.task(ProtocolPrompter(self.nc, ref))
        running = asyncio.create_task(worker.run())
        self._workers[agent_id] = (worker, running)
        running.add_done_callback(lambda done: self._ended(agent_id, done))

    def _ended(self, agent_id: UUID, done: asyncio.Task[None]) -> None:
        self._workers.pop(agent_id, None)
        self._known = {k: v for k, v in self._known.items() if v[0] != agent_id}
        if not done.cancelled() and done.exception() is not None:
            log.warning("adapter of agent %s stopped: %r", agent_id, done.exception())


def _serves(record: dict[str, Any], ref: wire.ProtocolAgentRef) -> bool:
    """Whether a ``$SRV.INFO`` record is the protocol agent ``ref``."""
    metadata = record.get("metadata") or {}
    endpoints = record.get("endpoints") or []
    subjects_served = {e.get("subject") for e in endpoints if e.get("name") == "prompt"}
    return (metadata.get("agent"), metadata.get("owner")) == (ref.agent, ref.owner) and (
        ref.prompt_subject in subjects_served
    )


def _now() -> float:
    return asyncio.get_running_loop().time()
