"""agent.status / initialize / activate / pause / terminate / history."""

import contextlib
from collections.abc import Awaitable, Callable

from agent_orchestrator.contracts import subjects
from agent_orchestrator.contracts.agents import (
    Agent,
    AgentStatus,
    ChangeStatus,
    GetHistory,
    LifecycleCommand,
    TransitionPage,
)
from agent_orchestrator.domain.agents import transition_agent
from agent_orchestrator.domain.cursor import decode_cursor, split_page, version_number
from agent_orchestrator.domain.errors import Unavailable
from agent_orchestrator.handlers.agent_writes import save_change
from agent_orchestrator.handlers.commands import CommandContext, command
from agent_orchestrator.storage.agents import AgentRepository
from agent_orchestrator.storage.schedules import CheckpointSchedules

OnActive = Callable[[Agent], Awaitable[None]]
"""Runs after a move to ACTIVE, before the reply (the liveness monitor's arming)."""

MoveHandler = Callable[["LifecycleCommands", LifecycleCommand, CommandContext], Awaitable[Agent]]


def _move_to(target: AgentStatus, subject: str, description: str) -> MoveHandler:
    """The handler method of ``subject``: move the agent to ``target``."""

    @command(subject, LifecycleCommand, Agent, mutating=True, description=description)
    async def handler(
        self: "LifecycleCommands", body: LifecycleCommand, ctx: CommandContext
    ) -> Agent:
        return await self.move(body, target, ctx)

    handler.__name__ = f"move_to_{target.lower()}"
    handler.__qualname__ = f"LifecycleCommands.{handler.__name__}"
    return handler


class LifecycleCommands:
    """agent.status / initialize / activate / pause / terminate / history."""

    def __init__(
        self,
        *,
        agents: AgentRepository,
        schedules: CheckpointSchedules,
        on_active: OnActive,
    ) -> None:
        self._agents = agents
        self._schedules = schedules
        self._on_active = on_active

    async def move(
        self, body: ChangeStatus | LifecycleCommand, target: AgentStatus, ctx: CommandContext
    ) -> Agent:
        """Move the agent to ``target``. No JetStream object changes: workers learn the
        status from its event and the service's claim and delivery checks (see
        docs/data-plane.md); a terminated agent's leftovers go in the background."""
        change = await save_change(
            self._agents,
            body.agent_id,
            lambda agent: transition_agent(
                agent,
                target,
                reason=body.reason,
                actor=ctx.actor,
                expected_version=body.expected_version,
                now=ctx.now,
            ),
            idempotency=ctx.idempotency_for,
        )
        agent = change.agent
        if change.transition is not None and agent.status is AgentStatus.ACTIVE:
            with contextlib.suppress(Unavailable):
                await self._on_active(agent)
        if agent.status is AgentStatus.TERMINATED:
            # Also done by the scheduled job itself, should this fail now.
            with contextlib.suppress(Unavailable):
                await self._schedules.cancel(str(agent.agent_id))
        return agent

    @command(
        subjects.AGENT_STATUS,
        ChangeStatus,
        Agent,
        mutating=True,
        description="Move an agent to any status the transition table allows.",
    )
    async def change_status(self, body: ChangeStatus, ctx: CommandContext) -> Agent:
        return await self.move(body, body.status, ctx)

    move_to_initializing = _move_to(
        AgentStatus.INITIALIZING,
        subjects.AGENT_INITIALIZE,
        "Start initialization (CREATED, READY or ERROR); a background job then moves the "
        "agent to READY, or to ERROR with the reason.",
    )
    move_to_active = _move_to(
        AgentStatus.ACTIVE, subjects.AGENT_ACTIVATE, "Activate a READY or PAUSED agent."
    )
    move_to_paused = _move_to(AgentStatus.PAUSED, subjects.AGENT_PAUSE, "Pause an ACTIVE agent.")
    move_to_terminated = _move_to(
        AgentStatus.TERMINATED, subjects.AGENT_TERMINATE, "Terminate an agent; this is final."
    )

    @command(
        subjects.AGENT_HISTORY,
        GetHistory,
        TransitionPage,
        mutating=False,
        description="An agent's transitions, oldest first.",
    )
    async def history(self, body: GetHistory, ctx: CommandContext) -> TransitionPage:
        after = decode_cursor(body.cursor, "after", version_number) if body.cursor else 0
        fetched = await self._agents.history(body.agent_id, limit=body.limit + 1, after=after)
        items, next_cursor = split_page(fetched, body.limit, "after", lambda t: t.version)
        return TransitionPage(items=items, next_cursor=next_cursor)
