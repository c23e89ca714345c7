"""Writing an agent change: optimistic concurrency, events and jobs in one statement."""

from collections.abc import Callable
from uuid import UUID

from agent_orchestrator.contracts.agents import Agent, AgentStatus
from agent_orchestrator.contracts.jobs import InitializeJob
from agent_orchestrator.contracts.liveness import RecoveryPlan
from agent_orchestrator.contracts.subjects import initialize_job_subject
from agent_orchestrator.domain.agents import Change
from agent_orchestrator.domain.ids import new_id
from agent_orchestrator.handlers.retry import retry_on_conflict
from agent_orchestrator.storage.agents import AgentRepository
from agent_orchestrator.storage.atomic import IdempotencyRecord, OutboxMessage

MAX_ATTEMPTS = 8


def outbox_for(change: Change, recovery: RecoveryPlan | None = None) -> list[OutboxMessage]:
    """The events of a change, plus the initialization job when it enters INITIALIZING (a
    recovery when ``recovery`` says what to do after)."""
    messages = [OutboxMessage.for_event(event) for event in change.events]
    entered = change.transition.to_status if change.transition else None
    if entered is AgentStatus.INITIALIZING:
        job = InitializeJob(
            job_id=new_id(),
            agent_id=change.agent.agent_id,
            version=change.agent.version,
            recovery=recovery,
        )
        messages.append(
            OutboxMessage(
                job.job_id,
                initialize_job_subject(str(job.agent_id)),
                job.model_dump_json().encode(),
            )
        )
    return messages


async def save_change(
    agents: AgentRepository,
    agent_id: UUID,
    decide: Callable[[Agent], Change | None],
    *,
    idempotency: Callable[[Agent], IdempotencyRecord | None] = lambda _: None,
    recovery: RecoveryPlan | None = None,
) -> Change:
    """Load, decide, save if nobody changed the agent meanwhile; re-decide when somebody did.

    ``decide`` raises for a refused change and returns None when nothing would change (then the
    result is a Change without transition or events). A caller's ``expected_version`` is
    checked by ``decide``, so a lost race with one becomes ``conflict``.
    """

    async def attempt() -> Change | None:
        agent = await agents.get(agent_id)
        change = decide(agent)
        if change is None:
            return Change(agent)
        saved = await agents.save(
            change,
            previous_version=agent.version,
            outbox=outbox_for(change, recovery),
            idempotency=idempotency(change.agent),
        )
        return change if saved else None

    return await retry_on_conflict(MAX_ATTEMPTS, attempt, what=f"agent {agent_id}")


async def change_agent(
    agents: AgentRepository,
    agent_id: UUID,
    decide: Callable[[Agent], Change | None],
    *,
    idempotency: Callable[[Agent], IdempotencyRecord | None] = lambda _: None,
    recovery: RecoveryPlan | None = None,
) -> Agent:
    """The agent after :func:`save_change`."""
    change = await save_change(agents, agent_id, decide, idempotency=idempotency, recovery=recovery)
    return change.agent
