"""Liveness and recovery policies and what a lost heartbeat leads to, without I/O."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_orchestrator.contracts.liveness import LivenessPolicy, RecoveryPolicy
from agent_orchestrator.domain.errors import ValidationFailed
from agent_orchestrator.domain.liveness import check_policies, on_heartbeat_lost


def test_policies_default_when_the_configuration_sets_none() -> None:
    liveness = LivenessPolicy.of({"model": "small"})
    assert (liveness.heartbeat_window_s, liveness.require_heartbeat, liveness.grace_s) == (
        15,
        False,
        30,
    )
    assert LivenessPolicy.of({"liveness": {"activation_grace_s": 7}}).grace_s == 7
    recovery = RecoveryPolicy.of({})
    assert (recovery.automatic, recovery.max_attempts, recovery.target) == (False, 3, "ACTIVE")


def test_invalid_policies_are_refused_with_every_failing_path() -> None:
    configuration = {
        "liveness": {"heartbeat_window_s": 0},
        "recovery": {"max_attempts": 0, "surprise": 1},
    }
    with pytest.raises(ValidationFailed) as refused:
        check_policies(configuration)
    assert sorted(d["path"] for d in refused.value.details) == [
        "configuration.liveness.heartbeat_window_s",
        "configuration.recovery.max_attempts",
        "configuration.recovery.surprise",
    ]
    check_policies({"liveness": None, "other": {"heartbeat_window_s": 0}})  # not ours: fine


def test_without_automatic_recovery_a_loss_is_just_heartbeat_lost() -> None:
    outcome = on_heartbeat_lost(RecoveryPolicy(), recent_recoveries=99)
    assert (outcome.reason, outcome.recover) == ("heartbeat_lost", False)


@given(st.integers(min_value=1, max_value=20), st.integers(min_value=0, max_value=40))
def test_automatic_recovery_stops_after_max_attempts_within_the_window(
    max_attempts: int, recent: int
) -> None:
    outcome = on_heartbeat_lost(RecoveryPolicy(automatic=True, max_attempts=max_attempts), recent)
    assert outcome.recover == (recent < max_attempts)
    expected = "heartbeat_lost" if recent < max_attempts else "recovery_exhausted"
    assert outcome.reason == expected
