"""The bridge refuses to start with weak or incomplete authentication settings."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from agent_orchestrator.bridge import BridgeSettings
from agent_orchestrator.bridge.settings import STATE_ENVELOPE_BYTES, AuthMode, weakness

STRONG = "Zq8#vL2!pR7@xT4$wN9%kM1^bH6&cJ3*"


@pytest.mark.parametrize(
    "secret",
    ["your_secret_key", "changeme" * 5, "short-but-random-1!", "a" * 64, "abababab" * 8],
)
def test_weak_jwt_secrets_are_refused(secret: str) -> None:
    assert weakness(secret) is not None
    with pytest.raises(ValidationError, match="jwt_secret is refused"):
        BridgeSettings(auth=AuthMode.JWT, jwt_secret=secret)


def test_a_strong_secret_is_accepted_and_auth_is_off_by_default() -> None:
    assert weakness(STRONG) is None
    assert BridgeSettings(auth=AuthMode.JWT, jwt_secret=STRONG).auth is AuthMode.JWT
    assert BridgeSettings().auth is AuthMode.OFF
    assert BridgeSettings().cors_origins == []


def test_jwt_needs_one_key_source_and_api_keys_a_file(tmp_path: Path) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text('{"keys": []}')
    with pytest.raises(ValidationError, match="exactly one"):
        BridgeSettings(auth=AuthMode.JWT)
    with pytest.raises(ValidationError, match="exactly one"):
        BridgeSettings(auth=AuthMode.JWT, jwt_secret=STRONG, jwt_jwks_file=jwks)
    with pytest.raises(ValidationError, match="does not exist"):
        BridgeSettings(auth=AuthMode.JWT, jwt_jwks_file=tmp_path / "missing.json")
    with pytest.raises(ValidationError, match="api_keys_file"):
        BridgeSettings(auth=AuthMode.API_KEYS)


def test_cors_origins_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AO_BRIDGE_CORS_ORIGINS", "https://a.example, https://b.example")
    assert BridgeSettings().cors_origins == ["https://a.example", "https://b.example"]
    monkeypatch.setenv("AO_BRIDGE_CORS_ORIGINS", '["https://c.example"]')
    assert BridgeSettings().cors_origins == ["https://c.example"]


def test_the_bridge_command_refuses_a_weak_secret_without_printing_it() -> None:
    from typer.testing import CliRunner

    from agent_orchestrator.cli import app

    env = {"AO_BRIDGE_AUTH": "jwt", "AO_BRIDGE_JWT_SECRET": "my-weak-secret"}
    result = CliRunner().invoke(app, ["bridge", "--port", "1"], env=env)
    assert result.exit_code == 2
    assert "refuses to start" in result.output
    assert "my-weak-secret" not in result.output


def test_the_state_limit_is_read_from_the_services_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from agent_orchestrator.settings import Settings

    assert BridgeSettings().max_state_bytes == Settings.model_fields["max_state_bytes"].default
    monkeypatch.setenv("AO_MAX_STATE_BYTES", str(2 * 1024 * 1024))
    settings = BridgeSettings(max_body_bytes=1024 * 1024)
    assert settings.max_state_bytes == 2 * 1024 * 1024
    assert settings.max_state_body_bytes == 2 * 1024 * 1024 + STATE_ENVELOPE_BYTES
    assert BridgeSettings(max_state_bytes=4096).max_state_bytes == 4096
    with pytest.raises(ValidationError):
        BridgeSettings(max_state_bytes=100)
