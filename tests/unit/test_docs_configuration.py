"""docs/configuration.md names every setting of the service and of the bridge, and nothing else."""

import re
from pathlib import Path

import pytest
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from agent_orchestrator.bridge import BridgeSettings
from agent_orchestrator.settings import Settings

PAGE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def documented(section: str) -> set[str]:
    """The variable names in the first column of a section's table."""
    text = PAGE.read_text(encoding="utf-8").split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for row in re.findall(r"^\| ([^|]+) \|", text, re.M):
        names |= set(re.findall(r"`([A-Z][A-Z0-9_]*)`", row))
    return names


def setting_names(model: type[BaseSettings]) -> list[set[str]]:
    """For each field, every environment variable that sets it."""
    prefix = str(model.model_config.get("env_prefix", ""))
    fields = []
    for name, field in model.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            fields.append({str(choice).upper() for choice in alias.choices})
        elif isinstance(alias, str):
            fields.append({alias.upper()})
        else:
            fields.append({(prefix + name).upper()})
    return fields


@pytest.mark.parametrize(
    ("section", "model"), [("The service", Settings), ("The HTTP bridge", BridgeSettings)]
)
def test_the_table_names_every_setting_and_only_settings(
    section: str, model: type[BaseSettings]
) -> None:
    names = documented(section)
    fields = setting_names(model)
    missing = [sorted(field) for field in fields if not field & names]
    assert not missing, f"{section}: settings not in docs/configuration.md: {missing}"
    known = set().union(*fields)
    unknown = sorted(names - known)
    assert not unknown, f"{section}: docs/configuration.md names no such setting: {unknown}"
