"""How a worker's consumer on AGENT_MESSAGES or AGENT_TASKS delivers.

The service writes these settings into the stream's metadata at start-up; a worker reads them
(one ``STREAM.INFO``) and creates its agent's consumer with them, so every worker of every
language delivers alike and the operator sets them in one place (``AO_MESSAGE_*``,
``AO_TASK_*``).
"""

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict

METADATA_PREFIX = "agent-orchestrator."


class QueueSettings(BaseModel):
    """Ack wait, deliveries (-1: no limit), held messages, and how long a consumer nobody
    pulls from lives on (its worker died)."""

    model_config = ConfigDict(frozen=True)

    ack_wait_s: float = 30.0
    max_deliveries: int = 5
    max_ack_pending: int = 1000
    inactive_threshold_s: float = 60.0

    def metadata(self) -> dict[str, str]:
        """As stream metadata (string values)."""
        return {f"{METADATA_PREFIX}{k}": str(v) for k, v in self.model_dump().items()}

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str] | None) -> "QueueSettings":
        """Read back what ``metadata`` wrote; defaults for what is missing."""
        found = {
            key.removeprefix(METADATA_PREFIX): value
            for key, value in (metadata or {}).items()
            if key.startswith(METADATA_PREFIX)
        }
        known = {k: v for k, v in found.items() if k in cls.model_fields}
        return cls.model_validate(known)
