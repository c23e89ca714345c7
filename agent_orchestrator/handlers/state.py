"""agent.state.get / update / history: runtime state in KV with compare-and-set."""

from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

from agent_orchestrator.contracts import subjects
from agent_orchestrator.contracts.events import Event, EventKind
from agent_orchestrator.contracts.limits import MAX_STATE_SETTING, Limit
from agent_orchestrator.contracts.state import (
    AgentState,
    GetState,
    StateHistory,
    StateHistoryRequest,
    StateMode,
    StateRevision,
    UpdateState,
)
from agent_orchestrator.domain.agents import new_event, revision_event
from agent_orchestrator.domain.errors import Conflict, PayloadTooLarge
from agent_orchestrator.domain.lifecycle import check_mutable
from agent_orchestrator.domain.merge import merge_patch
from agent_orchestrator.handlers.commands import CommandContext, command
from agent_orchestrator.handlers.concurrently import gather_in_order
from agent_orchestrator.handlers.retry import retry_on_conflict
from agent_orchestrator.storage.agents import AgentRepository
from agent_orchestrator.storage.idempotency import IdempotencyStore
from agent_orchestrator.storage.state import (
    StaleRevision,
    StateStore,
    StoredState,
    encode_state,
    encode_state_json,
)

MAX_CAS_ATTEMPTS = 100


def _encoded(
    state: dict[str, Any],
    now: datetime,
    event: Event,
    max_bytes: int,
    state_json: bytes | None = None,
) -> bytes:
    if state_json is None:
        value = encode_state(state, now, event)
    else:
        value = encode_state_json(state_json, now, event)
    if len(value) > max_bytes:
        limit = Limit(max_bytes, MAX_STATE_SETTING)
        raise PayloadTooLarge(limit.refusal("state", len(value)), details=limit.details(len(value)))
    return value


async def replace_state(
    states: StateStore,
    agent_id: UUID,
    new_state: dict[str, Any],
    *,
    event: Event,
    now: datetime,
    max_bytes: int,
    state_json: bytes | None = None,
) -> AgentState:
    """Write ``new_state`` as the next revision, whatever the current one (no read needed).

    ``event`` is stored with the revision and published once it is written. ``state_json``:
    ``new_state`` as JSON text, when the caller has it (it is stored as it is)."""
    value = _encoded(new_state, now, event, max_bytes, state_json)
    async with states.writing(agent_id):
        revision = await states.put(agent_id, value)
        sent = await states.send_event(revision_event(event, revision))
        states.wrote(agent_id, new_state, revision, len(value))  # in revision order
    await states.confirm(sent)
    return AgentState(agent_id=agent_id, state=new_state, revision=revision, updated_at=now)


async def write_state(
    states: StateStore,
    agent_id: UUID,
    apply: Callable[[dict[str, Any]], dict[str, Any]],
    *,
    event: Event,
    expected_revision: int | None,
    now: datetime,
    max_bytes: int,
    first_read: StoredState | None = None,
) -> AgentState:
    """Compare-and-set ``apply(current)`` as the next revision, re-applying it on top of any
    concurrent write (unless the caller pinned ``expected_revision``: then ``conflict``).

    ``event`` is stored with the revision and published once it is written. ``first_read``:
    the state as the caller already read it, for the first attempt."""
    prefetched = [first_read] if first_read is not None else []
    kept = first_read is not None and first_read.kept

    async def attempt() -> AgentState | None:
        nonlocal kept
        current = prefetched.pop() if prefetched else await states.read(agent_id)
        if expected_revision is not None and expected_revision != current.revision:
            raise Conflict(
                f"state is at revision {current.revision}, not {expected_revision}",
                details={"expected_revision": expected_revision, "revision": current.revision},
            )
        new_state = apply(current.state)
        value = _encoded(new_state, now, event, max_bytes)
        try:
            async with states.writing(agent_id):
                revision = await states.write(agent_id, value, last_revision=current.revision)
                sent = await states.send_event(revision_event(event, revision))
                states.wrote(agent_id, new_state, revision, len(value))  # in revision order
        except StaleRevision:
            if kept:  # the kept revision was stale: read, and decide again
                kept = False
                return None
            if expected_revision is not None:
                raise Conflict("state changed concurrently; read it and retry") from None
            return None
        await states.confirm(sent)
        return AgentState(agent_id=agent_id, state=new_state, revision=revision, updated_at=now)

    return await retry_on_conflict(MAX_CAS_ATTEMPTS, attempt, what=f"state of agent {agent_id}")


class StateCommands:
    """agent.state.get / update / history."""

    def __init__(
        self,
        *,
        agents: AgentRepository,
        states: StateStore,
        idempotency: IdempotencyStore,
        max_state_bytes: int,
    ) -> None:
        self._agents = agents
        self._states = states
        self._idempotency = idempotency
        self._max_state_bytes = max_state_bytes

    @command(
        subjects.AGENT_STATE_GET,
        GetState,
        AgentState,
        mutating=False,
        description="Read an agent's runtime state and its revision (0: never written).",
    )
    async def get_state(self, body: GetState, ctx: CommandContext) -> AgentState:
        stored = await self._states.read(body.agent_id)
        if stored.revision == 0:
            await self._agents.get(body.agent_id)  # not_found, unless the agent has no state yet
        return AgentState(
            agent_id=body.agent_id,
            state=stored.state,
            revision=stored.revision,
            updated_at=stored.updated_at,
        )

    @command(
        subjects.AGENT_STATE_UPDATE,
        UpdateState,
        AgentState,
        mutating=True,
        description="Merge (RFC 7396, default) or replace an agent's state; concurrent merges "
        "never lose an update; `expected_revision` makes it a compare-and-set.",
    )
    async def update_state(self, body: UpdateState, ctx: CommandContext) -> AgentState:
        blind = body.mode is StateMode.REPLACE and body.expected_revision is None
        if blind:
            agent, current = await self._agents.get(body.agent_id), None
        else:  # the agent and its state, read at the same time
            agent, current = await gather_in_order(
                self._agents.get(body.agent_id),
                self._states.read_for_write(body.agent_id, body.expected_revision),
            )
        check_mutable(agent.status)
        event = new_event(
            agent, EventKind.STATE_UPDATED, {"mode": body.mode, "actor": ctx.actor}, ctx.now
        )
        if blind:
            reply = await replace_state(
                self._states,
                body.agent_id,
                body.state,
                event=event,
                now=ctx.now,
                max_bytes=self._max_state_bytes,
            )
        else:

            def apply(current: dict[str, Any]) -> dict[str, Any]:
                if body.mode is StateMode.MERGE:
                    return dict(merge_patch(current, body.state))
                return body.state

            reply = await write_state(
                self._states,
                body.agent_id,
                apply,
                event=event,
                expected_revision=body.expected_revision,
                now=ctx.now,
                max_bytes=self._max_state_bytes,
                first_read=current,
            )
        await self._idempotency.remember(ctx.idempotency_for(reply))
        return reply

    @command(
        subjects.AGENT_STATE_HISTORY,
        StateHistoryRequest,
        StateHistory,
        mutating=False,
        description="Earlier revisions of an agent's state, newest first: up to `limit`, and "
        "no more than fit in AO_MAX_STATE_BYTES together (the newest always), so that the reply "
        "fits in a NATS message.",
    )
    async def state_history(self, body: StateHistoryRequest, ctx: CommandContext) -> StateHistory:
        await self._agents.get(body.agent_id)
        items = _within(
            await self._states.history(body.agent_id, body.limit), self._max_state_bytes
        )
        return StateHistory(
            items=[
                StateRevision(state=s.state, revision=s.revision, updated_at=s.updated_at)
                for s in items
            ]
        )


def _within(items: list[StoredState], budget: int) -> list[StoredState]:
    """The first of ``items`` whose sizes add up to at most ``budget`` (at least one)."""
    kept: list[StoredState] = []
    total = 0
    for item in items:
        total += item.size
        if kept and total > budget:
            break
        kept.append(item)
    return kept
