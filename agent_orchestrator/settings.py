"""Service settings from the environment (``NATS_URL``, ``DATABASE_URL``, ``AO_*``)."""

from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from agent_orchestrator.contracts.limits import (
    MAX_REQUEST_SETTING,
    MAX_STATE_SETTING,
    MIB,
    NATS_MAX_PAYLOAD,
    STATE_ENVELOPE_BYTES,
    human_bytes,
    payload_needed,
)


class Settings(BaseSettings):
    """Everything the service can be told at start-up; validated before anything connects."""

    model_config = SettingsConfigDict(env_prefix="AO_", env_file=".env", extra="ignore")

    nats_url: str = Field(
        default="nats://127.0.0.1:4222",
        validation_alias=AliasChoices("NATS_URL", "AO_NATS_URL"),
        description="NATS server(s), comma-separated.",
    )
    database_url: str = Field(
        default="",
        validation_alias=AliasChoices("DATABASE_URL", "AO_DATABASE_URL"),
        description="PostgreSQL DSN (asyncpg form: postgresql://user:pass@host:port/db).",
    )
    nats_service_account: str | None = Field(
        default=None,
        min_length=1,
        description="The service's NATS account in the production layout (docs/security.md): "
        "requests from other accounts carry nats-server's Nats-Request-Info, which then names "
        "the project (the account) and the actor (the user); unset: one open account, callers "
        "are who their headers say.",
    )
    js_replicas: int = Field(default=1, ge=1, le=5, description="Replicas of streams/buckets.")
    events_max_age_s: int = Field(default=7 * 24 * 3600, ge=60)
    duplicate_window_s: int = Field(default=300, ge=10, description="Stream dedup window.")
    max_request_bytes: int = Field(
        default=256 * 1024,
        ge=1024,
        le=8 * 1024 * 1024,
        description="Largest request body, except those that carry a state "
        "(agent.state.update: max_state_bytes plus 64 KiB); larger get payload_too_large.",
    )
    max_state_bytes: int = Field(
        default=6 * 1024 * 1024,
        ge=1024,
        le=64 * 1024 * 1024 - STATE_ENVELOPE_BYTES,
        description="Largest stored state, written in one agent.state.update or reached by "
        "merges; larger get payload_too_large. The NATS server's max_payload must allow it "
        "plus 64 KiB (the embedded one and docker-compose.yml allow 8 MiB; NATS's default is "
        "1 MiB); the service warns at start-up when it does not.",
    )
    max_checkpoint_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        le=1024 * 1024 * 1024,
        description="Largest checkpoint; larger ones get payload_too_large.",
    )
    checkpoint_inline_max_bytes: int = Field(
        default=256 * 1024,
        ge=1024,
        le=1024 * 1024,
        description="Checkpoints up to this size are KV values; larger go to the object store.",
    )
    state_history: int = Field(
        default=16, ge=1, le=64, description="Revisions of each state kept for history."
    )
    handler_max_workers: int = Field(
        default=32,
        ge=1,
        le=1024,
        description="Requests one subject handles concurrently; also the largest batch one "
        "subject gives the group commit and group read (32: the least CPU per request "
        "measured, docs/profiles.md).",
    )
    protocol_adapter: bool = Field(
        default=True,
        description="Serve the adopted agents of the NATS agent protocol: their heartbeats "
        "feed liveness, their tasks go to them as prompts (docs/agent-protocol.md).",
    )
    db_pool_min: int = Field(default=2, ge=1)
    db_pool_max: int = Field(default=20, ge=1, le=500)
    init_job_ack_wait_s: float = Field(
        default=30.0, ge=1.0, description="Redeliver an unfinished initialization after this."
    )
    init_job_batch: int = Field(
        default=200,
        ge=1,
        le=1000,  # the job consumer's max_ack_pending
        description="Initialization jobs one instance fetches and prepares at a time; their "
        "reads and moves to READY share one statement each.",
    )
    init_max_attempts: int = Field(
        default=5, ge=1, le=100, description="Failed preparations before an agent goes to ERROR."
    )
    max_message_bytes: int = Field(
        default=64 * 1024,
        ge=16,
        le=8 * 1024 * 1024,
        description="Largest message content (JSON); larger sends get payload_too_large.",
    )
    max_sender_backlog: int = Field(
        default=10_000,
        ge=1,
        le=10_000_000,
        description="Undelivered messages one agent may have outstanding; more sends are "
        "refused with `unavailable` until recipients catch up.",
    )
    project_max_agents: int = Field(
        default=10_000,
        ge=0,
        description="Agents not terminated one project may hold; agent.create beyond is "
        "`quota_exceeded`. Counted for requests with a project (Project-Scope or a tenant's "
        "NATS account); 0: no quota.",
    )
    project_max_tasks_in_flight: int = Field(
        default=10_000,
        ge=0,
        description="Tasks queued, running or waiting for input per project; agent.execute "
        "beyond is `quota_exceeded` (0: no quota).",
    )
    project_max_waiting_messages: int = Field(
        default=100_000,
        ge=0,
        description="Messages waiting for delivery per project; agent.send beyond is "
        "`quota_exceeded` (0: no quota).",
    )
    project_max_requests_per_s: int = Field(
        default=1_000,
        ge=0,
        description="Requests per second one project may send to each service instance; more "
        "are `quota_exceeded` (0: no quota).",
    )
    worker_inactive_s: float = Field(
        default=60.0,
        ge=1,
        le=24 * 3600,
        description="A consumer a worker created for its agent's messages or tasks is removed "
        "by nats-server after this long without a pull (its worker died; a worker that stops "
        "cleanly removes it itself). Its unacknowledged messages wait in the stream for the "
        "next worker.",
    )
    message_ack_wait_s: float = Field(
        default=30.0, ge=0.5, le=3600, description="Redeliver an unacknowledged message after."
    )
    message_max_deliveries: int = Field(
        default=5, ge=1, le=1000, description="Deliveries before a message is FAILED."
    )
    sweep_s: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="How often expired messages and overdue tasks are found, and ended ones "
        "removed from their streams.",
    )
    task_timeout_s: int = Field(
        default=3600, ge=1, le=7 * 24 * 3600, description="Default timeout_s of agent.execute."
    )
    task_heartbeat_s: float = Field(
        default=30.0,
        ge=0.5,
        le=3600,
        description="A RUNNING task whose worker reports nothing for this long is given up "
        "(retried or TIMED_OUT); the worker SDK reports every third of it.",
    )
    task_max_attempts: int = Field(
        default=3, ge=1, le=100, description="Default max_attempts of agent.execute."
    )
    task_input_timeout_s: int = Field(
        default=24 * 3600,
        ge=1,
        le=30 * 24 * 3600,
        description="Default timeout_s of task.request_input: how long a question waits.",
    )
    task_ack_wait_s: float = Field(
        default=30.0,
        ge=0.5,
        le=3600,
        description="Redeliver an assignment its worker received but did not start within.",
    )
    outbox_sweep_s: float = Field(
        default=5.0, gt=0, description="Relay re-checks the outbox this often besides NOTIFY."
    )
    outbox_retention_s: int = Field(default=24 * 3600, ge=60)
    idempotency_ttl_s: int = Field(default=24 * 3600, ge=60)
    log_level: str = Field(default="INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")
    # Observability (metrics port, log format); tracing follows the standard OTEL_* variables.
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="Log lines as text, or as JSON objects carrying trace_id and span_id.",
    )
    metrics_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Serve Prometheus metrics at http://<metrics_host>:<port>/metrics; 0: off "
        "(`agent-orchestrator dev` serves them on 9464).",
    )
    metrics_host: str = Field(
        default="0.0.0.0", min_length=1, description="Interface the metrics port listens on."
    )

    @model_validator(mode="after")
    def _check(self) -> "Settings":
        if self.db_pool_min > self.db_pool_max:
            raise ValueError("db_pool_min must not exceed db_pool_max")
        if self.duplicate_window_s > self.events_max_age_s:
            raise ValueError("duplicate_window_s must not exceed events_max_age_s")
        if self.checkpoint_inline_max_bytes > self.max_checkpoint_bytes:
            raise ValueError("checkpoint_inline_max_bytes must not exceed max_checkpoint_bytes")
        if self.max_state_bytes > self.max_checkpoint_bytes:
            raise ValueError(
                "max_state_bytes must not exceed max_checkpoint_bytes (every state must fit "
                "in a checkpoint)"
            )
        if self.max_message_bytes > self.max_request_bytes:
            raise ValueError("max_message_bytes must not exceed max_request_bytes")
        return self

    def payload_warning(self, max_payload: int) -> str | None:
        """What to tell the operator when the NATS server's ``max_payload`` is below what
        the size limits need; None when it is enough."""
        needed = payload_needed(
            max_request_bytes=self.max_request_bytes, max_state_bytes=self.max_state_bytes
        )
        if max_payload >= needed:
            return None
        if needed == self.max_request_bytes:
            setting, value = MAX_REQUEST_SETTING, self.max_request_bytes
            wants = human_bytes(needed)
        else:
            setting, value = MAX_STATE_SETTING, self.max_state_bytes
            wants = f"{human_bytes(value)} + {human_bytes(STATE_ENVELOPE_BYTES)}"
        return (
            f"{NATS_MAX_PAYLOAD} is {human_bytes(max_payload)}, below the {wants} that "
            f"{setting}={human_bytes(value)} needs: requests "
            f"and states above {human_bytes(max_payload)} are refused (payload_too_large) "
            f"whatever {setting} says. Raise max_payload in the nats-server configuration "
            f"(max_payload: {-(-needed // MIB)}MB) or lower {setting}."
        )
