"""Settings refuse combinations that cannot work, before anything connects."""

import pytest
from pydantic import ValidationError

from agent_orchestrator.settings import Settings


def test_defaults_are_valid() -> None:
    settings = Settings(database_url="postgresql://x@localhost/db")
    assert settings.max_request_bytes <= settings.max_state_bytes


@pytest.mark.parametrize(
    "overrides",
    [
        {"db_pool_min": 30, "db_pool_max": 10},
        {"duplicate_window_s": 7200, "events_max_age_s": 3600},
        {"checkpoint_inline_max_bytes": 512 * 1024, "max_checkpoint_bytes": 256 * 1024},
        {"max_request_bytes": 2 * 1024 * 1024, "max_state_bytes": 1024 * 1024},
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
