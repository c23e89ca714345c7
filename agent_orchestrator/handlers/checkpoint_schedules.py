"""agent.checkpoint.schedule, and the durable job that takes each scheduled checkpoint.

nats-server fires the schedule (see ``storage.schedules``); every firing lands once on the
work-queue consumer shared by all instances, so a period yields one checkpoint however many
instances run, and schedules survive restarts of the service.
"""

import logging
from datetime import UTC, datetime

from faststream.nats import NatsMessage

from agent_orchestrator.contracts import subjects
from agent_orchestrator.contracts.agents import AgentStatus
from agent_orchestrator.contracts.checkpoints import Schedule, ScheduleCheckpoints
from agent_orchestrator.domain.errors import NotFound, Unavailable
from agent_orchestrator.domain.lifecycle import check_mutable
from agent_orchestrator.handlers.checkpoints import Checkpointer
from agent_orchestrator.handlers.commands import CommandContext, command
from agent_orchestrator.handlers.jobs import job
from agent_orchestrator.storage.agents import AgentRepository
from agent_orchestrator.storage.schedules import CheckpointSchedules

log = logging.getLogger(__name__)

RETRY_DELAY_S = 1.0


class ScheduleCommands:
    """agent.checkpoint.schedule."""

    def __init__(self, *, agents: AgentRepository, schedules: CheckpointSchedules) -> None:
        self._agents = agents
        self._schedules = schedules

    @command(
        subjects.AGENT_CHECKPOINT_SCHEDULE,
        ScheduleCheckpoints,
        Schedule,
        mutating=True,
        description="Checkpoint every interval_s seconds (or once at a time), keeping the last "
        "keep_last scheduled ones; interval_s 0 cancels. Run by nats-server, so it survives "
        "service restarts and fires once per period with any number of instances.",
    )
    async def schedule_checkpoints(
        self, body: ScheduleCheckpoints, ctx: CommandContext
    ) -> Schedule:
        agent = await self._agents.get(body.agent_id)
        schedule = Schedule(
            agent_id=agent.agent_id,
            active=body.interval_s != 0,
            interval_s=body.interval_s or None,
            at=body.at,
            keep_last=body.keep_last,
            label=body.label,
            recoverable=body.recoverable,
        )
        if not schedule.active:
            await self._schedules.cancel(str(agent.agent_id))
            return schedule
        check_mutable(agent.status)
        await self._schedules.set(schedule)
        return schedule


class CheckpointScheduler:
    """The durable job that takes a checkpoint for every firing of a schedule, and stops the
    schedule of a gone or TERMINATED agent."""

    def __init__(
        self,
        *,
        agents: AgentRepository,
        schedules: CheckpointSchedules,
        checkpointer: Checkpointer,
    ) -> None:
        self._agents = agents
        self._schedules = schedules
        self._checkpointer = checkpointer

    async def take(self, schedule: Schedule) -> None:
        """One firing: checkpoint the agent and prune, or cancel the schedule."""
        agent_id = str(schedule.agent_id)
        now = datetime.now(UTC)
        try:
            agent = await self._agents.get(schedule.agent_id)
        except NotFound:
            await self._schedules.cancel(agent_id)
            return
        if agent.status is AgentStatus.TERMINATED:
            await self._schedules.cancel(agent_id)
            return
        await self._checkpointer.take(
            agent,
            label=schedule.label or "scheduled",
            recoverable=schedule.recoverable,
            scheduled=True,
            now=now,
        )
        if schedule.keep_last:
            await self._checkpointer.prune(agent, schedule.keep_last, now=now)

    @job(
        subjects.scheduled_checkpoint_subject("*"),
        stream=subjects.SCHEDULES_STREAM,
        durable=subjects.CHECKPOINT_SCHEDULER_CONSUMER,
        title="agent.scheduled.checkpoint",
        description="Durable job: one firing of a checkpoint schedule (published by the server).",
    )
    async def take_scheduled_checkpoint(self, schedule: Schedule, msg: NatsMessage) -> None:
        try:
            await self.take(schedule)
        except Unavailable:
            log.warning(
                "scheduled checkpoint of %s postponed: a dependency is down", schedule.agent_id
            )
            await msg.nack(delay=RETRY_DELAY_S)
            return
        await msg.ack()
