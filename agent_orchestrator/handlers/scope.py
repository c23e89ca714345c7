"""Project scope: a request that carries ``Project-Scope`` touches only that project.

The HTTP bridge sets the header for an authenticated caller. Before any handler runs, the
guard checks every id the request names: an agent (``agent_id``, ``from_agent_id``,
``to_agent_id``), a task or a communication of another project is answered exactly as an
unknown one (``not_found``), so callers cannot learn what other projects hold. A project filter
or field naming another project is ``forbidden``; left out, it is set to the scope. A template
belongs to a project or is global: another project's is ``not_found``, a global one may be read
and used but only changed or deleted by an operator (``forbidden``), and a scoped caller's new
templates are its project's. A caller without a scope (an operator) is not restricted. An
agent's worker (see ``handlers.identity``) may use the worker's subjects for its own agent
only: ``forbidden`` otherwise.
"""

from uuid import UUID

from pydantic import BaseModel

from agent_orchestrator.contracts.communications import Communication
from agent_orchestrator.contracts.subjects import (
    COMMUNICATION_DELIVERED,
    TEMPLATE_DELETE,
    TEMPLATE_UPDATE,
    WORKER_COMMANDS,
)
from agent_orchestrator.domain.agents import not_found as agent_not_found
from agent_orchestrator.domain.communications import not_found as communication_not_found
from agent_orchestrator.domain.errors import Forbidden, NotFound
from agent_orchestrator.domain.tasks import not_found as task_not_found
from agent_orchestrator.storage.agents import AgentRepository
from agent_orchestrator.storage.communications import CommunicationRepository
from agent_orchestrator.storage.tasks import TaskRepository
from agent_orchestrator.storage.templates import TemplateRepository

AGENT_FIELDS = ("agent_id", "from_agent_id", "to_agent_id")
# The fields naming the agent a request acts for (a worker's must be its own agent).
ACTING_FIELDS = ("agent_id", "from_agent_id")
TEMPLATE_WRITES = frozenset({TEMPLATE_UPDATE, TEMPLATE_DELETE})


def _not_its_own(worker: UUID, what: str) -> Forbidden:
    return Forbidden(
        f"the worker of agent {worker} may only act for its own agent, not on {what}",
        details={"agent_id": str(worker)},
    )


class ScopeGuard:
    """Checks a request body against a caller's project before its handler runs."""

    def __init__(
        self,
        agents: AgentRepository,
        communications: CommunicationRepository,
        tasks: TaskRepository,
        templates: TemplateRepository,
    ) -> None:
        self._agents = agents
        self._communications = communications
        self._tasks = tasks
        self._templates = templates

    async def check(
        self, body: BaseModel, project: str, subject: str = "", worker: UUID | None = None
    ) -> None:
        """Raise NotFound for what lies outside ``project``; confine project filters to it.

        ``worker``: the caller is that agent's worker, who may use the worker's subjects for
        its own agent only (its tasks, the messages to or from it): ``forbidden`` otherwise.
        """
        if worker is not None and subject not in WORKER_COMMANDS:
            raise Forbidden(
                f"an agent's worker may not use {subject}",
                details={"subject": subject, "agent_id": str(worker)},
            )
        self._confine(body, project)
        template_id = getattr(body, "template_id", None)
        if isinstance(template_id, UUID):
            await self._template_in(template_id, project, writing=subject in TEMPLATE_WRITES)
        for field in AGENT_FIELDS:
            agent_id = getattr(body, field, None)
            if isinstance(agent_id, UUID):
                await self._agent_in(agent_id, project)
                if worker is not None and field in ACTING_FIELDS and agent_id != worker:
                    raise _not_its_own(worker, f"agent {agent_id}")
        task_id = getattr(body, "task_id", None)
        if isinstance(task_id, UUID):
            stored = await self._tasks.find(task_id)
            if stored is None or stored.task.project_id != project:
                raise task_not_found(task_id)
            if worker is not None and stored.task.agent_id != worker:
                raise _not_its_own(worker, f"task {task_id}")
        communication_id = getattr(body, "communication_id", None)
        if isinstance(communication_id, UUID):
            message = await self._communication_in(communication_id, project)
            # A worker confirms only what was sent to its agent, and reads what it sent too.
            parties: tuple[UUID | None, ...] = (message.to_agent_id,)
            if subject != COMMUNICATION_DELIVERED:
                parties = (message.to_agent_id, message.from_agent_id)
            if worker is not None and worker not in parties:
                raise _not_its_own(worker, f"communication {communication_id}")

    @staticmethod
    def _confine(body: BaseModel, project: str) -> None:
        if "project_id" not in type(body).model_fields:
            return
        asked = getattr(body, "project_id", None)
        if asked is None:
            body.project_id = project  # type: ignore[attr-defined]
        elif asked != project:
            raise Forbidden(
                f"this caller may only use project {project!r}",
                details={"project_id": asked, "scope": project},
            )

    async def _template_in(self, template_id: UUID, project: str, *, writing: bool) -> None:
        exists, owner = await self._templates.owner(template_id)
        if not exists or owner not in (None, project):
            raise NotFound(
                f"template {template_id} does not exist",
                details={"template_id": str(template_id)},
            )
        if owner is None and writing:
            raise Forbidden(
                f"template {template_id} is global: only an operator may change or delete it",
                details={"template_id": str(template_id), "scope": project},
            )

    async def _agent_in(self, agent_id: UUID, project: str) -> None:
        agent = await self._agents.get(agent_id)  # NotFound for an unknown one
        if agent.project_id != project:
            raise agent_not_found(agent_id)

    async def _communication_in(self, communication_id: UUID, project: str) -> Communication:
        """A message belongs to its sender's project, and to its recipient's."""
        message = await self._communications.find(communication_id)
        if message is None:
            copies = await self._communications.broadcast_copies(communication_id)
            message = copies[0] if copies else None
        if message is None:
            raise communication_not_found(communication_id)
        if message.project_id == project:
            return message
        try:
            if message.to_agent_id is not None:
                await self._agent_in(message.to_agent_id, project)
                return message
        except NotFound:
            pass
        raise communication_not_found(communication_id)
