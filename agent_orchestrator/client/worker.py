"""The agent worker: one object that runs an agent's program against agent-orchestrator.

    worker = AgentWorker(nc, agent_id)

    @worker.task
    async def count_words(run: TaskRun) -> JsonValue:
        await run.progress(50, "halfway")
        return {"words": len(run.input["text"].split())}

    @worker.message
    async def answer(message: InboxMessage) -> None:
        await message.reply("thanks")

    await worker.run()   # until the agent is terminated

While it runs, it proves its agent alive: every third of the agent's heartbeat window
(``configuration.liveness.heartbeat_window_s``, 15 s by default) it writes the agent's key in KV
bucket ``agent_heartbeats`` with that window as its time to live, straight to JetStream (the
service is not in the way, so beats go on during a service restart). If the process dies, the
key expires and the service moves the agent to ERROR (``heartbeat_lost``).

It follows its agent's status (agent.get once, then the agent's status events; see
``client.agent_status``) and takes tasks and messages only while the agent is ACTIVE, through
consumers it creates when it starts and deletes when it stops (``client.pull_queue``). For
each task assignment it claims the attempt with task.start (refused while the agent is not
ACTIVE: the assignment goes back to the stream for a moment), acknowledges the assignment, and
runs the task handler; only a long task reports a heartbeat (task.progress), every third of
the time the service gives it, so a short task costs two requests: task.start and
task.complete (or task.fail). The handler's return
value completes the task; an exception fails it (:class:`RetryTask` asks for another attempt).
A task cancelled meanwhile is noticed at the next report (a heartbeat or ``run.progress``) and
its handler is cancelled: it sees ``asyncio.CancelledError``, and the worker logs one INFO line
(see ``client.task_run``). While the service is unreachable, the end of an attempt is retried
until the attempt's deadline; after it the service gives the attempt up anyway (retries it or
ends it TIMED_OUT).
Messages go to the message handler through an :class:`Inbox`. NATS reconnects are waited out;
``run`` returns once the agent is terminated or deleted.
"""

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import nats.aio.client
import nats.errors
from nats.aio.msg import Msg
from pydantic import JsonValue, ValidationError

from agent_orchestrator.client.agent_status import AgentStatusWatch
from agent_orchestrator.client.errors import RequestFailed, ServiceUnavailable
from agent_orchestrator.client.inbox import Inbox, InboxMessage
from agent_orchestrator.client.input_waiter import InputWaiter
from agent_orchestrator.client.protocol_endpoint import ProtocolEndpoint
from agent_orchestrator.client.pull_queue import PullQueue
from agent_orchestrator.client.requests import OrchestratorClient
from agent_orchestrator.client.task_run import RetryTask, TaskRun
from agent_orchestrator.contracts.liveness import Heartbeat, LivenessPolicy
from agent_orchestrator.contracts.subjects import (
    TASKS_STREAM,
    heartbeat_subject,
    task_consumer,
    task_subject,
)
from agent_orchestrator.contracts.tasks import Task, TaskAssignment, TaskStatus

__all__ = ["AgentWorker", "RetryTask", "TaskRun"]

log = logging.getLogger(__name__)

TaskHandler = Callable[["TaskRun"], Coroutine[Any, Any, JsonValue]]
MessageHandler = Callable[[InboxMessage], Awaitable[Any]]

MIN_HEARTBEAT_S = 0.2
RETRY_DELAY_S = 1.0
#: How long the end of an attempt is retried when its deadline is unknown.
NO_DEADLINE_PATIENCE_S = 60.0


class AgentWorker:
    """Runs an agent's task and message handlers (see the module docstring)."""

    def __init__(
        self,
        nc: nats.aio.client.Client,
        agent_id: UUID | str,
        *,
        client: OrchestratorClient | None = None,
        concurrency: int = 1,
        poll_s: float = 1.0,
        heartbeat: bool = True,
        protocol: bool = True,
        api_prefix: str | None = None,
    ) -> None:
        """``concurrency``: tasks run at once; ``poll_s``: how long one fetch waits;
        ``heartbeat``: prove the agent alive while running; ``protocol``: make the agent
        discoverable and promptable on the NATS agent protocol while it is ACTIVE (a task
        handler is needed; see ``client.protocol_endpoint``); ``api_prefix``: where the
        JetStream API is reached (``WORKER_JS_API_PREFIX`` for a worker user of a project's
        NATS account, see docs/security.md; default ``$JS.API``)."""
        self._api_prefix = api_prefix
        self.nc = nc
        self.agent_id = UUID(str(agent_id))
        self.client = client or OrchestratorClient(nc)
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._prove_alive = heartbeat
        self._speak_protocol = protocol
        self._concurrency = concurrency
        self._poll_s = poll_s
        self._task_handler: TaskHandler | None = None
        self._message_handler: MessageHandler | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._stopped = False
        self._inbox: Inbox | None = None
        self._watch = AgentStatusWatch(nc, self.agent_id, self.client)
        self._input_waiter = InputWaiter(nc, self.agent_id)

    async def send(
        self,
        to_agent_id: UUID | str,
        content: JsonValue = None,
        *,
        type: str = "message",
        correlation_id: str | None = None,
        reply_to: UUID | str | None = None,
        ttl_s: int | None = None,
        synchronous: bool = False,
    ) -> UUID:
        """Send a message from this worker's agent; its communication_id. By default without
        a request (``OrchestratorClient.send_direct``: durable once the stream acknowledged
        it; a refusal shows as FAILED in ``communication.get``); ``synchronous=True`` asks
        agent.send instead, which answers only once the message is recorded and raises a
        refusal as :class:`RequestFailed`."""
        if synchronous:
            sent = await self.client.send(
                self.agent_id,
                to_agent_id,
                content=content,
                type=type,
                correlation_id=correlation_id,
                reply_to=reply_to,
                ttl_s=ttl_s,
            )
            return sent.communication_id
        return await self.client.send_direct(
            self.agent_id,
            to_agent_id,
            content=content,
            type=type,
            correlation_id=correlation_id,
            reply_to=reply_to,
            ttl_s=ttl_s,
        )

    def stop(self, *, cancel_running: bool = False) -> None:
        """Stop taking tasks and messages: ``run`` returns within the poll time, once the
        tasks in hand are done (or, with ``cancel_running``, cancelled: their attempts are then
        given up by the service like those of any silent worker)."""
        self._stopped = True
        if self._inbox is not None:
            self._inbox.stop()
        if cancel_running:
            for attempt in self._running:
                attempt.cancel()

    def task(self, handler: TaskHandler) -> TaskHandler:
        """Decorator: the handler of every task; its return value is the result."""
        self._task_handler = handler
        return handler

    def message(self, handler: MessageHandler) -> MessageHandler:
        """Decorator: the handler of every message (acknowledged when it returns)."""
        self._message_handler = handler
        return handler

    async def run(self, *, timeout: float = 30.0) -> None:
        """Serve tasks and messages until the agent is terminated (or ``stop()``); NATS and
        the service must answer within ``timeout`` at the start."""
        async with asyncio.timeout(timeout):
            await self._watch.open()
        try:
            await self._serve(timeout)
        finally:
            await self._watch.close()

    async def _serve(self, timeout: float) -> None:
        loops = []
        if self._task_handler is not None:
            loops.append(self._serve_tasks(self._task_handler, timeout))
        if self._message_handler is not None:
            loops.append(self._serve_messages(self._message_handler, timeout))
        if not loops:
            raise RuntimeError("register a @worker.task or @worker.message handler first")
        speaking = None
        if self._speak_protocol and self._task_handler is not None:
            endpoint = ProtocolEndpoint(
                self.nc, self.agent_id, client=self.client, api_prefix=self._api_prefix
            )
            speaking = asyncio.create_task(endpoint.run())
        beating = None
        if self._prove_alive:
            agent = await self.client.get_agent(self.agent_id)
            window = LivenessPolicy.of(agent.configuration).heartbeat_window_s
            beating = asyncio.create_task(self._beat(window))
        try:
            await asyncio.gather(*loops)
        finally:
            for loop in (beating, speaking):
                if loop is not None:
                    loop.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await loop

    async def _beat(self, window_s: int) -> None:
        """Write the agent's heartbeat key every third of its window, with the window as its
        time to live."""
        js = self.nc.jetstream()
        subject = heartbeat_subject(str(self.agent_id))
        while not self._stopped:
            beat = Heartbeat(by="worker", worker=self.worker_id, at=datetime.now(UTC))
            try:
                await js.publish(subject, beat.model_dump_json().encode(), msg_ttl=window_s)
            except (nats.errors.Error, TimeoutError) as exc:
                log.warning("heartbeat of %s not written: %r", self.agent_id, exc)
            await asyncio.sleep(window_s / 3)

    async def _serve_messages(self, handler: MessageHandler, timeout: float) -> None:
        inbox = Inbox(
            self.nc,
            self.agent_id,
            client=self.client,
            poll_s=self._poll_s,
            watch=self._watch,
            api_prefix=self._api_prefix,
        )
        self._inbox = inbox
        if self._stopped:
            inbox.stop()
        await inbox.open(timeout=timeout)
        try:
            await inbox.run(handler)
        finally:
            await inbox.close()

    async def _serve_tasks(self, handler: TaskHandler, timeout: float) -> None:
        agent = str(self.agent_id)
        queue = PullQueue(
            self.nc,
            TASKS_STREAM,
            task_consumer(agent),
            task_subject(agent),
            batch=1,
            poll_s=self._poll_s,
            api_prefix=self._api_prefix,
        )
        async with asyncio.timeout(timeout):
            await queue.open()
        slots = asyncio.Semaphore(self._concurrency)
        try:
            while not self._stopped and not self._watch.ended:
                if not self._watch.active:
                    await self._watch.wait_active(self._poll_s)
                    continue
                await slots.acquire()
                msgs = await queue.fetch()
                if not msgs:
                    slots.release()
                    continue
                run = asyncio.create_task(self._take(queue, msgs[0], handler))
                self._running.add(run)
                run.add_done_callback(self._running.discard)
                run.add_done_callback(lambda _: slots.release())
            if self._running:
                await asyncio.gather(*self._running, return_exceptions=True)
        finally:
            await queue.close()
            await self._input_waiter.close()

    async def _take(self, queue: PullQueue, msg: Msg, handler: TaskHandler) -> None:
        """Claim one assignment, acknowledge it, and run its attempt."""
        try:
            assignment = TaskAssignment.model_validate_json(msg.data)
        except ValidationError:
            log.warning("dropping a malformed assignment: %r", msg.data[:200])
            await queue.settle(msg, ack=True)
            return
        try:
            task = await self.client.start_task(assignment.task_id, assignment.attempt)
        except ServiceUnavailable as exc:
            # Also: the agent is not ACTIVE (any more); the assignment waits in the stream.
            if isinstance(exc.details, dict) and exc.details.get("reason") == "agent_not_active":
                await self._watch.refresh()
            await queue.settle(msg, ack=False, delay=RETRY_DELAY_S)
            return
        except RequestFailed as exc:  # cancelled, ended, superseded or unknown: not ours to run
            log.info("not starting %s: %s", assignment.task_id, exc.message)
            await queue.settle(msg, ack=True)
            return
        await queue.settle(msg, ack=True)
        run = TaskRun(self.client, self.agent_id, task, waiter=self._input_waiter)
        await self._attempt(run, handler)

    async def _attempt(self, run: TaskRun, handler: TaskHandler) -> None:
        work = run.run_handler(handler)
        beat = asyncio.create_task(self._heartbeat(run))
        failure: Exception | None = None
        try:
            result = await work
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if run.taken_by is None or (current is not None and current.cancelling()):
                raise  # the worker itself is being stopped
            run.log_taken("its handler was stopped")
            return
        except Exception as exc:
            failure = exc
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
        await self._end(run, result if failure is None else None, failure)

    async def _end(self, run: TaskRun, result: JsonValue, failure: Exception | None) -> None:
        """Report the handler's outcome, unless the attempt was taken away meanwhile."""
        if run.taken_by is None:
            if failure is None:
                refused = await self._report_end(run, result=result)
            else:
                retry = isinstance(failure, RetryTask)
                reason = str(failure) if retry else f"{type(failure).__name__}: {failure}"
                refused = await self._report_end(run, fail=reason or "retry requested", retry=retry)
            if refused is None:
                if failure is not None and not isinstance(failure, RetryTask):
                    log.error("task %s failed", run.task_id, exc_info=failure)
                return
            if not run.take_away(refused):
                log.warning(
                    "task %s: the end of attempt %d was refused: %s",
                    run.task_id,
                    run.attempt,
                    refused.message,
                )
                return
        what = "its result" if failure is None else f"its failure ({failure!r})"
        run.log_taken(f"{what} was not recorded")

    async def _heartbeat(self, run: TaskRun) -> None:
        """Report every third of the time to the deadline; the handler is cancelled if the
        task was cancelled (or taken from this worker) meanwhile."""
        while True:
            await asyncio.sleep(_beat_interval(run.task))
            if not await run.keep_alive():
                return

    async def _report_end(
        self,
        run: TaskRun,
        *,
        result: JsonValue = None,
        fail: str | None = None,
        retry: bool = False,
    ) -> RequestFailed | None:
        """Complete or fail the attempt, retrying while the service is unreachable until the
        attempt's deadline (the service gives the attempt up after it anyway). The service's
        refusal, if it refused; None otherwise."""
        give_up_at = time.monotonic() + _time_left(run.task)
        while True:
            try:
                if fail is None:
                    await self.client.complete_task(run.task_id, run.attempt, result)
                else:
                    await self.client.fail_task(run.task_id, run.attempt, fail[:4000], retry=retry)
                return None
            except ServiceUnavailable as exc:
                left = give_up_at - time.monotonic()
                if left <= 0:
                    log.warning(
                        "task %s: the end of attempt %d was not reported (%s) before the "
                        "attempt's deadline; the service gives the attempt up instead",
                        run.task_id,
                        run.attempt,
                        exc.message,
                    )
                    return None
                await asyncio.sleep(min(RETRY_DELAY_S, left))
            except RequestFailed as exc:
                return exc


def _time_left(task: Task) -> float:
    """Seconds until the service would give the attempt up (as last reported)."""
    if task.deadline_at is None:
        return NO_DEADLINE_PATIENCE_S
    return (task.deadline_at - datetime.now(UTC)).total_seconds()


def _beat_interval(task: Task) -> float:
    """A third of the time left before the service would give the attempt up."""
    if task.status is not TaskStatus.RUNNING or task.deadline_at is None:
        return 1.0
    left = (task.deadline_at - datetime.now(UTC)).total_seconds()
    return max(MIN_HEARTBEAT_S, left / 3)
