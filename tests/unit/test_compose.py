"""docker-compose.yml starts a working stack: nats (JetStream), postgres, the service, the bridge.

Always: the file is valid against the Compose Specification's JSON Schema (vendored in
tests/data, see its README) and holds together in ways the schema cannot see. With a Docker
engine and the compose plugin: `docker compose config -q` accepts it too.
"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import typer.main
import yaml
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from agent_orchestrator.bridge import BridgeSettings
from agent_orchestrator.cli import app
from agent_orchestrator.runtime.nats_accounts import SERVICE_ACCOUNT
from agent_orchestrator.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
SCHEMA_FILE = ROOT / "tests" / "data" / "compose-spec.json"
#: The services docs/production.md and DESIGN name.
SERVICES = {"nats", "postgres", "service", "bridge"}
#: Message schedules (AGENT_SCHEDULES' allow_msg_schedules) need nats-server 2.12.
MIN_NATS = (2, 12)
#: `${NAME:-default}` / `${NAME-default}`: a variable with a default; `${NAME:?message}` /
#: `${NAME?message}`: one compose refuses to start without; `$$`: a literal `$`.
INTERPOLATION = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"(?::?-(?P<default>[^}]*)|:?\?(?P<message>[^}]*))\}"
)
#: The variables that must be set (secrets, no default to fall back on silently), and what the
#: tests set them to.
REQUIRED = {
    "POSTGRES_PASSWORD": "a-test-password",
    "NATS_SERVICE_PASSWORD": "a-service-password",
    "NATS_BRIDGE_PASSWORD": "a-bridge-password",
    "NATS_OPERATOR_PASSWORD": "an-operator-password",
    "AO_BRIDGE_JWT_SECRET": "k9-" + "0123456789abcdef" * 3,
}
DOCKER_COMPOSE = ("docker", "compose")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return document


def interpolate(value: str) -> str:
    """What compose makes of a value when only the required variables are set (to REQUIRED's)."""

    def substitute(m: re.Match[str]) -> str:
        if m[0] == "$$":
            return "$"
        if m["default"] is not None:
            return m["default"]
        return REQUIRED[m["name"]]

    return INTERPOLATION.sub(substitute, value)


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment (map or KEY=VALUE list), interpolated with the defaults."""
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: interpolate(str(value)) for key, value in env.items()}


def env_names(model: type[BaseSettings]) -> set[str]:
    """Every environment variable a settings model reads (its aliases, else prefix + name)."""
    prefix = str(model.model_config.get("env_prefix", ""))
    names = set()
    for name, field in model.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {str(choice) for choice in alias.choices}
        elif isinstance(alias, str):
            names.add(alias)
        else:
            names.add(prefix + name)
    return {name.upper() for name in names}


def test_the_file_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    errors = sorted(validator_class(schema).iter_errors(compose), key=lambda e: e.json_path)
    assert not errors, "\n".join(f"{e.json_path}: {e.message}" for e in errors)


def test_the_schema_rejects_a_broken_file(compose: dict[str, Any]) -> None:
    """The vendored schema is strict enough to catch a misspelt key."""
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    broken = json.loads(json.dumps(compose))
    broken["services"]["service"]["depends"] = broken["services"]["service"].pop("depends_on")
    assert not jsonschema.validators.validator_for(schema)(schema).is_valid(broken)


def test_every_service_is_there_with_a_healthcheck(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) >= SERVICES
    for name in SERVICES:
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    for name, service in services.items():
        for dependency, how in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on a missing {dependency}"
            if how.get("condition") == "service_healthy":
                assert "healthcheck" in services[dependency]


def test_nats_is_new_enough_and_has_jetstream_on_a_volume(compose: dict[str, Any]) -> None:
    nats = compose["services"]["nats"]
    match = re.fullmatch(r"nats:(\d+)\.(\d+)(?:\.(\d+))?(-[a-z0-9.]+)?", nats["image"])
    assert match, f"pin a nats version: {nats['image']}"
    assert (int(match[1]), int(match[2])) >= MIN_NATS
    command = nats.get("command", [])
    configs = "".join(c.get("content", "") for c in compose.get("configs", {}).values())
    assert {"--jetstream", "-js"} & set(command) or re.search(r"^\s*jetstream\b", configs, re.M)
    store = command[command.index("--store_dir") + 1]
    volumes = [v.split(":") for v in nats["volumes"]]
    assert any(target == store and source in compose["volumes"] for source, target in volumes)
    max_payload = re.search(r"^\s*max_payload:\s*(\d+)\s*MB", configs, re.M)
    assert max_payload, "max_payload must be raised for states of up to max_state_bytes"
    assert int(max_payload[1]) * 2**20 > Settings.model_fields["max_state_bytes"].default


def test_the_service_and_the_bridge_find_nats_and_postgres_by_name(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    postgres = environment(services["postgres"])
    for name in ("service", "bridge"):
        nats_url = urlsplit(environment(services[name])["NATS_URL"])
        assert (nats_url.scheme, nats_url.hostname, nats_url.port) == ("nats", "nats", 4222)
    database = urlsplit(environment(services["service"])["DATABASE_URL"])
    assert (database.scheme, database.hostname, database.port) == ("postgresql", "postgres", 5432)
    assert database.username == postgres["POSTGRES_USER"]
    assert database.password == postgres["POSTGRES_PASSWORD"]
    assert database.path == "/" + postgres["POSTGRES_DB"]


@pytest.mark.parametrize(("name", "model"), [("service", Settings), ("bridge", BridgeSettings)])
def test_every_variable_set_is_a_setting_with_a_valid_value(
    compose: dict[str, Any],
    name: str,
    model: type[BaseSettings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = environment(compose["services"][name])
    unknown = set(env) - env_names(model)
    assert not unknown, f"{name} sets variables no setting reads: {sorted(unknown)}"
    for key in env_names(model):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    model(_env_file=None)


@pytest.mark.parametrize(("name", "subcommand"), [("service", "serve"), ("bridge", "bridge")])
def test_commands_are_the_cli_s(compose: dict[str, Any], name: str, subcommand: str) -> None:
    command = compose["services"][name]["command"]
    assert command[0] == subcommand
    cli = typer.main.get_command(app)
    click_command = cli.commands[subcommand]  # type: ignore[attr-defined]
    options = {opt for param in click_command.params for opt in param.opts}
    assert {arg for arg in command[1:] if arg.startswith("-")} <= options


def test_the_bridge_listens_where_it_is_published_and_checked(compose: dict[str, Any]) -> None:
    bridge = compose["services"]["bridge"]
    command = bridge["command"]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    port = command[command.index("--port") + 1]
    assert any(str(p).rsplit(":", 1)[-1] == port for p in bridge["ports"])
    assert f":{port}/readyz" in " ".join(bridge["healthcheck"]["test"])


def strings(node: Any) -> list[str]:
    """Every string value in a parsed document."""
    if isinstance(node, dict):
        return [s for value in node.values() for s in strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in strings(value)]
    return [node] if isinstance(node, str) else []


def test_variables_have_defaults_or_are_required_secrets(compose: dict[str, Any]) -> None:
    """Every `$` is `$$`, `${NAME:-default}`, or `${NAME:?message}` for a secret in REQUIRED."""
    values = strings(compose)
    bare = [value for value in values if "$" in INTERPOLATION.sub("", value)]
    assert not bare, f"unescaped $ or a variable without a default: {bare}"
    required = {
        m["name"]: m["message"]
        for value in values
        for m in INTERPOLATION.finditer(value)
        if m["message"] is not None
    }
    assert set(required) == set(REQUIRED), "only secrets are required, and they are"
    assert all(message.strip() for message in required.values()), "say what to set"


def test_the_database_password_has_no_default(compose: dict[str, Any]) -> None:
    """A forgotten POSTGRES_PASSWORD stops compose; it never falls back to a known password."""
    for name, key in (("postgres", "POSTGRES_PASSWORD"), ("service", "DATABASE_URL")):
        value = str(compose["services"][name]["environment"][key])
        assert "${POSTGRES_PASSWORD:?" in value, f"{name}.{key}: {value}"


def _docker_compose_available() -> bool:
    if shutil.which("docker") is None:
        return False
    for probe in (["docker", "info"], ["docker", "compose", "version"]):
        try:
            done = subprocess.run(probe, capture_output=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return False
        if done.returncode != 0:
            return False
    return True


def test_docker_compose_accepts_the_file() -> None:
    if not _docker_compose_available():
        pytest.skip("no Docker engine with the compose plugin; the schema check ran instead")
    env = {key: value for key, value in os.environ.items() if key not in REQUIRED}

    def config(extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            # No .env: a developer's own must not hide a missing variable.
            [*DOCKER_COMPOSE, "--env-file", os.devnull, "-f", str(COMPOSE_FILE), "config", "-q"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=ROOT,
            env={**env, **extra},
        )

    done = config(REQUIRED)
    assert done.returncode == 0, done.stderr
    refused = config({})
    assert refused.returncode != 0
    assert "POSTGRES_PASSWORD" in refused.stderr


def test_nats_and_the_bridge_ship_with_authentication_on(compose: dict[str, Any]) -> None:
    """The production layout of docs/security.md: accounts from `credentials`, the service
    and the bridge as users of the service's account, the bridge's JWTs, no open ports."""
    services = compose["services"]
    configs = "".join(c.get("content", "") for c in compose.get("configs", {}).values())
    assert re.search(r'^\s*include "auth/accounts.conf"', configs, re.M)
    accounts = services["nats-accounts"]
    assert accounts["entrypoint"][:2] == ["agent-orchestrator", "credentials"]
    cli = typer.main.get_command(app)
    options = {opt for p in cli.commands["credentials"].params for opt in p.opts}  # type: ignore[attr-defined]
    given = [*accounts["entrypoint"][2:], *accounts["command"]]
    assert {arg for arg in given if arg.startswith("-")} <= options
    assert given[given.index("--out") + 1] == "/auth/accounts.conf"
    assert "nats-auth:/etc/nats/auth:ro" in services["nats"]["volumes"]
    for name in ("service", "bridge"):
        nats_url = urlsplit(interpolate(environment(services[name])["NATS_URL"]))
        assert nats_url.username == name
        assert nats_url.password == REQUIRED[f"NATS_{name.upper()}_PASSWORD"]
    service_env = environment(services["service"])
    assert service_env["AO_NATS_SERVICE_ACCOUNT"] == SERVICE_ACCOUNT
    assert environment(services["bridge"])["AO_BRIDGE_AUTH"] == "jwt"
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on all interfaces"
