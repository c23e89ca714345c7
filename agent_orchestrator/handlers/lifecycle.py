"""agent.status / initialize / activate / pause / terminate / history."""

import contextlib

from agent_orchestrator.contracts import subjects
from agent_orchestrator.contracts.agents import (
    Agent,
    AgentStatus,
    ChangeStatus,
    GetHistory,
    LifecycleCommand,
    TransitionPage,
)
from agent_orchestrator.domain.agents import Change, transition_agent
from agent_orchestrator.domain.cursor import decode_cursor, split_page, version_number
from agent_orchestrator.domain.errors import Conflict, Unavailable
from agent_orchestrator.handlers.agent_consumers import AgentConsumers, affects_consumers
from agent_orchestrator.handlers.agent_writes import change_agent
from agent_orchestrator.handlers.commands import CommandContext, CommandServer, Handler
from agent_orchestrator.storage.agents import AgentRepository
from agent_orchestrator.storage.schedules import CheckpointSchedules

LIFECYCLE_COMMANDS = {
    subjects.AGENT_INITIALIZE: (
        AgentStatus.INITIALIZING,
        "Start initialization (CREATED, READY or ERROR); a background job then moves the "
        "agent to READY, or to ERROR with the reason.",
    ),
    subjects.AGENT_ACTIVATE: (AgentStatus.ACTIVE, "Activate a READY or PAUSED agent."),
    subjects.AGENT_PAUSE: (AgentStatus.PAUSED, "Pause an ACTIVE agent."),
    subjects.AGENT_TERMINATE: (AgentStatus.TERMINATED, "Terminate an agent; this is final."),
}


def register_lifecycle_commands(
    server: CommandServer,
    agents: AgentRepository,
    schedules: CheckpointSchedules,
    consumers: AgentConsumers,
) -> None:
    """Serve the lifecycle subjects."""

    async def move(
        body: ChangeStatus | LifecycleCommand, target: AgentStatus, ctx: CommandContext
    ) -> Agent:
        before: list[AgentStatus] = []

        def decide(agent: Agent) -> Change:
            before[:] = [agent.status]
            return transition_agent(
                agent,
                target,
                reason=body.reason,
                actor=ctx.actor,
                expected_version=body.expected_version,
                now=ctx.now,
            )

        agent = await change_agent(agents, body.agent_id, decide, idempotency=ctx.idempotency_for)
        if before and affects_consumers(before[0], agent.status):
            # Before replying, so no message reaches an agent its caller was told is PAUSED.
            # Should this fail, the consumer keeper job does it from the event.
            with contextlib.suppress(Unavailable, Conflict):
                await consumers.sync(agent.agent_id)
        if agent.status is AgentStatus.TERMINATED:
            # Also done by the scheduled job itself, should this fail now.
            with contextlib.suppress(Unavailable):
                await schedules.cancel(str(agent.agent_id))
        return agent

    @server.serve(
        subjects.AGENT_STATUS,
        ChangeStatus,
        Agent,
        mutating=True,
        description="Move an agent to any status the transition table allows.",
    )
    async def change_status(body: ChangeStatus, ctx: CommandContext) -> Agent:
        return await move(body, body.status, ctx)

    def move_to(target: AgentStatus) -> Handler[LifecycleCommand]:
        async def handler(body: LifecycleCommand, ctx: CommandContext) -> Agent:
            return await move(body, target, ctx)

        handler.__name__ = f"move_to_{target.lower()}"
        return handler

    for subject, (target, description) in LIFECYCLE_COMMANDS.items():
        serve = server.serve(
            subject, LifecycleCommand, Agent, mutating=True, description=description
        )
        serve(move_to(target))

    @server.serve(
        subjects.AGENT_HISTORY,
        GetHistory,
        TransitionPage,
        mutating=False,
        description="An agent's transitions, oldest first.",
    )
    async def history(body: GetHistory, ctx: CommandContext) -> TransitionPage:
        after = decode_cursor(body.cursor, "after", version_number) if body.cursor else 0
        fetched = await agents.history(body.agent_id, limit=body.limit + 1, after=after)
        items, next_cursor = split_page(fetched, body.limit, "after", lambda t: t.version)
        return TransitionPage(items=items, next_cursor=next_cursor)
