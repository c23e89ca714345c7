"""In-memory stand-ins for the repositories and stores a command area takes, for unit tests.

Each keeps what it was given in plain dicts and lists, with the same compare-and-set rules as
the real one, so a test can build an area and call a handler method without any server.
"""

import asyncio
from collections import Counter
from datetime import datetime
from typing import Any
from uuid import UUID

from agent_orchestrator.contracts.agents import Agent, AgentStatus
from agent_orchestrator.contracts.tasks import Task, TaskPolicy, TaskStatus
from agent_orchestrator.contracts.templates import Template, TemplateEvent
from agent_orchestrator.domain.agents import AgentRef, Change, not_found
from agent_orchestrator.domain.errors import NotFound
from agent_orchestrator.domain.tasks import TaskChange
from agent_orchestrator.domain.tasks import not_found as task_not_found
from agent_orchestrator.storage.agents import AgentFilter
from agent_orchestrator.storage.atomic import IdempotencyRecord, OutboxMessage
from agent_orchestrator.storage.tasks import StoredTask, TaskWrite


class FakeAgents:
    """Agents by id; ``save`` refuses a stale ``previous_version`` like the SQL does."""

    def __init__(self) -> None:
        self.rows: dict[UUID, Agent] = {}
        self.outbox: list[OutboxMessage] = []
        self.lost_races = 0  # how many next saves lose to a concurrent writer

    async def get(self, agent_id: UUID) -> Agent:
        if agent_id not in self.rows:
            raise not_found(agent_id)
        return self.rows[agent_id]

    async def counts(self, where: AgentFilter) -> list[tuple[AgentStatus, int | None, int]]:
        """As the SQL: agents matching ``where`` (status ignored) by status and version."""
        found = Counter(
            (a.status, a.template_version)
            for a in self.rows.values()
            if where.project_id in (None, a.project_id)
            and where.type in (None, a.type)
            and where.template_id in (None, a.template_id)
            and (where.name is None or where.name.lower() in a.name.lower())
        )
        return [(status, version, n) for (status, version), n in found.items()]

    async def insert(
        self,
        change: Change,
        *,
        outbox: list[OutboxMessage],
        idempotency: IdempotencyRecord | None = None,
    ) -> None:
        self.rows[change.agent.agent_id] = change.agent
        self.outbox.extend(outbox)

    async def save(
        self,
        change: Change,
        *,
        previous_version: int,
        outbox: list[OutboxMessage],
        idempotency: IdempotencyRecord | None = None,
    ) -> bool:
        if self.lost_races:
            self.lost_races -= 1
            return False
        current = self.rows.get(change.agent.agent_id)
        if current is None or current.version != previous_version:
            return False
        self.rows[change.agent.agent_id] = change.agent
        self.outbox.extend(outbox)
        return True


class FakeTemplates:
    """Template versions by (id, version)."""

    def __init__(self) -> None:
        self.versions: dict[tuple[UUID, int], Template] = {}
        self.events: list[TemplateEvent] = []

    async def get(self, template_id: UUID, version: int | None = None) -> Template:
        found = [t for (tid, _), t in self.versions.items() if tid == template_id]
        if version is not None:
            found = [t for t in found if t.version == version]
        if not found:
            raise NotFound(f"template {template_id} does not exist")
        return max(found, key=lambda t: t.version)

    async def insert(
        self, template: Template, event: TemplateEvent, idempotency: IdempotencyRecord | None
    ) -> None:
        self.versions[(template.template_id, template.version)] = template
        self.events.append(event)


class FakeHeartbeats:
    """When each agent's worker last beat."""

    def __init__(self) -> None:
        self.beats: dict[UUID, Any] = {}

    async def worker_beats(self, agent_ids: list[UUID]) -> dict[UUID, Any]:
        return {a: self.beats[a] for a in agent_ids if a in self.beats}


class Recorder:
    """Records the calls of the methods a test names, e.g. ``Recorder("sync", "cancel")``."""

    def __init__(self, *methods: str) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        for name in methods:
            setattr(self, name, self._recording(name))

    def _recording(self, name: str) -> Any:
        async def record(*args: Any) -> None:
            self.calls.append((name, args))

        return record


class FakeTasks:
    """Tasks by id with their revision; ``save`` refuses a stale revision like the SQL does.
    Each read and write yields to the event loop first, so concurrent callers interleave."""

    def __init__(self, agents: FakeAgents) -> None:
        self.agents = agents
        self.rows: dict[UUID, tuple[Task, int]] = {}
        self.outbox: list[OutboxMessage] = []
        self.stale_saves = 0  # saves refused because another writer came first

    async def insert(self, change: TaskChange, *, idempotency: IdempotencyRecord | None) -> bool:
        await asyncio.sleep(0)
        self.rows[change.task.task_id] = (change.task, 1)
        self._record(change)
        return True

    async def insert_write(self, write: TaskWrite) -> bool:
        return await self.insert(write.change, idempotency=write.idempotency)

    async def get(self, task_id: UUID) -> StoredTask:
        await asyncio.sleep(0)
        if task_id not in self.rows:
            raise task_not_found(task_id)
        task, revision = self.rows[task_id]
        agent = self.agents.rows[task.agent_id]
        limit = TaskPolicy.of(agent.configuration).max_concurrent_tasks
        return StoredTask(task, revision, AgentRef.of(agent), limit)

    async def save(
        self,
        change: TaskChange,
        *,
        revision: int,
        taken: bool = False,
        idempotency: IdempotencyRecord | None = None,
    ) -> bool:
        await asyncio.sleep(0)
        current = self.rows.get(change.task.task_id)
        if current is None or current[1] != revision:
            self.stale_saves += 1
            return False
        self.rows[change.task.task_id] = (change.task, revision + 1)
        self._record(change)
        return True

    async def busy_count(self, agent_id: UUID) -> int:
        busy = (TaskStatus.RUNNING, TaskStatus.INPUT_REQUIRED)
        return sum(t.agent_id == agent_id and t.status in busy for t, _ in self.rows.values())

    async def overdue(self, now: datetime, *, limit: int) -> list[StoredTask]:
        due = (TaskStatus.RUNNING, TaskStatus.INPUT_REQUIRED)
        found = [
            task_id
            for task_id, (t, _) in self.rows.items()
            if t.status in due and t.deadline_at is not None and t.deadline_at <= now
        ]
        return [await self.get(task_id) for task_id in found[:limit]]

    def _record(self, change: TaskChange) -> None:
        if change.event is not None:
            self.outbox.append(OutboxMessage.for_event(change.event))
