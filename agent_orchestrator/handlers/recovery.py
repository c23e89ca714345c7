"""agent.recover, and what a recovery does once its agent is initialized again.

A recovery moves an ERROR agent to INITIALIZING with a :class:`RecoveryPlan` in its durable
initialization job. The job runs the usual preparation, then (here) restores the latest
recoverable checkpoint (or the one asked for), gives up the RUNNING tasks of the lost worker (a
retry while attempts are left, else TIMED_OUT), moves the agent to READY and, if asked, ACTIVE.
Every step is recorded with the plan's actor: the caller, or ``recovery-policy``.
"""

import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from uuid import UUID

from agent_orchestrator.contracts import subjects
from agent_orchestrator.contracts.agents import Agent, AgentStatus
from agent_orchestrator.contracts.jobs import InitializeJob
from agent_orchestrator.contracts.liveness import RecoverAgent, RecoveryPlan, RecoveryTarget
from agent_orchestrator.contracts.tasks import TaskStatus
from agent_orchestrator.domain import tasks as task_rules
from agent_orchestrator.domain.agents import AgentRef, Change, transition_agent
from agent_orchestrator.domain.errors import (
    Conflict,
    InitializationFailed,
    InvalidTransition,
    NotFound,
)
from agent_orchestrator.handlers.agent_writes import change_agent
from agent_orchestrator.handlers.checkpoints import Checkpointer
from agent_orchestrator.handlers.commands import CommandContext, command
from agent_orchestrator.handlers.tasks import change_task
from agent_orchestrator.storage.agents import AgentRepository
from agent_orchestrator.storage.atomic import IdempotencyRecord
from agent_orchestrator.storage.tasks import TaskRepository

BATCH = 500


class Recovery:
    """Starts recoveries and carries out their plans."""

    def __init__(
        self,
        agents: AgentRepository,
        tasks: TaskRepository,
        checkpointer: Checkpointer,
        on_active: Callable[[Agent], Awaitable[None]],
        *,
        max_state_bytes: int,
    ) -> None:
        self._agents = agents
        self._tasks = tasks
        self._checkpointer = checkpointer
        self._on_active = on_active
        self._max_state_bytes = max_state_bytes

    async def start(
        self,
        agent_id: UUID,
        plan: RecoveryPlan,
        *,
        reason: str | None,
        expected_version: int | None = None,
        idempotency: Callable[[Agent], IdempotencyRecord | None] = lambda _: None,
    ) -> Agent:
        """ERROR -> INITIALIZING, with the plan in the initialization job."""

        def decide(agent: Agent) -> Change:
            if agent.status is not AgentStatus.ERROR:
                raise InvalidTransition(
                    f"only an ERROR agent can be recovered; this one is {agent.status}",
                    details={"status": agent.status},
                )
            return transition_agent(
                agent,
                AgentStatus.INITIALIZING,
                reason=reason or "recovery",
                actor=plan.actor,
                expected_version=expected_version,
                now=datetime.now(UTC),
            )

        return await change_agent(
            self._agents,
            agent_id,
            decide,
            idempotency=idempotency,
            recovery=plan,
        )

    async def before_ready(self, agent: Agent, plan: RecoveryPlan) -> None:
        """Restore the checkpoint and give up the lost worker's RUNNING tasks."""
        now = datetime.now(UTC)
        if plan.restore:
            try:
                await self._checkpointer.restore(
                    agent,
                    plan.checkpoint_id,
                    actor=plan.actor,
                    now=now,
                    max_state_bytes=self._max_state_bytes,
                )
            except NotFound as exc:
                if plan.checkpoint_id is not None:
                    raise InitializationFailed(exc.message) from exc
                # No recoverable checkpoint: the state stays as it is.
        ref = AgentRef.of(agent)
        reason = "its agent was recovered"
        for stored in await self._tasks.open_tasks_of(agent.agent_id, limit=BATCH):
            if stored.task.status is TaskStatus.RUNNING:
                with contextlib.suppress(Conflict):
                    await change_task(
                        self._tasks,
                        stored.task.task_id,
                        lambda s: task_rules.give_up(s.task, reason, ref, datetime.now(UTC)),
                    )

    async def after_ready(self, job: InitializeJob) -> None:
        """READY -> ACTIVE when the plan asks for it (armed for liveness like any
        activation)."""
        plan = job.recovery
        if plan is None or plan.target is not RecoveryTarget.ACTIVE:
            return
        try:
            agent = await change_agent(
                self._agents,
                job.agent_id,
                lambda agent: transition_agent(
                    agent,
                    AgentStatus.ACTIVE,
                    reason="recovered",
                    actor=plan.actor,
                    expected_version=job.version + 1,  # READY, as the job left it
                    now=datetime.now(UTC),
                ),
            )
        except (Conflict, InvalidTransition, NotFound):
            return  # somebody moved it on meanwhile
        await self._on_active(agent)


class RecoverCommands:
    """agent.recover."""

    def __init__(self, *, recovery: Recovery) -> None:
        self._recovery = recovery

    @command(
        subjects.AGENT_RECOVER,
        RecoverAgent,
        Agent,
        mutating=True,
        description="Recover an ERROR agent: INITIALIZING at once; a durable job then restores "
        "its latest recoverable checkpoint (or checkpoint_id), gives up its RUNNING tasks "
        "(retry or TIMED_OUT), and moves it to READY, then ACTIVE unless target is READY.",
    )
    async def recover(self, body: RecoverAgent, ctx: CommandContext) -> Agent:
        plan = RecoveryPlan(
            checkpoint_id=body.checkpoint_id,
            restore=body.restore,
            target=body.target,
            actor=ctx.actor,
        )
        return await self._recovery.start(
            body.agent_id,
            plan,
            reason=body.reason,
            expected_version=body.expected_version,
            idempotency=ctx.idempotency_for,
        )
