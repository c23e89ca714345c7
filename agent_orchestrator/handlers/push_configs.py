"""task.push_config.set / get / list / delete: webhooks told of a task's changes (the A2A
bridge sends them; see docs/a2a.md)."""

from agent_orchestrator.contracts import subjects
from agent_orchestrator.contracts.push import (
    MAX_PUSH_CONFIGS,
    ListPushConfigs,
    PushConfig,
    PushConfigDeleted,
    PushConfigRef,
    PushConfigs,
    SetPushConfig,
)
from agent_orchestrator.domain.errors import Conflict, NotFound
from agent_orchestrator.handlers.commands import CommandContext, command
from agent_orchestrator.storage.push_configs import PushConfigRepository
from agent_orchestrator.storage.tasks import TaskRepository


class PushConfigCommands:
    """Push configs of tasks, stored with them in PostgreSQL."""

    def __init__(self, *, tasks: TaskRepository, configs: PushConfigRepository) -> None:
        self._tasks = tasks
        self._configs = configs

    @command(
        subjects.TASK_PUSH_SET,
        SetPushConfig,
        PushConfig,
        mutating=True,
        description="Create or replace a webhook told of every change of the task "
        f"(at most {MAX_PUSH_CONFIGS} a task).",
    )
    async def set_push_config(self, body: SetPushConfig, ctx: CommandContext) -> PushConfig:
        await self._tasks.get(body.task_id)  # not_found for an unknown task
        config = PushConfig(**body.model_dump(), created_at=ctx.now)
        stored = await self._configs.put(
            config, limit=MAX_PUSH_CONFIGS, idempotency=ctx.idempotency_for(config)
        )
        if not stored:
            raise Conflict(
                f"task {body.task_id} already has {MAX_PUSH_CONFIGS} push configs",
                details={"task_id": str(body.task_id), "limit": MAX_PUSH_CONFIGS},
            )
        return config

    @command(
        subjects.TASK_PUSH_GET,
        PushConfigRef,
        PushConfig,
        mutating=False,
        description="Read one push config of a task.",
    )
    async def get_push_config(self, body: PushConfigRef, ctx: CommandContext) -> PushConfig:
        for config in await self._configs.of_task(body.task_id):
            if config.config_id == body.config_id:
                return config
        await self._tasks.get(body.task_id)  # not_found for an unknown task first
        raise NotFound(
            f"task {body.task_id} has no push config {body.config_id!r}",
            details={"task_id": str(body.task_id), "config_id": body.config_id},
        )

    @command(
        subjects.TASK_PUSH_LIST,
        ListPushConfigs,
        PushConfigs,
        mutating=False,
        description="The push configs of a task, oldest first.",
    )
    async def list_push_configs(self, body: ListPushConfigs, ctx: CommandContext) -> PushConfigs:
        items = await self._configs.of_task(body.task_id)
        if not items:
            await self._tasks.get(body.task_id)  # not_found for an unknown task
        return PushConfigs(items=items)

    @command(
        subjects.TASK_PUSH_DELETE,
        PushConfigRef,
        PushConfigDeleted,
        mutating=True,
        description="Delete one push config of a task.",
    )
    async def delete_push_config(
        self, body: PushConfigRef, ctx: CommandContext
    ) -> PushConfigDeleted:
        await self._tasks.get(body.task_id)
        reply = PushConfigDeleted(task_id=body.task_id, config_id=body.config_id, deleted=True)
        deleted = await self._configs.delete(
            body.task_id, body.config_id, idempotency=ctx.idempotency_for(reply)
        )
        return reply if deleted else reply.model_copy(update={"deleted": False})
