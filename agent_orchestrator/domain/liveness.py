"""Rules of liveness and recovery: valid policies, what a lost heartbeat leads to.

The policies an agent's configuration carries (``liveness``, ``recovery``, ``tasks``) are
checked here, together, when an agent is made or changed."""

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from agent_orchestrator.contracts.liveness import (
    HEARTBEAT_LOST,
    LIVENESS_KEY,
    RECOVERY_EXHAUSTED,
    RECOVERY_KEY,
    LivenessPolicy,
    RecoveryPolicy,
)
from agent_orchestrator.contracts.tasks import TASK_POLICY_KEY, TaskPolicy
from agent_orchestrator.domain.errors import ValidationFailed

LIVENESS_MONITOR = "liveness-monitor"
RECOVERY_POLICY = "recovery-policy"


def check_policies(configuration: dict[str, Any]) -> None:
    """Refuse a configuration whose ``liveness``, ``recovery`` or ``tasks`` policy the service
    cannot follow."""
    details = []
    policies: tuple[tuple[str, type[LivenessPolicy | RecoveryPolicy | TaskPolicy]], ...] = (
        (LIVENESS_KEY, LivenessPolicy),
        (RECOVERY_KEY, RecoveryPolicy),
        (TASK_POLICY_KEY, TaskPolicy),
    )
    for key, policy in policies:
        try:
            policy.of(configuration)
        except ValidationError as exc:
            for err in exc.errors(include_url=False, include_input=False):
                path = ".".join(["configuration", key, *(str(p) for p in err["loc"])])
                details.append({"path": path, "message": err["msg"]})
    if details:
        raise ValidationFailed(
            "configuration.liveness / .recovery / .tasks is not a valid policy", details
        )


@dataclass(frozen=True)
class LossOutcome:
    """What a lost heartbeat does to an ACTIVE agent."""

    reason: str
    recover: bool


def on_heartbeat_lost(policy: RecoveryPolicy, recent_recoveries: int) -> LossOutcome:
    """ERROR with heartbeat_lost, recovered automatically if the policy says so, unless its
    automatic recoveries within the window are used up: then ERROR with recovery_exhausted."""
    if not policy.automatic:
        return LossOutcome(HEARTBEAT_LOST, recover=False)
    if recent_recoveries >= policy.max_attempts:
        return LossOutcome(RECOVERY_EXHAUSTED, recover=False)
    return LossOutcome(HEARTBEAT_LOST, recover=True)
