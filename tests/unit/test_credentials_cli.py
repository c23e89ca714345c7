"""`agent-orchestrator credentials`: the accounts file nats-server includes, and passwords that
survive the next run."""

import json
import stat
from pathlib import Path

from typer.testing import CliRunner

from agent_orchestrator.cli import app
from agent_orchestrator.runtime.nats_accounts import Credentials, accounts, worker_permissions

AGENT = "0193b4e2-7c1a-7d3e-9f00-1a2b3c4d5e6f"


def run(tmp_path: Path, *args: str) -> str:
    result = CliRunner().invoke(
        app,
        [
            "credentials",
            "--file",
            str(tmp_path / "c.json"),
            "--out",
            str(tmp_path / "a.conf"),
            *args,
        ],
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_each_run_adds_and_keeps_the_passwords(tmp_path: Path) -> None:
    first = run(tmp_path, "--project", "acme")
    assert "AO_NATS_SERVICE_ACCOUNT=ORCHESTRATOR" in first
    kept = json.loads((tmp_path / "c.json").read_text())
    assert stat.S_IMODE((tmp_path / "c.json").stat().st_mode) == 0o600
    second = run(tmp_path, "--agent", f"acme:{AGENT}", "--project", "beta")
    again = json.loads((tmp_path / "c.json").read_text())
    assert again["service"] == kept["service"]
    assert again["projects"]["acme"]["operator-acme"] == kept["projects"]["acme"]["operator-acme"]
    assert f"agent-{AGENT}" in again["projects"]["acme"]
    assert f"nats://agent-{AGENT}:" in second
    config = (tmp_path / "a.conf").read_text()
    assert config.startswith("accounts: {")
    assert '"share": true' in config


def test_a_bad_project_name_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["credentials", "--file", str(tmp_path / "c.json"), "--project", "a.b"]
    )
    assert result.exit_code != 0
    assert not (tmp_path / "c.json").exists()


def test_workers_get_their_own_agent_and_no_api_that_deletes() -> None:
    allowed = worker_permissions(AGENT, "acme")["publish"]["allow"]
    stream_info = {f"ao.js.api.STREAM.INFO.{s}" for s in ("AGENT_MESSAGES", "AGENT_TASKS")}
    assert stream_info <= set(allowed)  # the consumer settings are in the streams' metadata
    assert all(AGENT in s for s in allowed if s.startswith(("$", "ao.js")) and s not in stream_info)
    assert not [
        s
        for s in allowed
        if "DELETE" in s or "PURGE" in s or (s.endswith(">") and not s.startswith("$JS.ACK"))
    ]
    subscribed = worker_permissions(AGENT, "acme")["subscribe"]["allow"]
    assert subscribed[:2] == ["_INBOX.>", f"agent.event.{AGENT}.*"]
    # The agent protocol endpoint: its own agent's prompts and status (any type), discovery.
    assert not [s for s in subscribed[2:] if not s.startswith("$SRV.") and AGENT not in s]
    assert {s for s in subscribed if s.startswith("agents.")} == {
        f"agents.prompt.*.acme.{AGENT} agents",
        f"agents.status.*.acme.{AGENT} agents",
    }
    credentials = Credentials()
    credentials.add(projects=["acme"], agents=[("acme", AGENT)])
    layout = accounts(credentials)
    exports = layout["ORCHESTRATOR"]["exports"]
    assert [e["stream"] for e in exports if "stream" in e] == ["agent.event.>"]
    # A project imports the events of its own workers' agents, nothing else.
    imported = [i["stream"]["subject"] for i in layout["acme"]["imports"] if "stream" in i]
    assert imported == [f"agent.event.{AGENT}.*"]
    exported = [e["service"] for e in exports if "service" in e]
    assert not [s for s in exported if "DELETE" in s or "PURGE" in s]
    assert [s for s in exported if "STREAM" in s] == [
        "$JS.API.STREAM.INFO.AGENT_MESSAGES",
        "$JS.API.STREAM.INFO.AGENT_TASKS",
    ]
    assert all(i["share"] for i in layout["acme"]["imports"] if i.get("share") is not None)


def test_a_worker_streams_answers_to_requests_and_beats_as_its_own_agent_only() -> None:
    permissions = worker_permissions(AGENT, "AcmeCorp")
    owner = "QWNtZUNvcnA"  # the project as the protocol's owner token
    assert f"agents.hb.*.{owner}.{AGENT}" in permissions["publish"]["allow"]
    assert f"agents.prompt.*.{owner}.{AGENT} agents" in permissions["subscribe"]["allow"]
    # Any number of chunks to a requester, not forever: the server keeps each request that long.
    assert permissions["allow_responses"] == {"max": -1, "expires": "1h"}
    assert {"agent.execute", "task.provide_input", "task.get"} <= set(
        permissions["publish"]["allow"]
    )


def test_a_projects_operator_may_prompt_and_discover_its_agents() -> None:
    credentials = Credentials()
    credentials.add(projects=["acme"])
    (operator,) = accounts(credentials)["acme"]["users"]
    allowed = operator["permissions"]["publish"]["allow"]
    assert {"agents.prompt.>", "$SRV.INFO.agents", "$SRV.PING.agents.*", "_INBOX.>"} <= set(allowed)
    assert operator["permissions"]["subscribe"]["allow"] == ["_INBOX.>", "agents.hb.*.*.*"]


def test_the_reply_window_is_set_once_and_kept(tmp_path: Path) -> None:
    run(tmp_path, "--agent", f"acme:{AGENT}", "--reply-window", "10m")
    run(tmp_path, "--project", "beta")  # a later run without it keeps it
    config = (tmp_path / "a.conf").read_text()
    assert '"expires": "10m"' in config
    assert '"expires": "1h"' not in config
    refused = CliRunner().invoke(
        app, ["credentials", "--file", str(tmp_path / "c.json"), "--reply-window", "forever"]
    )
    assert refused.exit_code != 0
    assert json.loads((tmp_path / "c.json").read_text())["reply_window"] == "10m"
