"""The liveness monitor: an ACTIVE agent whose heartbeats stop goes to ERROR, and may recover.

Workers write their agent's key in KV bucket ``agent_heartbeats`` with a time to live (see
``storage.heartbeats``). When the key expires, nats-server records a marker in the bucket's
stream; the durable consumer ``liveness-monitor``, shared by all instances, hands each marker
to one of them, which (if the agent is still ACTIVE and nothing beat since) moves the agent
to ERROR with reason ``heartbeat_lost`` (actor ``liveness-monitor``) and, when the agent's
recovery policy is automatic, starts a recovery (actor ``recovery-policy``). More losses than
the policy's ``max_attempts`` within its ``window_s`` end in ERROR with ``recovery_exhausted``.

Markers wait in the stream while no instance runs, so a loss during an outage is handled
when the service is back. Only agents that had a worker are watched: when an agent becomes
ACTIVE, a grace beat (``by: orchestrator``) is written only if its key shows a lost worker, or
its liveness policy says ``require_heartbeat``.
"""

import contextlib
import logging
from datetime import UTC, datetime, timedelta
from uuid import UUID

import nats.aio.client
import nats.errors
from nats.aio.msg import Msg

from agent_orchestrator.contracts.agents import Agent, AgentStatus
from agent_orchestrator.contracts.liveness import (
    HEARTBEAT_LOST,
    Heartbeat,
    LivenessPolicy,
    RecoveryPlan,
    RecoveryPolicy,
)
from agent_orchestrator.contracts.subjects import HEARTBEATS_STREAM, LIVENESS_MONITOR_CONSUMER
from agent_orchestrator.domain.agents import transition_agent
from agent_orchestrator.domain.errors import Conflict, InvalidTransition, NotFound, Unavailable
from agent_orchestrator.domain.liveness import (
    LIVENESS_MONITOR,
    RECOVERY_POLICY,
    on_heartbeat_lost,
)
from agent_orchestrator.handlers.agent_writes import change_agent
from agent_orchestrator.handlers.pull_loop import RETRY_DELAY_S, PullLoop
from agent_orchestrator.handlers.recovery import Recovery
from agent_orchestrator.storage.agents import AgentRepository
from agent_orchestrator.storage.heartbeats import (
    Heartbeats,
    agent_of,
    is_expiry_marker,
)

log = logging.getLogger(__name__)

BATCH = 256


async def arm(heartbeats: Heartbeats, agent: Agent) -> None:
    """On activation: expect a worker's heartbeat within the activation grace if the agent had
    a worker that is gone (or its policy requires one), by writing a grace beat that expires
    like a worker's."""
    policy = LivenessPolicy.of(agent.configuration)
    latest = await heartbeats.latest(agent.agent_id)
    if latest is not None and latest.heartbeat is not None:
        return  # something beats already
    if latest is None and not policy.require_heartbeat:
        return  # never had a worker: not watched
    grace = Heartbeat(by="orchestrator", at=datetime.now(UTC))
    await heartbeats.beat(agent.agent_id, grace, policy.grace_s)


class LivenessMonitor:
    """Reads the heartbeat bucket's stream through the shared durable consumer."""

    def __init__(
        self,
        agents: AgentRepository,
        heartbeats: Heartbeats,
        recovery: Recovery,
    ) -> None:
        self._agents = agents
        self._heartbeats = heartbeats
        self._recovery = recovery
        self._loop = PullLoop(
            "liveness monitor",
            HEARTBEATS_STREAM,
            LIVENESS_MONITOR_CONSUMER,
            batch=BATCH,
            handle=self._handle_batch,
        )

    def stop(self) -> None:
        """Make ``run`` return after the current batch."""
        self._loop.stop()

    async def run(self, nc: nats.aio.client.Client) -> None:
        """Handle markers until stopped; NATS trouble is waited out."""
        await self._loop.run(nc)

    async def _handle_batch(self, msgs: list[Msg]) -> None:
        for msg in msgs:
            await self._handle(msg)

    async def _handle(self, msg: Msg) -> None:
        agent_id = agent_of(msg.subject)
        if agent_id is None or not is_expiry_marker(msg.headers):
            await msg.ack()  # a heartbeat: nothing to do
            return
        try:
            await self.lost(agent_id, msg.metadata.timestamp, msg.metadata.sequence.stream)
        except (Unavailable, Conflict) as exc:
            log.warning("loss of %s not handled yet (%s); retrying", agent_id, exc)
            await msg.nak(delay=RETRY_DELAY_S)
            return
        await msg.ack()

    async def lost(self, agent_id: UUID, lost_at: datetime, marker_seq: int) -> None:
        """The heartbeats of ``agent_id`` stopped at ``lost_at`` (marker ``marker_seq``)."""
        try:
            agent = await self._agents.get(agent_id)
        except NotFound:
            return
        if agent.status is AgentStatus.ACTIVE:
            if not await self._still_lost(agent, lost_at, marker_seq):
                return
            agent = await self._to_error(agent)
        if agent.status is AgentStatus.ERROR and agent.status_reason == HEARTBEAT_LOST:
            await self._recover(agent)

    async def _still_lost(self, agent: Agent, lost_at: datetime, marker_seq: int) -> bool:
        latest = await self._heartbeats.latest(agent.agent_id)
        if latest is not None and latest.seq > marker_seq:
            return False  # it beats again (a new worker, or the grace beat of an activation)
        changed = await self._agents.last_transition_at(agent.agent_id)
        return changed is None or changed <= lost_at  # not re-activated since

    async def _to_error(self, agent: Agent) -> Agent:
        policy = RecoveryPolicy.of(agent.configuration)
        since = datetime.now(UTC) - timedelta(seconds=policy.window_s)
        recent = await self._agents.transitions_since(
            agent.agent_id,
            to_status=AgentStatus.INITIALIZING,
            actor=RECOVERY_POLICY,
            since=since,
        )
        outcome = on_heartbeat_lost(policy, recent)
        try:
            errored = await change_agent(
                self._agents,
                agent.agent_id,
                lambda current: transition_agent(
                    current,
                    AgentStatus.ERROR,
                    reason=outcome.reason,
                    actor=LIVENESS_MONITOR,
                    expected_version=agent.version,
                    now=datetime.now(UTC),
                ),
            )
        except (InvalidTransition, NotFound):
            return agent
        log.info("agent %s: %s", agent.agent_id, outcome.reason)
        return errored

    async def _recover(self, agent: Agent) -> None:
        policy = RecoveryPolicy.of(agent.configuration)
        if not policy.automatic:
            return
        plan = RecoveryPlan(restore=policy.restore, target=policy.target, actor=RECOVERY_POLICY)
        with contextlib.suppress(InvalidTransition, NotFound):
            await self._recovery.start(
                agent.agent_id,
                plan,
                reason="automatic recovery after heartbeat_lost",
                expected_version=agent.version,
            )
