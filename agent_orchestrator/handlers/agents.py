"""agent.create / get / list / update / delete."""

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from uuid import UUID

from agent_orchestrator.contracts import subjects
from agent_orchestrator.contracts.agents import (
    Agent,
    AgentCounts,
    AgentDeleted,
    AgentPage,
    AgentStatus,
    CountAgents,
    CreateAgent,
    DeleteAgent,
    GetAgent,
    ListAgents,
    UpdateAgent,
)
from agent_orchestrator.contracts.checkpoints import Checkpoint
from agent_orchestrator.contracts.templates import Template
from agent_orchestrator.domain import agents as rules
from agent_orchestrator.domain.cursor import decode_cursor, split_page
from agent_orchestrator.domain.errors import Unavailable
from agent_orchestrator.handlers.agent_writes import MAX_ATTEMPTS, change_agent, outbox_for
from agent_orchestrator.handlers.checkpoints import Checkpointer
from agent_orchestrator.handlers.commands import CommandContext, command
from agent_orchestrator.handlers.retry import retry_on_conflict
from agent_orchestrator.storage.agents import AgentFilter, AgentRepository
from agent_orchestrator.storage.atomic import OutboxMessage
from agent_orchestrator.storage.heartbeats import Heartbeats
from agent_orchestrator.storage.schedules import CheckpointSchedules
from agent_orchestrator.storage.state import StateStore
from agent_orchestrator.storage.templates import TemplateRepository

log = logging.getLogger(__name__)


class AgentCommands:
    """agent.create / get / list / update / delete."""

    def __init__(
        self,
        *,
        agents: AgentRepository,
        templates: TemplateRepository,
        states: StateStore,
        checkpointer: Checkpointer,
        schedules: CheckpointSchedules,
        heartbeats: Heartbeats,
    ) -> None:
        self._agents = agents
        self._templates = templates
        self._states = states
        self._checkpointer = checkpointer
        self._schedules = schedules
        self._heartbeats = heartbeats

    async def with_heartbeats(self, found: list[Agent]) -> list[Agent]:
        """The agents with when their workers last beat (as they are, should that fail)."""
        try:
            beats = await self._heartbeats.worker_beats([a.agent_id for a in found])
        except Unavailable:
            return found
        return [a.model_copy(update={"last_heartbeat_at": beats.get(a.agent_id)}) for a in found]

    async def template_of(self, agent: Agent) -> Template | None:
        """The template version the agent was made from, if any."""
        if agent.template_id is None or agent.template_version is None:
            return None
        return await self._templates.get(agent.template_id, agent.template_version)

    @command(
        subjects.AGENT_CREATE,
        CreateAgent,
        Agent,
        mutating=True,
        description="Create an agent in status CREATED.",
    )
    async def create_agent(self, body: CreateAgent, ctx: CommandContext) -> Agent:
        template = None
        if body.template_id is not None:
            template = await self._templates.get(body.template_id, body.template_version)
        change = rules.create_agent(body, template=template, actor=ctx.actor, now=ctx.now)
        await self._agents.insert(
            change, outbox=outbox_for(change), idempotency=ctx.idempotency_for(change.agent)
        )
        return change.agent

    @command(subjects.AGENT_GET, GetAgent, Agent, mutating=False, description="Read one agent.")
    async def get_agent(self, body: GetAgent, ctx: CommandContext) -> Agent:
        [agent] = await self.with_heartbeats([await self._agents.get(body.agent_id)])
        return agent

    @command(
        subjects.AGENT_LIST,
        ListAgents,
        AgentPage,
        mutating=False,
        description="List agents newest first; filter by project, status, type, template.",
    )
    async def list_agents(self, body: ListAgents, ctx: CommandContext) -> AgentPage:
        before = decode_cursor(body.cursor, "before", UUID) if body.cursor else None
        where = AgentFilter(body.project_id, body.status, body.type, body.template_id, body.name)
        fetched = await self._agents.page(where, limit=body.limit + 1, before=before)
        items, next_cursor = split_page(fetched, body.limit, "before", lambda a: str(a.agent_id))
        return AgentPage(items=await self.with_heartbeats(items), next_cursor=next_cursor)

    @command(
        subjects.AGENT_COUNT,
        CountAgents,
        AgentCounts,
        mutating=False,
        description="Count agents by status (by template version too, given template_id).",
    )
    async def count_agents(self, body: CountAgents, ctx: CommandContext) -> AgentCounts:
        where = AgentFilter(body.project_id, None, body.type, body.template_id, body.name)
        by_status: dict[AgentStatus, int] = {}
        by_version: dict[str, int] = {}
        for status, version, n in await self._agents.counts(where):
            by_status[status] = by_status.get(status, 0) + n
            if body.template_id is not None and version is not None:
                by_version[str(version)] = by_version.get(str(version), 0) + n
        return AgentCounts(
            total=sum(by_status.values()), by_status=by_status, by_template_version=by_version
        )

    @command(
        subjects.AGENT_UPDATE,
        UpdateAgent,
        Agent,
        mutating=True,
        description="Change name, description, configuration, prompt_template or metadata.",
    )
    async def update_agent(self, body: UpdateAgent, ctx: CommandContext) -> Agent:
        template = None
        if body.configuration is not None:
            template = await self.template_of(await self._agents.get(body.agent_id))
        return await change_agent(
            self._agents,
            body.agent_id,
            lambda agent: rules.update_agent(agent, body, template=template, now=ctx.now),
            idempotency=ctx.idempotency_for,
        )

    @command(
        subjects.AGENT_DELETE,
        DeleteAgent,
        AgentDeleted,
        mutating=True,
        description="Delete an agent and its history.",
    )
    async def delete_agent(self, body: DeleteAgent, ctx: CommandContext) -> AgentDeleted:
        reply = AgentDeleted(agent_id=body.agent_id, deleted=True)

        async def attempt() -> Agent | None:
            agent = await self._agents.get(body.agent_id)
            # Checkpoint rows go with the agent; their bytes and schedule are removed after.
            snapshots = await self._checkpointer.checkpoints.all_of(agent.agent_id)
            event = rules.delete_agent(
                agent, actor=ctx.actor, expected_version=body.expected_version, now=ctx.now
            )
            deleted = await self._agents.delete(
                agent.agent_id,
                previous_version=agent.version,
                outbox=[OutboxMessage.for_event(event)],
                idempotency=ctx.idempotency_for(reply),
            )
            if deleted:
                await self._clean_up(agent, snapshots)
            return agent if deleted else None

        await retry_on_conflict(MAX_ATTEMPTS, attempt, what=f"agent {body.agent_id}")
        return reply

    async def _clean_up(self, agent: Agent, snapshots: list[Checkpoint]) -> None:
        """Remove what a deleted agent left outside PostgreSQL, each part on its own: one that
        fails must not skip the others."""
        cleanups: dict[str, Callable[[], Awaitable[None]]] = {
            "checkpoint schedule": partial(self._schedules.cancel, str(agent.agent_id)),
            "state": partial(self._states.purge, agent.agent_id),
            "checkpoint snapshots": partial(self._checkpointer.blobs.delete, snapshots),
            "heartbeat key": partial(self._heartbeats.forget, agent.agent_id),
            # What waits for it in AGENT_MESSAGES / AGENT_TASKS: the cleanup job, from the
            # deleted event.
        }
        for what, cleanup in cleanups.items():
            try:
                await cleanup()
            except Unavailable:
                log.warning("%s of deleted agent %s remains", what, agent.agent_id)
