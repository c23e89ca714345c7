"""The durable initialization job: INITIALIZING -> READY, or ERROR with the reason.

agent.initialize commits the move to INITIALIZING together with a job message (via the outbox)
on stream AGENT_JOBS. A pull loop fetches up to ``batch`` jobs at a time from the durable
consumer shared by all instances and prepares those agents concurrently, so their reads and
their moves to READY share the group read and the group commit (one statement for the whole
batch). Each job is acknowledged only when its agent has reached READY or ERROR, so a service
killed mid-way leaves the job to be redelivered to any instance after ``ack_wait``.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

import nats.aio.client
from nats.aio.msg import Msg
from pydantic import ValidationError

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
from agent_orchestrator.handlers.pull_loop import PullLoop
from agent_orchestrator.handlers.recovery import Recovery
from agent_orchestrator.storage.agents import AgentRepository
from agent_orchestrator.storage.templates import TemplateRepository

log = logging.getLogger(__name__)

ACTOR = "initializer"
MAX_RETRY_DELAY_S = 30.0
DEFAULT_BATCH = 200

InitializationStep = Callable[[Agent], Awaitable[None]]
"""One idempotent preparation step; raises InitializationFailed for a permanent failure.
Steps of different agents run concurrently (a fetched batch at a time)."""


class Initializer:
    """The durable job that prepares INITIALIZING agents, a fetched batch at a time, from the
    durable consumer shared by all instances.

    A step that keeps failing moves the agent to ERROR after ``max_attempts``; a dependency
    that is down only postpones the job (with growing delays), however long it stays down.
    Each job of a batch has its own outcome: one agent's failure neither holds back nor
    redelivers the others. A job that carries a recovery plan also carries it out (see
    ``handlers.recovery``).
    """

    def __init__(
        self,
        *,
        agents: AgentRepository,
        steps: Sequence[InitializationStep],
        max_attempts: int,
        recovery: Recovery,
        batch: int = DEFAULT_BATCH,
    ) -> None:
        self._agents = agents
        self._steps = tuple(steps)
        self._max_attempts = max_attempts
        self._recovery = recovery
        self._loop = PullLoop(
            "initializer",
            subjects.JOBS_STREAM,
            subjects.INITIALIZE_JOB_CONSUMER,
            batch=batch,
            handle=self.initialize_batch,
        )

    def stop(self) -> None:
        """Make ``run`` return after the current batch."""
        self._loop.stop()

    async def run(self, nc: nats.aio.client.Client) -> None:
        """Prepare agents until stopped; NATS trouble is waited out."""
        await self._loop.run(nc)

    async def initialize_batch(self, msgs: Sequence[Msg]) -> None:
        """Prepare the agents of ``msgs`` concurrently; each message is acked or nak'ed on its
        own."""
        await asyncio.gather(*(self.initialize(msg) for msg in msgs))

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

    async def initialize(self, msg: Msg) -> None:
        """Run one job: ack when its agent is READY or ERROR (or gone, or moved on), nak with
        a growing delay while it should be tried again."""
        try:
            job = InitializeJob.model_validate_json(msg.data)
        except ValidationError:
            log.error("dropping a malformed initialization job: %r", msg.data[:200])
            await msg.term()
            return
        attempt = msg.metadata.num_delivered or 1
        try:
            await self._prepare(job)
        except NotFound:
            pass
        except Unavailable as exc:
            log.warning(
                "initialization of %s postponed: a dependency is down (%s)",
                job.agent_id,
                str(exc.__cause__ or exc),
            )
            await msg.nak(delay=min(MAX_RETRY_DELAY_S, float(attempt)))
            return
        except Exception as exc:
            if attempt < self._max_attempts:
                log.exception("initialization of %s failed (attempt %d)", job.agent_id, attempt)
                await msg.nak(delay=min(MAX_RETRY_DELAY_S, float(attempt)))
                return
            try:
                await self.finish(
                    job,
                    AgentStatus.ERROR,
                    f"initialization failed after {attempt} attempts: {exc!r}"[:2000],
                )
            except Exception:
                log.exception("initialization of %s could not record ERROR", job.agent_id)
                await msg.nak(delay=MAX_RETRY_DELAY_S)
                return
        await msg.ack()

    async def _prepare(self, job: InitializeJob) -> None:
        """The steps, then READY (ERROR when a step fails for good); raises to retry."""
        agent = await self._agents.get(job.agent_id)
        if agent.status is not AgentStatus.INITIALIZING or agent.version != job.version:
            # The agent moved on (terminated, re-initialized, deleted), or this job was
            # redelivered after READY: a recovery may still owe its activation.
            await self._recovery.after_ready(job)
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
