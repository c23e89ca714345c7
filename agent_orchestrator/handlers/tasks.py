"""agent.execute, task.get / list / cancel, the worker side: task.start / progress /
complete / fail, and asking for input: task.request_input / task.provide_input."""

import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from uuid import UUID

from agent_orchestrator.contracts import subjects
from agent_orchestrator.contracts.tasks import (
    CancelTask,
    CompleteTask,
    ExecuteTask,
    FailTask,
    GetTask,
    ListTasks,
    ProvideInput,
    ReportProgress,
    RequestInput,
    StartTask,
    Task,
    TaskPage,
    TaskPolicy,
    TaskStatus,
)
from agent_orchestrator.domain import task_input
from agent_orchestrator.domain import tasks as rules
from agent_orchestrator.domain.agents import AgentRef
from agent_orchestrator.domain.cursor import decode_cursor, split_page
from agent_orchestrator.domain.errors import Conflict
from agent_orchestrator.handlers.commands import CommandContext, command
from agent_orchestrator.handlers.retry import retry_on_conflict
from agent_orchestrator.storage.agent_queues import AgentQueue
from agent_orchestrator.storage.agents import AgentRepository
from agent_orchestrator.storage.atomic import IdempotencyRecord
from agent_orchestrator.storage.tasks import StoredTask, TaskRepository, TaskWrite

MAX_ATTEMPTS = 8
BATCH = 500

Decision = Callable[[StoredTask], rules.TaskChange | None]


async def change_task(
    tasks: TaskRepository,
    task_id: UUID,
    decide: Decision,
    *,
    taken: bool = False,
    idempotency: Callable[[Task], IdempotencyRecord | None] = lambda _: None,
    check: Callable[[StoredTask], Awaitable[None]] | None = None,
) -> Task:
    """Load, decide, save if nobody changed the task meanwhile; re-decide when somebody did.

    ``decide`` raises for a refused change and returns None when nothing would change;
    ``check``, if given, may refuse by raising before it decides (it may do I/O)."""

    async def attempt() -> Task | None:
        stored = await tasks.get(task_id)
        if check is not None:
            await check(stored)
        change = decide(stored)
        if change is None:
            return stored.task
        if await tasks.save(
            change, revision=stored.revision, taken=taken, idempotency=idempotency(change.task)
        ):
            return change.task
        return None

    return await retry_on_conflict(MAX_ATTEMPTS, attempt, what=f"task {task_id}")


async def cancel_open_tasks(tasks: TaskRepository, agent: AgentRef, reason: str) -> int:
    """Cancel every QUEUED, RUNNING and INPUT_REQUIRED task of ``agent`` (terminated or
    deleted)."""
    cancelled = 0
    while open_tasks := await tasks.open_tasks_of(agent.agent_id, limit=BATCH):
        for stored in open_tasks:
            with contextlib.suppress(Conflict):  # it ended meanwhile
                await change_task(
                    tasks,
                    stored.task.task_id,
                    lambda s: rules.cancel(
                        s.task, reason, agent, datetime.now(UTC), actor="orchestrator"
                    ),
                )
                cancelled += 1
        if len(open_tasks) < BATCH:
            break
    return cancelled


async def time_out_tasks(tasks: TaskRepository, defaults: rules.TaskDefaults) -> int:
    """A sweep: retry or end every RUNNING task past its deadline, and apply the on_timeout of
    every question past its own; how many it changed. Each change is written on the revision
    it was decided from, so with any number of instances sweeping, one applies it and the
    others find nothing due."""
    count = 0
    for stored in await tasks.overdue(datetime.now(UTC), limit=BATCH):
        applied = False

        def decide(s: StoredTask) -> rules.TaskChange | None:
            nonlocal applied
            change = task_input.due(s.task, s.agent, defaults, datetime.now(UTC))
            applied = change is not None  # the last decision is the one that counted
            return change

        with contextlib.suppress(Conflict):  # it ended meanwhile
            await change_task(tasks, stored.task.task_id, decide)
            count += applied
    return count


class TaskCommands:
    """agent.execute, task.get / list / cancel, the worker side: task.start / progress /
    complete / fail, and asking for input: task.request_input / task.provide_input."""

    def __init__(
        self,
        *,
        agents: AgentRepository,
        tasks: TaskRepository,
        defaults: rules.TaskDefaults,
        queue: AgentQueue | None = None,
    ) -> None:
        """``queue``: where a committed task's assignment is published at once (the outbox
        relay covers a failure; without it, the relay alone publishes)."""
        self._agents = agents
        self._tasks = tasks
        self._defaults = defaults
        self._queue = queue

    @command(
        subjects.AGENT_EXECUTE,
        ExecuteTask,
        Task,
        mutating=True,
        description="Hand a task to an ACTIVE agent: it is QUEUED on agent.task.<agent_id> "
        "until the agent's worker starts it (and, with configuration.tasks."
        "max_concurrent_tasks, until the agent has room; on_busy `reject`: a conflict then).",
    )
    async def execute(self, body: ExecuteTask, ctx: CommandContext) -> Task:
        async def attempt() -> Task | None:
            stored_agent = await self._agents.get(body.agent_id)
            agent = AgentRef.of(stored_agent)
            change = rules.queue(body, agent, self._defaults, ctx.now)
            policy = TaskPolicy.of(stored_agent.configuration)
            if policy.max_concurrent_tasks is not None:
                # Past the limit it is queued all the same (task.start makes it wait its
                # turn), unless the agent's on_busy is `reject`: then this is a conflict.
                task_input.admit(policy, await self._tasks.busy_count(body.agent_id))
            write = TaskWrite.of(change, idempotency=ctx.idempotency_for(change.task))
            if await self._tasks.insert_write(write):
                if self._queue is not None:
                    await self._queue.publish_committed(write.assignments)
                return change.task
            return None  # the agent left ACTIVE meanwhile: the next round says how

        return await retry_on_conflict(MAX_ATTEMPTS, attempt, what=f"agent {body.agent_id}")

    @command(subjects.TASK_GET, GetTask, Task, mutating=False, description="Read a task.")
    async def get_task(self, body: GetTask, ctx: CommandContext) -> Task:
        return (await self._tasks.get(body.task_id)).task

    @command(
        subjects.TASK_LIST,
        ListTasks,
        TaskPage,
        mutating=False,
        description="Tasks newest first, of an agent or a project, by status.",
    )
    async def list_tasks(self, body: ListTasks, ctx: CommandContext) -> TaskPage:
        before = decode_cursor(body.cursor, "before", UUID) if body.cursor else None
        fetched = await self._tasks.page(
            agent_id=body.agent_id,
            project_id=body.project_id,
            status=body.status,
            limit=body.limit + 1,
            before=before,
            context_id=body.context_id,
        )
        if not fetched and before is None and body.agent_id is not None:
            await self._agents.get(body.agent_id)  # not_found for an unknown agent
        items, next_cursor = split_page(fetched, body.limit, "before", lambda t: str(t.task_id))
        return TaskPage(items=items, next_cursor=next_cursor)

    @command(
        subjects.TASK_CANCEL,
        CancelTask,
        Task,
        mutating=True,
        description="Cancel a QUEUED, RUNNING or INPUT_REQUIRED task (a pending question is "
        "withdrawn); it is never started afterwards, and a running worker learns of it at its "
        "next report (a waiting one from the task_cancelled event). Cancelling a CANCELLED task "
        "answers it unchanged; a task that ended otherwise is a conflict.",
    )
    async def cancel_task(self, body: CancelTask, ctx: CommandContext) -> Task:
        return await change_task(
            self._tasks,
            body.task_id,
            lambda s: rules.cancel(s.task, body.reason, s.agent, ctx.now, actor=ctx.actor),
            idempotency=ctx.idempotency_for,
        )

    @command(
        subjects.TASK_START,
        StartTask,
        Task,
        mutating=True,
        description="Worker: claim the attempt of a TaskAssignment (QUEUED -> RUNNING), then "
        "acknowledge the assignment. A cancelled, ended or superseded attempt is a conflict: "
        "acknowledge it and drop it. While the agent runs its max_concurrent_tasks, starting "
        "another is `unavailable`: leave the assignment and try again later.",
    )
    async def start_task(self, body: StartTask, ctx: CommandContext) -> Task:
        return await change_task(
            self._tasks,
            body.task_id,
            lambda s: rules.start(s.task, body.attempt, s.agent, self._defaults, ctx.now),
            taken=True,
            check=self._room_to_start,
        )

    async def _room_to_start(self, stored: StoredTask) -> None:
        """CapacityReached while the agent of a QUEUED task already runs its
        max_concurrent_tasks (the worker leaves the assignment for later)."""
        limit = stored.max_concurrent_tasks
        if stored.task.status is TaskStatus.QUEUED and limit is not None:
            policy = TaskPolicy(max_concurrent_tasks=limit)
            task_input.check_room(policy, await self._tasks.busy_count(stored.task.agent_id))

    @command(
        subjects.TASK_PROGRESS,
        ReportProgress,
        Task,
        mutating=True,
        description="Worker: report progress of a RUNNING task; without progress or message "
        "it is a heartbeat. Each report moves the deadline; a cancelled task is a conflict.",
    )
    async def report_progress(self, body: ReportProgress, ctx: CommandContext) -> Task:
        return await change_task(
            self._tasks,
            body.task_id,
            lambda s: rules.report(s.task, body, s.agent, self._defaults, ctx.now),
        )

    @command(
        subjects.TASK_COMPLETE,
        CompleteTask,
        Task,
        mutating=True,
        description="Worker: the task SUCCEEDED with this result.",
    )
    async def complete_task(self, body: CompleteTask, ctx: CommandContext) -> Task:
        return await change_task(
            self._tasks,
            body.task_id,
            lambda s: rules.complete(s.task, body, s.agent, ctx.now),
            idempotency=ctx.idempotency_for,
        )

    @command(
        subjects.TASK_FAIL,
        FailTask,
        Task,
        mutating=True,
        description="Worker: the task FAILED with this error (or is QUEUED again with `retry` "
        "while attempts are left).",
    )
    async def fail_task(self, body: FailTask, ctx: CommandContext) -> Task:
        return await change_task(
            self._tasks,
            body.task_id,
            lambda s: rules.fail(s.task, body, s.agent, ctx.now),
            idempotency=ctx.idempotency_for,
        )

    @command(
        subjects.TASK_REQUEST_INPUT,
        RequestInput,
        Task,
        mutating=True,
        description="Worker: ask for input. The RUNNING task is INPUT_REQUIRED with the "
        "question (event task_input_required) until somebody answers it (task.provide_input) "
        "or its timeout applies on_timeout. With input_seq, asking again a question already "
        "pending or answered changes nothing and returns the task (with the answer in "
        "input_answers once there is one).",
    )
    async def request_input(self, body: RequestInput, ctx: CommandContext) -> Task:
        return await change_task(
            self._tasks,
            body.task_id,
            lambda s: task_input.request_input(s.task, body, s.agent, self._defaults, ctx.now),
            idempotency=ctx.idempotency_for,
        )

    @command(
        subjects.TASK_PROVIDE_INPUT,
        ProvideInput,
        Task,
        mutating=True,
        description="Answer the question an INPUT_REQUIRED task waits on: the input must match "
        "its input_schema (validation_error lists every failing path); the task is RUNNING "
        "again (event task_input_provided) and the worker's program gets the answer. A second "
        "answer, or one past the question's deadline, is a conflict.",
    )
    async def provide_input(self, body: ProvideInput, ctx: CommandContext) -> Task:
        return await change_task(
            self._tasks,
            body.task_id,
            lambda s: task_input.provide_input(
                s.task, body, s.agent, self._defaults, ctx.now, actor=ctx.actor
            ),
            idempotency=ctx.idempotency_for,
        )
