"""asyncapi.yaml at the repository root is what the app generates now."""

from pathlib import Path

import yaml

from agent_orchestrator.asyncapi import asyncapi_document
from agent_orchestrator.contracts import subjects
from agent_orchestrator.service import unconnected_service

ROOT = Path(__file__).resolve().parents[2]


def test_committed_asyncapi_yaml_is_up_to_date() -> None:
    committed = (ROOT / "asyncapi.yaml").read_text(encoding="utf-8")
    assert committed == unconnected_service().asyncapi_yaml(), (
        "asyncapi.yaml is stale: run `agent-orchestrator asyncapi --out asyncapi.yaml`"
    )


def test_every_command_subject_is_documented_with_its_reply() -> None:
    service = unconnected_service()
    doc = asyncapi_document(service.broker, service.commands)
    commands = [
        value
        for name, value in vars(subjects).items()
        if name.startswith("AGENT_")
        and isinstance(value, str)
        and value.startswith("agent.")
        and "." in value
        and "event" not in value
        and "job" not in value
    ]
    assert commands
    for subject in commands:
        operation = doc["operations"][subject]
        assert operation["action"] == "receive"
        message = doc["components"]["messages"][f"{subject}:SubscribeMessage"]
        assert message["payload"]["$ref"].startswith("#/components/schemas/"), subject
        refs = [m["$ref"] for m in operation["reply"]["messages"]]
        assert refs[-1].endswith("/ErrorReply")
    assert doc["channels"]["agent.event"]["address"] == "agent.event.{agent_id}.{kind}"
    assert doc["channels"]["template.event"]["address"] == "template.event.{template_id}.{kind}"
    assert yaml.safe_load(service.asyncapi_yaml()) == doc


def test_the_worker_facing_channels_are_documented() -> None:
    service = unconnected_service()
    doc = asyncapi_document(service.broker, service.commands)
    channels, messages = doc["channels"], doc["components"]["messages"]
    assert channels["agent.heartbeat"]["address"] == "$KV.agent_heartbeats.{agent_id}"
    assert channels["agent.task"]["address"] == "agent.task.{agent_id}"
    assert channels["agent.inbox"]["address"] == "agent.inbox.{agent_id}"
    assert "Nats-TTL" in messages["Heartbeat"]["headers"]["required"]
    assert messages["TaskAssignment"]["payload"]["$ref"].endswith("/TaskAssignment")
    assert messages["InboxMessage"]["payload"]["$ref"].endswith("/Communication")
    assert "headers" not in messages["Communication"]  # the reply of agent.send has none
    assert "`tasks-{agent_id}`" in channels["agent.task"]["description"]
    assert "`inbox-{agent_id}`" in channels["agent.inbox"]["description"]
