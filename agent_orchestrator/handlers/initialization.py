"""The durable initialization job: INITIALIZING -> READY, or ERROR with the reason.

agent.initialize commits the move to INITIALIZING together with a job message (via the outbox)
on stream AGENT_JOBS. This pull consumer runs the preparation steps and acknowledges only when
the agent has reached READY or ERROR, so a service killed mid-way leaves the job to be
redelivered to any instance after ``ack_wait``.
"""

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from faststream.nats import NatsMessage

from agent_orchestrator.contracts import subjects
from agent_orchestrator.contracts.agents import Agent, AgentStatus
from agent_orchestrator.contracts.jobs import InitializeJob
from agent_orchestrator.domain.agents import transition_agent
from agent_orchestrator.domain.errors import (
    Conflict,
    InitializationFailed,
    InvalidTransition,
    NotFound,
    Unavailable,
    ValidationFailed,
)
from agent_orchestrator.domain.templates import validate_configuration
from agent_orchestrator.handlers.agent_writes import change_agent
from agent_orchestrator.handlers.jobs import job as durable_job
from agent_orchestrator.handlers.recovery import Recovery
from agent_orchestrator.storage.agents import AgentRepository
from agent_orchestrator.storage.templates import TemplateRepository

log = logging.getLogger(__name__)

ACTOR = "initializer"
MAX_RETRY_DELAY_S = 30.0

InitializationStep = Callable[[Agent], Awaitable[None]]
"""One idempotent preparation step; raises InitializationFailed for a permanent failure."""


class Initializer:
    """The durable job that prepares INITIALIZING agents, from the durable consumer shared by
    all instances.

    A step that keeps failing moves the agent to ERROR after ``max_attempts``; a dependency
    that is down only postpones the job (with growing delays), however long it stays down.
    A job that carries a recovery plan also carries it out (see ``handlers.recovery``).
    """

    def __init__(
        self,
        *,
        agents: AgentRepository,
        steps: Sequence[InitializationStep],
        max_attempts: int,
        recovery: Recovery,
    ) -> None:
        self._agents = agents
        self._steps = tuple(steps)
        self._max_attempts = max_attempts
        self._recovery = recovery

    async def finish(self, job: InitializeJob, target: AgentStatus, reason: str) -> None:
        """Move the agent the job prepared to ``target`` (READY or ERROR), unless it moved on."""
        try:
            await change_agent(
                self._agents,
                job.agent_id,
                lambda agent: transition_agent(
                    agent,
                    target,
                    reason=reason,
                    actor=job.recovery.actor if job.recovery else ACTOR,
                    expected_version=job.version,
                    now=datetime.now(UTC),
                ),
            )
        except (NotFound, Conflict, InvalidTransition):
            log.info("agent %s moved on before initialization finished", job.agent_id)

    @durable_job(
        subjects.initialize_job_subject("*"),
        stream=subjects.JOBS_STREAM,
        durable=subjects.INITIALIZE_JOB_CONSUMER,
        title="agent.job.initialize",
        description="Durable job: prepare an INITIALIZING agent, then READY or ERROR.",
    )
    async def initialize_agent(self, job: InitializeJob, msg: NatsMessage) -> None:
        attempt = msg.raw_message.metadata.num_delivered or 1
        try:
            agent = await self._agents.get(job.agent_id)
            if agent.status is not AgentStatus.INITIALIZING or agent.version != job.version:
                # The agent moved on (terminated, re-initialized, deleted), or this job was
                # redelivered after READY: a recovery may still owe its activation.
                await self._recovery.after_ready(job)
                await msg.ack()
                return
            try:
                for step in self._steps:
                    await step(agent)
                if job.recovery is not None:
                    await self._recovery.before_ready(agent, job.recovery)
            except InitializationFailed as exc:
                await self.finish(job, AgentStatus.ERROR, f"initialization failed: {exc.message}")
            else:
                reason = "recovered" if job.recovery else "initialized"
                await self.finish(job, AgentStatus.READY, reason)
                await self._recovery.after_ready(job)
        except NotFound:
            pass
        except Unavailable as exc:
            log.warning(
                "initialization of %s postponed: a dependency is down (%s)",
                job.agent_id,
                str(exc.__cause__ or exc),
            )
            await msg.nack(delay=min(MAX_RETRY_DELAY_S, float(attempt)))
            return
        except Exception as exc:
            if attempt < self._max_attempts:
                log.exception("initialization of %s failed (attempt %d)", job.agent_id, attempt)
                await msg.nack(delay=min(MAX_RETRY_DELAY_S, float(attempt)))
                return
            await self.finish(
                job,
                AgentStatus.ERROR,
                f"initialization failed after {attempt} attempts: {exc!r}"[:2000],
            )
        await msg.ack()


def standard_steps(templates: TemplateRepository) -> list[InitializationStep]:
    """What initialization always does before any steps a deployment adds. (An agent's inbox
    and task queue need no preparation: they are subjects of shared streams, read by the
    consumer its worker creates when it runs.)"""

    async def check_configuration(agent: Agent) -> None:
        """The configuration must still satisfy the agent's template version."""
        if agent.template_id is None or agent.template_version is None:
            return
        try:
            template = await templates.get(agent.template_id, agent.template_version)
        except NotFound as exc:
            raise InitializationFailed(exc.message) from exc
        try:
            validate_configuration(
                template.config_schema, agent.configuration, field="configuration"
            )
        except ValidationFailed as exc:
            paths = ", ".join(d["path"] for d in exc.details)
            raise InitializationFailed(f"{exc.message} ({paths})") from exc

    return [check_configuration]
