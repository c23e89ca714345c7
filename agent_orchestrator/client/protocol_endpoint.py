"""Our agent as an agent of Synadia's NATS agent protocol (v0.3), served by its own program.

    endpoint = ProtocolEndpoint(nc, agent_id)
    await endpoint.run()      # AgentWorker.run does this for you (protocol=True)

While the agent is ACTIVE, the program registers a NATS micro service ``agents`` (metadata
``agent`` = type, ``owner`` = project, ``session`` = agent id, ``protocol_version`` 0.3) with
the ``prompt`` and ``status`` endpoints (queue group ``agents``) and beats on ``agents.hb.…`` at
the cadence of its own heartbeats (a third of the agent's heartbeat window). When the agent
leaves ACTIVE (its lifecycle events say so; the agent is read again every minute in case an
event was missed) the service is removed, so ``$SRV.PING agents`` no longer finds it; when the
program stops or dies, its connection takes the service with it.

The registration lives in the program, not in agent-orchestrator, so discovery costs scale with
running programs and are spread over their processes (see docs/agent-protocol.md).
"""

import asyncio
import contextlib
import json
import logging
from datetime import UTC, datetime
from uuid import UUID

import nats.aio.client
import nats.errors
from nats.aio.msg import Msg
from nats.js.kv import KeyValue
from nats.micro import add_service
from nats.micro.request import Request
from nats.micro.service import EndpointConfig, Service, ServiceConfig

from agent_orchestrator import __version__
from agent_orchestrator.client.errors import RequestFailed, ServiceUnavailable
from agent_orchestrator.client.protocol_prompt import PromptStream
from agent_orchestrator.client.requests import OrchestratorClient
from agent_orchestrator.contracts import agent_protocol as wire
from agent_orchestrator.contracts.agents import Agent, AgentStatus
from agent_orchestrator.contracts.liveness import Heartbeat, LivenessPolicy
from agent_orchestrator.contracts.subjects import (
    DEFAULT_JS_API_PREFIX,
    HEARTBEATS_BUCKET,
    HEARTBEATS_STREAM,
    event_subject,
)

__all__ = ["ProtocolEndpoint"]

log = logging.getLogger(__name__)

RESYNC_S = 60.0
#: Task events that arrive before ``agent.execute`` has answered are kept this many.
EARLY_EVENTS = 256


class ProtocolEndpoint:
    """Registers and serves one agent on the NATS agent protocol (see the module docstring)."""

    def __init__(
        self,
        nc: nats.aio.client.Client,
        agent_id: UUID | str,
        *,
        client: OrchestratorClient,
        api_prefix: str | None = None,
    ) -> None:
        """``api_prefix``: where the JetStream API is reached (as ``AgentWorker``'s)."""
        self.nc = nc
        self._heartbeats = KeyValue(
            name=HEARTBEATS_BUCKET,
            stream=HEARTBEATS_STREAM,
            pre=f"$KV.{HEARTBEATS_BUCKET}.",
            js=nc.jetstream(prefix=api_prefix or DEFAULT_JS_API_PREFIX),
            direct=True,  # the bucket is declared so; no stream lookup a worker may not do
        )
        self.agent_id = UUID(str(agent_id))
        self.client = client
        self.service: Service | None = None
        self._agent: Agent | None = None
        self._changed = asyncio.Event()
        self._stopped = False
        self._streams: dict[str, PromptStream] = {}
        self._starting = 0
        self._early: list[dict[str, object]] = []
        self._prompts: set[asyncio.Task[None]] = set()

    @property
    def subject_tokens(self) -> tuple[str, str, str]:
        """``(agent, owner, session_name)`` of the agent (after the first read)."""
        if self._agent is None:
            raise RuntimeError("the agent is not read yet")
        agent = self._agent
        return wire.agent_token(agent.type), wire.owner_token(agent.project_id), str(agent.agent_id)

    def stop(self) -> None:
        """Make ``run`` remove the service and return."""
        self._stopped = True
        self._changed.set()

    async def run(self) -> None:
        """Follow the agent's status until stopped or the agent is gone."""
        events = await self.nc.subscribe(event_subject(str(self.agent_id), "*"), cb=self._on_event)
        beating: asyncio.Task[None] | None = None
        try:
            while not self._stopped:
                try:
                    self._agent = await self.client.get_agent(self.agent_id)
                except RequestFailed:
                    return  # deleted
                except ServiceUnavailable as exc:
                    log.warning("protocol endpoint of %s: %s", self.agent_id, exc)
                if self._agent is not None:
                    active = self._agent.status is AgentStatus.ACTIVE
                    if active and self.service is None:
                        await self._register(self._agent)
                        beating = asyncio.create_task(self._beat(self._agent))
                    elif not active and self.service is not None:
                        await _cancelled(beating)
                        beating = None
                        await self._unregister()
                    if self._agent.status is AgentStatus.TERMINATED:
                        return
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), RESYNC_S)
        finally:
            await _cancelled(beating)
            await self._unregister()
            with contextlib.suppress(nats.errors.Error):
                await events.unsubscribe()
            for prompt in list(self._prompts):
                prompt.cancel()

    async def _register(self, agent: Agent) -> None:
        name, owner, session = self.subject_tokens
        self.service = await add_service(
            self.nc,
            ServiceConfig(
                name=wire.SERVICE_NAME,
                version=__version__,
                description=f"{agent.name} ({agent.type}) on agent-orchestrator",
                metadata={
                    "agent": name,
                    "owner": owner,
                    "session": session,
                    "protocol_version": wire.PROTOCOL_VERSION,
                    "agent_id": str(agent.agent_id),
                    "name": agent.name,
                },
            ),
        )
        endpoints = (
            (wire.PROMPT_ENDPOINT, self._on_prompt, self._prompt_metadata()),
            (wire.STATUS_ENDPOINT, self._on_status, None),
        )
        for endpoint, handler, metadata in endpoints:
            await self.service.add_endpoint(
                EndpointConfig(
                    name=endpoint,
                    subject=wire.subject(endpoint, name, owner, session),
                    handler=handler,
                    queue_group=wire.QUEUE_GROUP,
                    metadata=metadata,
                )
            )
        await self.nc.flush()
        log.info("agent %s speaks the NATS agent protocol as %s", agent.agent_id, self.service.id)

    async def _unregister(self) -> None:
        if self.service is None:
            return
        service, self.service = self.service, None
        with contextlib.suppress(nats.errors.Error, RuntimeError):
            await service.stop()

    def _prompt_metadata(self) -> dict[str, str]:
        return {"max_payload": f"{self.nc.max_payload}B", "attachments_ok": "true"}

    def _interval_s(self, agent: Agent) -> int:
        """Our beat cadence: a third of the heartbeat window (at least a second)."""
        return max(1, LivenessPolicy.of(agent.configuration).heartbeat_window_s // 3)

    def _heartbeat(self, agent: Agent, ts: datetime, **extra: object) -> bytes:
        name, owner, session = self.subject_tokens
        service = self.service
        payload = wire.HeartbeatPayload(
            agent=name,
            owner=owner,
            session=session,
            instance_id=service.id if service is not None else "",
            ts=ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
            interval_s=self._interval_s(agent),
            protocol_version=wire.PROTOCOL_VERSION,
            agent_id=str(agent.agent_id),
            endpoints={
                wire.PROMPT_ENDPOINT: {
                    "subject": wire.subject(wire.PROMPT_ENDPOINT, name, owner, session),
                    "metadata": {
                        "max_payload": f"{self.nc.max_payload}B",
                        "attachments_ok": "true",
                    },
                }
            },
            **extra,
        )
        return payload.model_dump_json(exclude_none=True).encode()

    async def _beat(self, agent: Agent) -> None:
        """Heartbeats on ``agents.hb.…`` at the cadence of ours."""
        name, owner, session = self.subject_tokens
        hb_subject = wire.subject("hb", name, owner, session)
        while True:
            with contextlib.suppress(nats.errors.Error):
                await self.nc.publish(hb_subject, self._heartbeat(agent, datetime.now(UTC)))
            await asyncio.sleep(self._interval_s(agent))

    async def _on_status(self, request: Request) -> None:
        """A heartbeat payload from our liveness data: the last beat of the agent's worker
        (``ts``), its status and the worker that beat."""
        agent = self._agent
        if agent is None:
            await request.respond_error("503", "not ready")
            return
        beat = await self._last_beat()
        ts = beat.at if beat is not None else datetime.now(UTC)
        await request.respond(
            self._heartbeat(
                agent,
                ts,
                status=agent.status.value,
                worker=beat.worker if beat is not None else None,
            )
        )

    async def _last_beat(self) -> Heartbeat | None:
        try:
            entry = await self._heartbeats.get(str(self.agent_id))
        except (nats.errors.Error, nats.js.errors.Error):
            return None
        return Heartbeat.model_validate_json(entry.value) if entry.value else None

    async def _on_prompt(self, request: Request) -> None:
        # The endpoint awaits its handler per request: serve each prompt in a task of its own.
        prompt = asyncio.create_task(self._serve(request))
        self._prompts.add(prompt)
        prompt.add_done_callback(self._prompts.discard)

    async def _serve(self, request: Request) -> None:
        stream = PromptStream(self.nc, self.client, self.agent_id, request)
        self._starting += 1
        try:
            task = await stream.start()
        finally:
            self._starting -= 1
        if task is None:
            await request.respond(wire.END)
            return
        key = str(task.task_id)
        self._streams[key] = stream
        for event in [e for e in self._early if _task_of(e) == key]:
            stream.events.put_nowait(event)
        try:
            await stream.serve(task)
        except Exception:
            log.exception("prompt of agent %s (task %s) failed", self.agent_id, key)
        finally:
            del self._streams[key]

    async def _on_event(self, msg: Msg) -> None:
        kind = msg.subject.rsplit(".", 1)[-1]
        if kind in _LIFECYCLE:
            self._changed.set()
            return
        if not kind.startswith("task_"):
            return
        try:
            event = json.loads(msg.data)
        except ValueError:
            return
        stream = self._streams.get(_task_of(event) or "")
        if stream is not None:
            stream.events.put_nowait(event)
        elif self._starting:
            self._early = [*self._early[-EARLY_EVENTS + 1 :], event]


_LIFECYCLE = {
    "active",
    "paused",
    "ready",
    "error",
    "initializing",
    "terminated",
    "deleted",
    "updated",
}


def _task_of(event: dict[str, object]) -> str | None:
    data = event.get("data")
    return str(data.get("task_id")) if isinstance(data, dict) else None


async def _cancelled(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
