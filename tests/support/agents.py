"""Agents for tests, made over plain NATS or with the SDK (then in a project of their own
unless told), and waits for their status.

Every helper makes a new agent, so a test works on ids nobody else uses and never on what an
earlier test left behind.
"""

import uuid
from typing import Any

import nats.aio.client

from agent_orchestrator.client import OrchestratorClient
from agent_orchestrator.contracts import subjects
from agent_orchestrator.contracts.agents import CreateAgent
from tests.support.calls import ok
from tests.support.polling import eventually

NC = nats.aio.client.Client


def unique(prefix: str) -> str:
    """``prefix`` with a random suffix: a name or project id no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def create_agent(nc: NC, **fields: Any) -> dict[str, Any]:
    """``agent.create`` over plain NATS (name ``agent``, type ``t`` unless given); the reply."""
    return dict(await ok(nc, subjects.AGENT_CREATE, {"name": "agent", "type": "t", **fields}))


async def new_agent(nc: NC, **fields: Any) -> str:
    """A new CREATED agent's id (see ``create_agent``)."""
    return str((await create_agent(nc, **fields))["agent_id"])


async def agent_with_state(nc: NC, state: dict[str, Any], **fields: Any) -> str:
    """A new agent whose state is ``state`` (written in one replace)."""
    agent_id = await new_agent(nc, **fields)
    await ok(
        nc, subjects.AGENT_STATE_UPDATE, {"agent_id": agent_id, "state": state, "mode": "replace"}
    )
    return agent_id


async def wait_for_status(nc: NC, agent_id: str, status: str, *, within: float = 15.0) -> Any:
    """The agent (``agent.get``'s reply) once its status is ``status``."""
    return await eventually(
        lambda: ok(nc, subjects.AGENT_GET, {"agent_id": agent_id}),
        lambda agent: agent["status"] == status,
        within=within,
        what=f"agent {agent_id} {status}",
        interval=0.05,
    )


async def initialized(nc: NC, agent_id: str, *, within: float = 20.0) -> Any:
    """The agent once its initialization job has ended (in READY or ERROR)."""
    return await eventually(
        lambda: ok(nc, subjects.AGENT_GET, {"agent_id": agent_id}),
        lambda agent: agent["status"] != "INITIALIZING",
        within=within,
        what=f"agent {agent_id} out of INITIALIZING",
        interval=0.05,
    )


async def ready_agent(nc: NC, **fields: Any) -> str:
    """A new agent, initialized and READY."""
    agent_id = await new_agent(nc, **fields)
    initializing = await ok(nc, subjects.AGENT_INITIALIZE, {"agent_id": agent_id})
    assert initializing["status"] == "INITIALIZING"
    await wait_for_status(nc, agent_id, "READY")
    return agent_id


async def sdk_agent(
    client: OrchestratorClient, project: str | None = None, *, start: bool = True, **fields: Any
) -> str:
    """A new agent of ``project`` (a new one when None) made with the SDK (name ``agent``, type
    ``t`` unless given), and started to ACTIVE unless ``start`` is false."""
    body = {"name": "agent", "type": "t", **fields, "project_id": project or unique("p")}
    agent = await client.create_agent(CreateAgent(**body))
    if start:
        await client.start_agent(agent.agent_id)
    return str(agent.agent_id)
