"""A2A push notifications: configs kept by the service, changes POSTed by the bridges.

A config is stored by the service with its task (``task.push_config.*``, PostgreSQL), so it
outlives any bridge. Every bridge runs a :class:`PushSender` on one shared durable consumer of
AGENT_EVENTS (``a2a-push``, task events only): each task event is taken by one bridge, which
reads the task's configs and, if it has any, POSTs the task as it is now (an A2A
``StreamResponse`` holding the task) to each. A webhook that fails (no answer, not 2xx) gets the
event again with growing delays (:data:`RETRY_DELAYS_S`); a bridge that stops or crashes
mid-way leaves the event unacknowledged, and another bridge (or the same, restarted) sends it.
Delivery is at least once: a receiver may see one state twice.
"""

import asyncio
import contextlib
import json
import logging
from typing import Any
from uuid import UUID

import httpx
import nats.errors
from a2a.types import AuthenticationInfo, StreamResponse, TaskPushNotificationConfig
from google.protobuf.json_format import MessageToDict
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from agent_orchestrator.bridge.a2a.calls import ServiceCalls, ServiceError
from agent_orchestrator.bridge.a2a.convert import a2a_task
from agent_orchestrator.bridge.nats_client import BridgeState
from agent_orchestrator.contracts import subjects
from agent_orchestrator.contracts.events import EventKind
from agent_orchestrator.contracts.push import PushConfig, PushConfigs
from agent_orchestrator.contracts.subjects import EVENTS_STREAM

log = logging.getLogger(__name__)

DURABLE = "a2a-push"
TOKEN_HEADER = "X-A2A-Notification-Token"
RETRY_DELAYS_S = (1.0, 2.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0)
"""Delays between attempts to deliver one change (then it is dropped, and logged)."""
TASK_EVENTS = (
    EventKind.TASK_QUEUED,
    EventKind.TASK_STARTED,
    EventKind.TASK_PROGRESS,
    EventKind.TASK_INPUT_REQUIRED,
    EventKind.TASK_INPUT_PROVIDED,
    EventKind.TASK_SUCCEEDED,
    EventKind.TASK_FAILED,
    EventKind.TASK_CANCELLED,
)
POST_TIMEOUT_S = 10.0
ACK_WAIT_S = 30.0
"""An event taken by a bridge that stopped before acknowledging it is sent again after this."""
FETCH_WAIT_S = 1.0
"""How long one pull waits: also how long a stopped bridge's last pull may still take events
(they then wait ACK_WAIT_S)."""


def a2a_config(config: PushConfig) -> TaskPushNotificationConfig:
    """A stored config as A2A's."""
    converted = TaskPushNotificationConfig(
        id=config.config_id, task_id=str(config.task_id), url=config.url, token=config.token or ""
    )
    if config.auth_scheme:
        converted.authentication.CopyFrom(
            AuthenticationInfo(scheme=config.auth_scheme, credentials=config.auth_credentials or "")
        )
    return converted


def config_body(task_id: str, config: TaskPushNotificationConfig) -> dict[str, Any]:
    """The task.push_config.set body for an A2A config."""
    body: dict[str, Any] = {"task_id": task_id, "url": config.url}
    if config.id:
        body["config_id"] = config.id
    if config.token:
        body["token"] = config.token
    if config.HasField("authentication") and config.authentication.scheme:
        body["auth_scheme"] = config.authentication.scheme
        if config.authentication.credentials:
            body["auth_credentials"] = config.authentication.credentials
    return body


def headers_for(config: PushConfig) -> dict[str, str]:
    """The headers of one notification: its token, its Authorization."""
    headers = {}
    if config.token:
        headers[TOKEN_HEADER] = config.token
    if config.auth_scheme and config.auth_credentials:
        headers["Authorization"] = f"{config.auth_scheme} {config.auth_credentials}"
    return headers


class PushSender:
    """Sends each task change to the task's webhooks; one shared durable consumer."""

    def __init__(self, state: BridgeState, http: httpx.AsyncClient | None = None) -> None:
        self._state = state
        self._calls = ServiceCalls(state, None, "a2a-push")
        self._http = http or httpx.AsyncClient(timeout=POST_TIMEOUT_S)
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        """Run in the background until :meth:`stop`."""
        self._task = asyncio.create_task(self._run(), name="a2a-push-sender")

    async def stop(self) -> None:
        """Stop; an event being sent is left to be sent again."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            # nats-py's fetch may turn the cancellation into a TimeoutError; the loop then
            # sees _stopping. Never wait longer than a pull.
            await asyncio.wait({self._task}, timeout=FETCH_WAIT_S + 1)
        await self._http.aclose()

    async def _subscribe(self) -> Any:
        assert self._state.nc is not None
        config = ConsumerConfig(
            durable_name=DURABLE,
            deliver_policy=DeliverPolicy.NEW,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ACK_WAIT_S,
            max_deliver=len(RETRY_DELAYS_S) + 1,
            filter_subjects=[f"agent.event.*.{kind.value}" for kind in TASK_EVENTS],
        )
        js = self._state.nc.jetstream()
        await js.add_consumer(EVENTS_STREAM, config)  # creates it, or keeps it as it is
        return await js.pull_subscribe_bind(DURABLE, EVENTS_STREAM)

    async def _run(self) -> None:
        while not self._stopping:
            try:
                sub = await self._subscribe()
                try:
                    while not self._stopping:
                        try:
                            msgs = await sub.fetch(10, timeout=FETCH_WAIT_S)
                        except (nats.errors.TimeoutError, TimeoutError):
                            continue
                        for msg in msgs:
                            await self._handle(msg)
                finally:
                    with contextlib.suppress(nats.errors.Error):
                        await sub.unsubscribe()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the A2A push sender stopped; starting again in 5 s")
                await asyncio.sleep(5.0)

    async def _handle(self, msg: Any) -> None:
        attempt = msg.metadata.num_delivered
        try:
            delivered = await self.deliver(json.loads(msg.data))
        except Exception:
            log.exception("A2A push for %s failed", msg.subject)
            delivered = False
        if delivered or attempt > len(RETRY_DELAYS_S):
            if not delivered:
                log.warning("A2A push for %s dropped after %d attempts", msg.subject, attempt)
            await msg.ack()
        else:
            await msg.nak(delay=RETRY_DELAYS_S[attempt - 1])

    async def deliver(self, event: dict[str, Any]) -> bool:
        """Send one task event's change to the task's webhooks; whether all took it."""
        task_id = str(UUID(str(event["data"]["task_id"])))
        try:
            data = await self._calls.request(subjects.TASK_PUSH_LIST, {"task_id": task_id})
        except ServiceError as exc:
            if exc.code == "not_found":
                return True  # the task is gone, and its configs with it
            raise
        configs = PushConfigs.model_validate(data).items
        if not configs:
            return True
        task = await self._calls.task(task_id)
        payload = MessageToDict(StreamResponse(task=a2a_task(task, 0)))
        results = await asyncio.gather(
            *(self._post(config, payload) for config in configs), return_exceptions=True
        )
        return all(result is True for result in results)

    async def _post(self, config: PushConfig, payload: dict[str, Any]) -> bool:
        try:
            response = await self._http.post(config.url, json=payload, headers=headers_for(config))
        except httpx.HTTPError as exc:
            log.warning("A2A push to %s failed: %s", config.url, exc)
            return False
        if response.is_success:
            return True
        log.warning("A2A push to %s answered %d", config.url, response.status_code)
        return False


__all__ = ["PushSender", "a2a_config", "config_body"]
