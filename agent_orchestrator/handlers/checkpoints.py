"""agent.checkpoint.create / list / restore / delete."""

import json
from typing import Any

from agent_orchestrator.contracts import subjects
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
from agent_orchestrator.domain.errors import NotFound, PayloadTooLarge
from agent_orchestrator.domain.ids import new_id
from agent_orchestrator.domain.lifecycle import check_mutable
from agent_orchestrator.handlers.commands import CommandContext, CommandServer
from agent_orchestrator.handlers.state import state_event, write_state
from agent_orchestrator.storage.agents import AgentRepository
from agent_orchestrator.storage.atomic import OutboxMessage
from agent_orchestrator.storage.checkpoints import CheckpointBlobs, CheckpointRepository
from agent_orchestrator.storage.events import EventLog
from agent_orchestrator.storage.state import StateStore


def register_checkpoint_commands(
    server: CommandServer,
    agents: AgentRepository,
    states: StateStore,
    checkpoints: CheckpointRepository,
    blobs: CheckpointBlobs,
    events: EventLog,
    *,
    max_checkpoint_bytes: int,
    max_state_bytes: int,
) -> None:
    """Serve the checkpoint subjects."""

    @server.serve(
        subjects.AGENT_CHECKPOINT_CREATE,
        CreateCheckpoint,
        Checkpoint,
        mutating=True,
        description="Snapshot the agent's current state (large snapshots go to the object "
        "store transparently).",
    )
    async def create_checkpoint(body: CreateCheckpoint, ctx: CommandContext) -> Checkpoint:
        agent = await agents.get(body.agent_id)
        current = await states.read(body.agent_id)
        data = json.dumps(current.state, separators=(",", ":")).encode()
        if len(data) > max_checkpoint_bytes:
            raise PayloadTooLarge(
                f"checkpoint would be {len(data)} bytes; the limit is {max_checkpoint_bytes}",
                details={"size": len(data), "limit": max_checkpoint_bytes},
            )
        checkpoint_id = new_id()
        storage = await blobs.put(agent.agent_id, checkpoint_id, data)
        checkpoint = Checkpoint(
            checkpoint_id=checkpoint_id,
            agent_id=agent.agent_id,
            label=body.label,
            recoverable=body.recoverable,
            state_revision=current.revision,
            agent_status=agent.status,
            agent_version=agent.version,
            size_bytes=len(data),
            storage=storage,
            created_at=ctx.now,
        )
        event = state_event(
            agent,
            EventKind.CHECKPOINT_CREATED,
            current.revision,
            {"checkpoint": checkpoint.model_dump(mode="json")},
            ctx.now,
        ).model_copy(update={"event_id": checkpoint_id})
        stored = await checkpoints.insert(
            checkpoint, [OutboxMessage.for_event(event)], ctx.idempotency_for(checkpoint)
        )
        if not stored:
            await blobs.delete([checkpoint])
            raise NotFound(f"agent {body.agent_id} does not exist")
        return checkpoint

    @server.serve(
        subjects.AGENT_CHECKPOINT_LIST,
        ListCheckpoints,
        CheckpointList,
        mutating=False,
        description="An agent's checkpoints, newest first.",
    )
    async def list_checkpoints(body: ListCheckpoints, ctx: CommandContext) -> CheckpointList:
        await agents.get(body.agent_id)
        return CheckpointList(items=await checkpoints.all_of(body.agent_id))

    @server.serve(
        subjects.AGENT_CHECKPOINT_RESTORE,
        RestoreCheckpoint,
        RestoredState,
        mutating=True,
        description="Make a checkpoint's state (default: the latest recoverable) the agent's "
        "state, as a new revision.",
    )
    async def restore_checkpoint(body: RestoreCheckpoint, ctx: CommandContext) -> RestoredState:
        agent = await agents.get(body.agent_id)
        check_mutable(agent.status)
        checkpoint = await checkpoints.find(body.agent_id, body.checkpoint_id)
        snapshot: dict[str, Any] = json.loads(await blobs.get(checkpoint))
        written = await write_state(
            states,
            body.agent_id,
            lambda _current: snapshot,
            expected_revision=None,
            now=ctx.now,
            max_bytes=max_state_bytes,
        )
        reply = RestoredState(
            agent_id=body.agent_id,
            state=written.state,
            revision=written.revision,
            restored_from=checkpoint.checkpoint_id,
        )
        event = state_event(
            agent,
            EventKind.CHECKPOINT_RESTORED,
            written.revision,
            {"checkpoint_id": str(checkpoint.checkpoint_id), "revision": written.revision},
            ctx.now,
        )
        await events.record([OutboxMessage.for_event(event)], ctx.idempotency_for(reply))
        return reply

    @server.serve(
        subjects.AGENT_CHECKPOINT_DELETE,
        DeleteCheckpoints,
        CheckpointsDeleted,
        mutating=True,
        description="Delete one checkpoint, or (without checkpoint_id) all of the agent's.",
    )
    async def delete_checkpoints(
        body: DeleteCheckpoints, ctx: CommandContext
    ) -> CheckpointsDeleted:
        agent = await agents.get(body.agent_id)
        if body.checkpoint_id is not None:
            doomed = [await checkpoints.find(body.agent_id, body.checkpoint_id)]
        else:
            doomed = await checkpoints.all_of(body.agent_id)
        reply = CheckpointsDeleted(agent_id=body.agent_id, deleted=len(doomed))
        if doomed:
            outbox = [
                OutboxMessage.for_event(
                    state_event(
                        agent,
                        EventKind.CHECKPOINT_DELETED,
                        cp.state_revision,
                        {"checkpoint_id": str(cp.checkpoint_id)},
                        ctx.now,
                    ).model_copy(update={"event_id": new_id()})
                )
                for cp in doomed
            ]
            await checkpoints.delete(
                body.agent_id,
                [cp.checkpoint_id for cp in doomed],
                outbox,
                ctx.idempotency_for(reply),
            )
            await blobs.delete(doomed)
        return reply
