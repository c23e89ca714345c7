"""Push configs of a task: webhooks told of every change of the task (A2A push notifications).

A config belongs to its task (and goes with it); the A2A bridge's sender POSTs each change of
the task to ``url`` with ``token`` in ``X-A2A-Notification-Token`` and, when set,
``Authorization: <auth_scheme> <auth_credentials>``.
"""

from uuid import UUID

from pydantic import Field

from agent_orchestrator.contracts.common import EXAMPLE_ID, Reply, Request, Timestamp, examples

MAX_PUSH_CONFIGS = 10
"""Push configs one task may have."""

CONFIG_ID_PATTERN = r"^[A-Za-z0-9._~:-]+$"


class PushConfig(Reply):
    """A webhook told of every change of a task."""

    task_id: UUID
    config_id: str
    url: str = Field(description="Where the changes are POSTed (http or https).")
    token: str | None = Field(default=None, description="Sent as X-A2A-Notification-Token.")
    auth_scheme: str | None = Field(default=None, description="Authorization scheme, e.g. Bearer.")
    auth_credentials: str | None = Field(default=None, description="Authorization credentials.")
    created_at: Timestamp


class SetPushConfig(Request):
    """Create or replace a push config of a task."""

    model_config = examples(
        {
            "task_id": EXAMPLE_ID,
            "config_id": "default",
            "url": "https://client.example/a2a/webhook",
            "token": "opaque-per-task-token",
        }
    )

    task_id: UUID
    config_id: str = Field(
        default="default",
        min_length=1,
        max_length=200,
        pattern=CONFIG_ID_PATTERN,
        description="The config's id within its task; setting it again replaces the config.",
    )
    url: str = Field(
        min_length=8,
        max_length=2000,
        pattern=r"^https?://[^\s]+$",
        description="Where the changes are POSTed (http or https).",
    )
    token: str | None = Field(default=None, min_length=1, max_length=1000)
    auth_scheme: str | None = Field(default=None, min_length=1, max_length=100)
    auth_credentials: str | None = Field(default=None, min_length=1, max_length=4000)


class PushConfigRef(Request):
    """One push config of a task."""

    task_id: UUID
    config_id: str = Field(min_length=1, max_length=200, pattern=CONFIG_ID_PATTERN)


class ListPushConfigs(Request):
    """The push configs of a task."""

    task_id: UUID


class PushConfigs(Reply):
    """A task's push configs, oldest first."""

    items: list[PushConfig]


class PushConfigDeleted(Reply):
    """The reply of task.push_config.delete."""

    task_id: UUID
    config_id: str
    deleted: bool = Field(description="False if there was no such config.")
