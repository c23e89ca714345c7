"""agent.checkpoint.create / list / restore / delete."""

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from agent_orchestrator.contracts import subjects
from agent_orchestrator.contracts.agents import Agent
from agent_orchestrator.contracts.checkpoints import (
    Checkpoint,
    CheckpointList,
    CheckpointsDeleted,
    CreateCheckpoint,
    DeleteCheckpoints,
    ListCheckpoints,
    RestoreCheckpoint,
    RestoredState,
)
from agent_orchestrator.contracts.events import EventKind
from agent_orchestrator.contracts.limits import MAX_CHECKPOINT_SETTING, Limit
from agent_orchestrator.domain.agents import new_event
from agent_orchestrator.domain.errors import NotFound, PayloadTooLarge
from agent_orchestrator.domain.ids import new_id
from agent_orchestrator.domain.lifecycle import check_mutable
from agent_orchestrator.handlers.commands import CommandContext, command
from agent_orchestrator.handlers.concurrently import gather_in_order
from agent_orchestrator.handlers.state import replace_state
from agent_orchestrator.storage.agents import AgentRepository
from agent_orchestrator.storage.atomic import IdempotencyRecord, OutboxMessage
from agent_orchestrator.storage.checkpoints import CheckpointBlobs, CheckpointRepository
from agent_orchestrator.storage.idempotency import IdempotencyStore
from agent_orchestrator.storage.state import StateStore, StoredState


@dataclass(frozen=True)
class Checkpointer:
    """Takes and prunes checkpoints; shared by the commands and the scheduled job."""

    states: StateStore
    checkpoints: CheckpointRepository
    blobs: CheckpointBlobs
    max_checkpoint_bytes: int

    async def take(
        self,
        agent: Agent,
        *,
        label: str | None,
        recoverable: bool,
        scheduled: bool,
        now: datetime,
        idempotency: Callable[[Checkpoint], IdempotencyRecord | None] = lambda _: None,
        current: StoredState | None = None,
    ) -> Checkpoint:
        """Snapshot the agent's current state (``current``, if the caller read it already):
        bytes first, then the record and its event (group-committed)."""
        if current is None:
            current = await self.states.read(agent.agent_id)
        data = json.dumps(current.state, separators=(",", ":"), ensure_ascii=False).encode()
        if len(data) > self.max_checkpoint_bytes:
            limit = Limit(self.max_checkpoint_bytes, MAX_CHECKPOINT_SETTING)
            raise PayloadTooLarge(
                limit.refusal("checkpoint", len(data)), details=limit.details(len(data))
            )
        checkpoint_id = new_id()
        storage = await self.blobs.put(agent.agent_id, checkpoint_id, data)
        checkpoint = Checkpoint(
            checkpoint_id=checkpoint_id,
            agent_id=agent.agent_id,
            label=label,
            recoverable=recoverable,
            state_revision=current.revision,
            agent_status=agent.status,
            agent_version=agent.version,
            size_bytes=len(data),
            storage=storage,
            scheduled=scheduled,
            created_at=now,
        )
        event = new_event(
            agent,
            EventKind.CHECKPOINT_CREATED,
            {"checkpoint": checkpoint.model_dump(mode="json")},
            now,
        ).model_copy(update={"event_id": checkpoint_id})
        outbox = [OutboxMessage.for_event(event)]
        if not await self.checkpoints.insert(checkpoint, outbox, idempotency(checkpoint)):
            await self.blobs.delete([checkpoint])
            raise NotFound(f"agent {agent.agent_id} does not exist")
        return checkpoint

    async def delete(
        self,
        agent: Agent,
        doomed: list[Checkpoint],
        *,
        now: datetime,
        idempotency: IdempotencyRecord | None = None,
    ) -> None:
        """Delete records (with one event each), then their bytes."""
        if not doomed:
            return
        outbox = [
            OutboxMessage.for_event(
                new_event(
                    agent,
                    EventKind.CHECKPOINT_DELETED,
                    {"checkpoint_id": str(cp.checkpoint_id)},
                    now,
                )
            )
            for cp in doomed
        ]
        ids = [cp.checkpoint_id for cp in doomed]
        await self.checkpoints.delete(agent.agent_id, ids, outbox, idempotency)
        await self.blobs.delete(doomed)

    async def snapshot(
        self, agent_id: UUID, checkpoint_id: UUID | None
    ) -> tuple[Checkpoint, bytes]:
        """A checkpoint's record and bytes (default: the latest recoverable); a named
        checkpoint's record and (inline) bytes are read at the same time."""
        if checkpoint_id is None:
            checkpoint = await self.checkpoints.find(agent_id, None)
            return checkpoint, await self.blobs.get(checkpoint)
        checkpoint, inline = await gather_in_order(
            self.checkpoints.find(agent_id, checkpoint_id),
            self.blobs.get_inline(agent_id, checkpoint_id),
        )
        return checkpoint, inline if inline is not None else await self.blobs.get(checkpoint)

    async def restore(
        self,
        agent: Agent,
        checkpoint_id: UUID | None,
        *,
        actor: str,
        now: datetime,
        max_state_bytes: int,
        snapshot: tuple[Checkpoint, bytes] | None = None,
    ) -> RestoredState:
        """Write a checkpoint's state (default: the latest recoverable) as a new revision;
        ``snapshot``: its record and bytes, if the caller read them already."""
        checkpoint, data = snapshot or await self.snapshot(agent.agent_id, checkpoint_id)
        state: dict[str, Any] = json.loads(data)
        event = new_event(
            agent,
            EventKind.CHECKPOINT_RESTORED,
            {"checkpoint_id": str(checkpoint.checkpoint_id), "actor": actor},
            now,
        )
        written = await replace_state(
            self.states,
            agent.agent_id,
            state,
            event=event,
            now=now,
            max_bytes=max_state_bytes,
            state_json=data,  # the checkpoint's bytes go back as they were read
        )
        return RestoredState(
            agent_id=agent.agent_id,
            state=written.state,
            revision=written.revision,
            restored_from=checkpoint.checkpoint_id,
        )

    async def prune(self, agent: Agent, keep_last: int, *, now: datetime) -> None:
        """Delete the agent's scheduled checkpoints beyond the newest ``keep_last``."""
        doomed = await self.checkpoints.beyond_newest_scheduled(agent.agent_id, keep_last)
        await self.delete(agent, doomed, now=now)


class CheckpointCommands:
    """agent.checkpoint.create / list / restore / delete."""

    def __init__(
        self,
        *,
        agents: AgentRepository,
        checkpointer: Checkpointer,
        idempotency: IdempotencyStore,
        max_state_bytes: int,
    ) -> None:
        self._agents = agents
        self._checkpointer = checkpointer
        self._checkpoints = checkpointer.checkpoints
        self._idempotency = idempotency
        self._max_state_bytes = max_state_bytes

    @command(
        subjects.AGENT_CHECKPOINT_CREATE,
        CreateCheckpoint,
        Checkpoint,
        mutating=True,
        description="Snapshot the agent's current state (large snapshots go to the object "
        "store transparently).",
    )
    async def create_checkpoint(self, body: CreateCheckpoint, ctx: CommandContext) -> Checkpoint:
        agent, current = await gather_in_order(
            self._agents.get(body.agent_id), self._checkpointer.states.read(body.agent_id)
        )
        return await self._checkpointer.take(
            agent,
            label=body.label,
            recoverable=body.recoverable,
            scheduled=False,
            now=ctx.now,
            idempotency=ctx.idempotency_for,
            current=current,
        )

    @command(
        subjects.AGENT_CHECKPOINT_LIST,
        ListCheckpoints,
        CheckpointList,
        mutating=False,
        description="An agent's checkpoints, newest first.",
    )
    async def list_checkpoints(self, body: ListCheckpoints, ctx: CommandContext) -> CheckpointList:
        await self._agents.get(body.agent_id)
        return CheckpointList(items=await self._checkpoints.all_of(body.agent_id))

    @command(
        subjects.AGENT_CHECKPOINT_RESTORE,
        RestoreCheckpoint,
        RestoredState,
        mutating=True,
        description="Make a checkpoint's state (default: the latest recoverable) the agent's "
        "state, as a new revision.",
    )
    async def restore_checkpoint(
        self, body: RestoreCheckpoint, ctx: CommandContext
    ) -> RestoredState:
        # The agent, the record and its bytes at once; errors in the order of a sequential read.
        agent, snapshot = await asyncio.gather(
            self._agents.get(body.agent_id),
            self._checkpointer.snapshot(body.agent_id, body.checkpoint_id),
            return_exceptions=True,
        )
        if isinstance(agent, BaseException):
            raise agent
        check_mutable(agent.status)
        if isinstance(snapshot, BaseException):
            raise snapshot
        reply = await self._checkpointer.restore(
            agent,
            body.checkpoint_id,
            actor=ctx.actor,
            now=ctx.now,
            max_state_bytes=self._max_state_bytes,
            snapshot=snapshot,
        )
        await self._idempotency.remember(ctx.idempotency_for(reply))
        return reply

    @command(
        subjects.AGENT_CHECKPOINT_DELETE,
        DeleteCheckpoints,
        CheckpointsDeleted,
        mutating=True,
        description="Delete one checkpoint, or (without checkpoint_id) all of the agent's.",
    )
    async def delete_checkpoints(
        self, body: DeleteCheckpoints, ctx: CommandContext
    ) -> CheckpointsDeleted:
        agent = await self._agents.get(body.agent_id)
        if body.checkpoint_id is not None:
            doomed = [await self._checkpoints.find(body.agent_id, body.checkpoint_id)]
        else:
            doomed = await self._checkpoints.all_of(body.agent_id)
        reply = CheckpointsDeleted(agent_id=body.agent_id, deleted=len(doomed))
        await self._checkpointer.delete(
            agent, doomed, now=ctx.now, idempotency=ctx.idempotency_for(reply)
        )
        return reply
