"""Bridge settings from the environment (``NATS_URL``, ``AO_BRIDGE_*``, and the service's
``AO_MAX_STATE_BYTES``)."""

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic.functional_validators import BeforeValidator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from agent_orchestrator.contracts.limits import STATE_ENVELOPE_BYTES

MIN_SECRET_BYTES = 32
# Room for the request around a state: mode, expected_revision, whitespace.
WEAK_SECRETS = frozenset(
    {
        "secret",
        "changeme",
        "change-me",
        "your_secret_key",
        "your-secret-key",
        "jwt_secret",
        "jwt-secret",
        "password",
        "default",
        "development",
    }
)


def weakness(secret: str) -> str | None:
    """Why a secret (or API key) is too weak to be used, or None."""
    if secret.lower().strip() in WEAK_SECRETS or "change" in secret.lower():
        return "it is a placeholder, not a secret"
    if len(secret.encode()) < MIN_SECRET_BYTES:
        return f"it is shorter than {MIN_SECRET_BYTES} bytes"
    if len(set(secret)) < 8:
        return "it has fewer than 8 distinct characters"
    return None


def _comma_list(value: object) -> object:
    """``a,b`` or a JSON list, from the environment."""
    if isinstance(value, str):
        value = value.strip()
        if value.startswith("["):
            return json.loads(value)
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class AuthMode(StrEnum):
    """How the bridge knows its callers."""

    OFF = "off"
    JWT = "jwt"
    API_KEYS = "api_keys"


class BridgeSettings(BaseSettings):
    """What the bridge needs: where NATS is, how long to wait, how much to accept."""

    # validate_by_name: fields read from another variable (max_state_bytes) can still be
    # given by name in code and tests.
    model_config = SettingsConfigDict(
        env_prefix="AO_BRIDGE_", env_file=".env", extra="ignore", validate_by_name=True
    )

    nats_url: str = Field(
        default="nats://127.0.0.1:4222",
        validation_alias=AliasChoices("NATS_URL", "AO_BRIDGE_NATS_URL"),
        description="NATS server(s), comma-separated.",
    )
    request_timeout_s: float = Field(
        default=5.0, gt=0, le=300, description="How long one NATS request may take (then 504)."
    )
    max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="Larger request bodies get 413 (but a state update's: see max_state_bytes).",
    )
    max_state_bytes: int = Field(
        default=6 * 1024 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        validation_alias=AliasChoices("AO_MAX_STATE_BYTES", "AO_BRIDGE_MAX_STATE_BYTES"),
        description="Largest agent state: the service's AO_MAX_STATE_BYTES, read from the same "
        "variable. A state update's body (PUT /api/agents/{id}/state) may be this plus "
        "STATE_ENVELOPE_BYTES, or max_body_bytes if that is more.",
    )
    ready_timeout_s: float = Field(
        default=1.0, gt=0, le=30, description="How long /readyz waits for the service's ping."
    )
    auth: AuthMode = Field(
        default=AuthMode.OFF,
        description="off (no authentication), jwt (Authorization: Bearer) or api_keys "
        "(X-API-Key). With either, each caller is scoped to one project.",
    )
    jwt_secret: SecretStr | None = Field(
        default=None, description="HS256 secret (at least 32 bytes, not a placeholder)."
    )
    jwt_jwks_file: Path | None = Field(
        default=None, description="A JWKS file of public keys (RS256, ES256, EdDSA, ...)."
    )
    jwt_audience: str | None = Field(default=None, description="Required `aud`, if set.")
    jwt_issuer: str | None = Field(default=None, description="Required `iss`, if set.")
    jwt_project_claim: str = Field(
        default="project",
        min_length=1,
        description="The claim naming the caller's project (`*`: every project).",
    )
    api_keys_file: Path | None = Field(
        default=None,
        description='A JSON file {"<key>": {"project": "<project or *>", "name": "<who>"}}.',
    )
    rate_limit_per_s: int = Field(
        default=200,
        ge=0,
        description="Requests per second per caller (the authenticated name, else the client "
        "address); more get 429 with Retry-After. 0: no limit.",
    )
    agent_creations_per_min: int = Field(
        default=600, ge=0, description="Agents one caller may create per minute (0: no limit)."
    )
    max_event_streams: int = Field(
        default=200,
        ge=0,
        description="Concurrent GET /api/events streams of this bridge, each a JetStream "
        "consumer (0: no limit).",
    )
    max_event_streams_per_caller: int = Field(
        default=10, ge=0, description="Concurrent event streams per caller (0: no limit)."
    )
    a2a_push: bool = Field(
        default=True,
        description="Send A2A push notifications (bridges share one durable consumer of task "
        "events; each event costs the service one task.push_config.list request).",
    )
    cors_origins: Annotated[list[str], NoDecode, BeforeValidator(_comma_list)] = Field(
        default_factory=list,
        description="Browser origins allowed to call the API (comma-separated); none by default.",
    )
    log_level: str = Field(
        default="INFO",
        pattern="^(DEBUG|INFO|WARNING|ERROR)$",
        validation_alias=AliasChoices("AO_LOG_LEVEL", "AO_BRIDGE_LOG_LEVEL"),
        description="Log level of `agent-orchestrator bridge` (AO_LOG_LEVEL, as the service).",
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        validation_alias=AliasChoices("AO_LOG_FORMAT", "AO_BRIDGE_LOG_FORMAT"),
        description="Log lines as text or JSON with trace_id/span_id (AO_LOG_FORMAT).",
    )

    @property
    def max_state_body_bytes(self) -> int:
        """The body limit of a state update: a whole state and its envelope."""
        return max(self.max_body_bytes, self.max_state_bytes + STATE_ENVELOPE_BYTES)

    @model_validator(mode="after")
    def _check_auth(self) -> Self:
        if self.auth is AuthMode.JWT:
            if (self.jwt_secret is None) == (self.jwt_jwks_file is None):
                raise ValueError("auth=jwt needs exactly one of jwt_secret and jwt_jwks_file")
            if self.jwt_secret is not None:
                why = weakness(self.jwt_secret.get_secret_value())
                if why:
                    raise ValueError(f"jwt_secret is refused: {why}")
            if self.jwt_jwks_file is not None and not self.jwt_jwks_file.is_file():
                raise ValueError(f"jwt_jwks_file {self.jwt_jwks_file} does not exist")
        if self.auth is AuthMode.API_KEYS and (
            self.api_keys_file is None or not self.api_keys_file.is_file()
        ):
            raise ValueError("auth=api_keys needs api_keys_file, an existing JSON file")
        return self
