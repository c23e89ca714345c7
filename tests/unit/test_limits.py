"""Which size limit applies to which request, and how a refusal names it."""

from agent_orchestrator.contracts.limits import (
    MIB,
    STATE_ENVELOPE_BYTES,
    Limit,
    human_bytes,
    max_payload_refusal,
    payload_needed,
    request_limit,
)


def test_a_state_update_may_carry_a_whole_state_other_requests_keep_the_request_limit() -> None:
    limits = {"max_request_bytes": 256 * 1024, "max_state_bytes": 6 * MIB}
    state = request_limit("agent.state.update", **limits)
    assert (state.bytes, state.setting) == (6 * MIB + STATE_ENVELOPE_BYTES, "AO_MAX_STATE_BYTES")
    for subject in ("agent.create", "agent.send", "agent.checkpoint.restore", "task.complete"):
        other = request_limit(subject, **limits)
        assert (other.bytes, other.setting) == (256 * 1024, "AO_MAX_REQUEST_BYTES"), subject
    assert payload_needed(**limits) == 6 * MIB + STATE_ENVELOPE_BYTES


def test_refusals_say_the_size_the_limit_and_the_setting_that_raises_it() -> None:
    refusal = Limit(MIB, "AO_MAX_STATE_BYTES").refusal("state", 1258291)
    assert refusal == "state is 1.2 MiB (1258291 bytes); the limit is 1 MiB (AO_MAX_STATE_BYTES)"
    state_request = request_limit("agent.state.update", max_request_bytes=1024, max_state_bytes=MIB)
    assert state_request.refusal("request body", 2 * MIB).endswith(
        "the limit is 1 MiB + 64 KiB (AO_MAX_STATE_BYTES)"
    )
    assert "nats-server configuration" in max_payload_refusal("request", 2 * MIB, MIB)
    assert Limit(10, "X").details(11) == {"size": 11, "limit": 10, "setting": "X"}


def test_sizes_read_as_people_write_them() -> None:
    assert [human_bytes(n) for n in (900, 256 * 1024, 300_000, 8 * MIB)] == [
        "900 bytes",
        "256 KiB",
        "293.0 KiB",
        "8 MiB",
    ]
