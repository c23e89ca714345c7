"""Settings refuse combinations that cannot work, before anything connects."""

import pytest
from pydantic import ValidationError

from agent_orchestrator.settings import Settings


def test_defaults_are_valid() -> None:
    settings = Settings(database_url="postgresql://x@localhost/db")
    assert settings.max_state_bytes <= settings.max_checkpoint_bytes
    assert settings.max_message_bytes <= settings.max_request_bytes


@pytest.mark.parametrize(
    "overrides",
    [
        {"db_pool_min": 30, "db_pool_max": 10},
        {"duplicate_window_s": 7200, "events_max_age_s": 3600},
        {"checkpoint_inline_max_bytes": 512 * 1024, "max_checkpoint_bytes": 256 * 1024},
        {"max_state_bytes": 32 * 1024 * 1024},  # over max_checkpoint_bytes: never checkpointed
        {"max_message_bytes": 512 * 1024},  # over max_request_bytes: agent.send cannot carry it
        {"js_replicas": 0},
        {"log_level": "LOUD"},
    ],
)
def test_unsafe_values_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings(database_url="postgresql://x@localhost/db", **overrides)


def test_environment_names_follow_the_readme(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NATS_URL", "nats://a:1")
    monkeypatch.setenv("DATABASE_URL", "postgresql://b/c")
    monkeypatch.setenv("AO_STATE_HISTORY", "7")
    settings = Settings()
    assert (settings.nats_url, settings.database_url, settings.state_history) == (
        "nats://a:1",
        "postgresql://b/c",
        7,
    )


def test_requests_may_be_larger_than_states() -> None:
    # A state request has its own limit (max_state_bytes + envelope): nothing to reconcile.
    settings = Settings(
        database_url="postgresql://x@localhost/db",
        max_request_bytes=2 * 1024 * 1024,
        max_state_bytes=1024 * 1024,
    )
    assert settings.max_request_bytes > settings.max_state_bytes


def test_a_max_payload_below_the_state_limit_is_warned_about_by_name() -> None:
    settings = Settings(database_url="postgresql://x@localhost/db")
    assert settings.payload_warning(8 * 1024 * 1024) is None
    warning = settings.payload_warning(1024 * 1024)
    assert warning is not None
    assert "max_payload is 1 MiB" in warning
    assert "AO_MAX_STATE_BYTES" in warning
    assert "raise max_payload in the nats-server configuration" in warning.lower()
    small = Settings(database_url="postgresql://x@localhost/db", max_state_bytes=512 * 1024)
    assert small.payload_warning(1024 * 1024) is None
