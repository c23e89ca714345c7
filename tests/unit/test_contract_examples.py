"""The documented examples are valid requests and replies, and reach the OpenAPI document."""

import importlib
import json
import pkgutil

import pytest
from pydantic import BaseModel

import agent_orchestrator.contracts as contracts
from agent_orchestrator.bridge import BridgeSettings, create_app


def documented() -> list[tuple[type[BaseModel], dict[str, object]]]:
    found = []
    for module in pkgutil.iter_modules(contracts.__path__):
        loaded = importlib.import_module(f"{contracts.__name__}.{module.name}")
        for value in vars(loaded).values():
            if isinstance(value, type) and issubclass(value, BaseModel):
                extra = value.model_config.get("json_schema_extra")
                if value.__module__ == loaded.__name__ and isinstance(extra, dict):
                    found += [(value, example) for example in extra.get("examples", [])]
    return found


@pytest.mark.parametrize(("model", "example"), documented())
def test_every_example_is_valid_json_for_its_model(
    model: type[BaseModel], example: dict[str, object]
) -> None:
    model.model_validate_json(json.dumps(example))


def test_every_request_body_of_the_bridge_has_examples() -> None:
    schema = create_app(BridgeSettings()).openapi()
    components = schema["components"]["schemas"]
    missing = []
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body is None:
                continue
            ref = body["schema"].get("$ref") or body["schema"]["anyOf"][0]["$ref"]
            name = ref.rsplit("/", 1)[-1]
            if not components[name].get("examples"):
                missing.append(f"{method.upper()} {path}")
    assert not missing
