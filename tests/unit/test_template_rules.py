"""Template rules: schema checks list every path, deep merge, versions, applying a template."""

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_orchestrator.contracts.agents import CreateAgent
from agent_orchestrator.contracts.templates import CreateTemplate, UpdateTemplate
from agent_orchestrator.domain.agents import create_agent
from agent_orchestrator.domain.errors import ValidationFailed
from agent_orchestrator.domain.templates import (
    check_config_schema,
    create_template,
    deep_merge,
    update_template,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
SCHEMA = {
    "type": "object",
    "properties": {
        "model": {"type": "string"},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "tools": {"type": "array", "items": {"type": "string"}},
        "limits": {
            "type": "object",
            "properties": {"tokens": {"type": "integer"}, "calls": {"type": "integer"}},
        },
    },
    "required": ["model"],
    "additionalProperties": False,
}
DEFAULTS = {"model": "small", "temperature": 0.2, "tools": ["search"], "limits": {"tokens": 100}}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=10,
)
json_objects = st.dictionaries(st.text(max_size=3), json_values, max_size=4)


def template(**overrides: Any) -> Any:
    fields = {
        "name": "t",
        "agent_type": "llm",
        "config_schema": SCHEMA,
        "default_configuration": DEFAULTS,
        **overrides,
    }
    return create_template(CreateTemplate(**fields), now=NOW)


def test_an_invalid_schema_lists_every_problem() -> None:
    bad = {"type": "objekt", "properties": {"a": {"type": 5}}, "required": "a"}
    with pytest.raises(ValidationFailed) as caught:
        check_config_schema(bad)
    paths = {d["path"] for d in caught.value.details}
    assert {
        "config_schema.type",
        "config_schema.properties.a.type",
        "config_schema.required",
    } <= paths


def test_defaults_that_break_the_schema_are_refused_with_their_paths() -> None:
    with pytest.raises(ValidationFailed) as caught:
        template(default_configuration={"temperature": 5, "colour": "red"})
    paths = [d["path"] for d in caught.value.details]
    assert "default_configuration.temperature" in paths
    assert "default_configuration" in paths  # model missing, colour not allowed


def test_applying_a_template_merges_defaults_under_the_request() -> None:
    t = template(prompt_template="You are {role}")
    change = create_agent(
        CreateAgent(
            name="a",
            template_id=t.template_id,
            configuration={"temperature": 1.0, "tools": ["code"], "limits": {"calls": 3}},
        ),
        template=t,
        actor="x",
        now=NOW,
    )
    assert change.agent.configuration == {
        "model": "small",
        "temperature": 1.0,
        "tools": ["code"],
        "limits": {"tokens": 100, "calls": 3},
    }
    assert change.agent.type == "llm"
    assert change.agent.template_version == 1
    assert change.agent.prompt_template == "You are {role}"


def test_an_agent_configuration_that_breaks_the_schema_is_refused() -> None:
    t = template()
    with pytest.raises(ValidationFailed) as caught:
        create_agent(
            CreateAgent(
                name="a",
                template_id=t.template_id,
                configuration={"temperature": "hot", "limits": {"tokens": "many"}},
            ),
            template=t,
            actor="x",
            now=NOW,
        )
    paths = {d["path"] for d in caught.value.details}
    assert paths == {"configuration.temperature", "configuration.limits.tokens"}


def test_a_type_other_than_the_templates_is_refused() -> None:
    t = template()
    with pytest.raises(ValidationFailed):
        create_agent(
            CreateAgent(name="a", type="other", template_id=t.template_id),
            template=t,
            actor="x",
            now=NOW,
        )


def test_an_update_that_changes_nothing_makes_no_version() -> None:
    t = template()
    assert update_template(t, UpdateTemplate(template_id=t.template_id, name="t"), now=NOW) is None
    v2 = update_template(
        t, UpdateTemplate(template_id=t.template_id, description="d", changelog="why"), now=NOW
    )
    assert v2 is not None
    assert (v2.version, v2.changelog, v2.description) == (2, "why", "d")


@given(base=json_objects, override=json_objects)
def test_deep_merge_lets_the_override_win_and_keeps_the_rest(
    base: dict[str, Any], override: dict[str, Any]
) -> None:
    merged = deep_merge(base, override)
    assert set(merged) == set(base) | set(override)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            assert merged[key] == deep_merge(base[key], value)
        else:
            assert merged[key] == value
    for key in set(base) - set(override):
        assert merged[key] == base[key]
