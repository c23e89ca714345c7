"""Bridge settings from the environment (``NATS_URL``, ``AO_BRIDGE_*``)."""

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class BridgeSettings(BaseSettings):
    """What the bridge needs: where NATS is, how long to wait, how much to accept."""

    model_config = SettingsConfigDict(env_prefix="AO_BRIDGE_", env_file=".env", extra="ignore")

    nats_url: str = Field(
        default="nats://127.0.0.1:4222",
        validation_alias=AliasChoices("NATS_URL", "AO_BRIDGE_NATS_URL"),
        description="NATS server(s), comma-separated.",
    )
    request_timeout_s: float = Field(
        default=5.0, gt=0, le=300, description="How long one NATS request may take (then 504)."
    )
    max_body_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="Larger request bodies get 413."
    )
    ready_timeout_s: float = Field(
        default=1.0, gt=0, le=30, description="How long /readyz waits for the service's ping."
    )
