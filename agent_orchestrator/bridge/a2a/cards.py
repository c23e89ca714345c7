"""Agent cards: one per agent, the orchestrator's own, and what the catalog lists.

An agent's skills come from its ``metadata.skills`` (a list of A2A AgentSkill objects:
``id``, ``name``, ``description``, ``tags``, ``examples``) when it sets them, otherwise one
skill made of its template (name, description) or, without one, of its type.
"""

from typing import Any

from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentExtension,
    AgentInterface,
    AgentProvider,
    AgentSkill,
    APIKeySecurityScheme,
    HTTPAuthSecurityScheme,
    SecurityRequirement,
    SecurityScheme,
    StringList,
)
from a2a.utils.constants import PROTOCOL_VERSION_1_0, TransportProtocol
from google.protobuf.json_format import ParseDict
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent_orchestrator import __version__
from agent_orchestrator.bridge.auth import API_KEY_HEADER
from agent_orchestrator.bridge.settings import AuthMode
from agent_orchestrator.contracts.agents import Agent
from agent_orchestrator.contracts.templates import Template

A2A_PREFIX = "/a2a/agents"
CATALOG_EXTENSION = "urn:agent-orchestrator:a2a-catalog"
"""The host card's extension whose ``params.url`` is the catalog of agent cards."""
INPUT_MODES = ["application/json", "text/plain"]
OUTPUT_MODES = ["application/json", "text/plain"]
SCHEME = {AuthMode.JWT: "bearer", AuthMode.API_KEYS: "apiKey"}


class SkillEntry(BaseModel):
    """One entry of an agent's ``metadata.skills``."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    examples: list[str] = Field(default_factory=list)


def skills(agent: Agent, template: Template | None) -> list[AgentSkill]:
    """The agent's skills: its metadata's, else one from its template or type."""
    given = agent.metadata.get("skills")
    if isinstance(given, list):
        try:
            entries = [SkillEntry.model_validate(entry) for entry in given]
        except ValidationError:
            entries = []
        if entries:
            return [AgentSkill(**entry.model_dump()) for entry in entries]
    if template is not None:
        about = template.description or f"An agent made from template {template.name}"
        return [
            AgentSkill(
                id=template.name, name=template.name, description=about, tags=[template.agent_type]
            )
        ]
    about = agent.description or f"Tasks for a {agent.type} agent"
    return [AgentSkill(id=agent.type, name=agent.type, description=about, tags=[agent.type])]


def security(auth: AuthMode) -> dict[str, Any]:
    """The card's securitySchemes and securityRequirements for the bridge's auth mode."""
    if auth is AuthMode.JWT:
        scheme = SecurityScheme(
            http_auth_security_scheme=HTTPAuthSecurityScheme(
                scheme="Bearer",
                bearer_format="JWT",
                description="A JWT naming the caller's project.",
            )
        )
    elif auth is AuthMode.API_KEYS:
        scheme = SecurityScheme(
            api_key_security_scheme=APIKeySecurityScheme(
                location="header", name=API_KEY_HEADER, description="An API key of the bridge."
            )
        )
    else:
        return {}
    name = SCHEME[auth]
    return {
        "security_schemes": {name: scheme},
        "security_requirements": [SecurityRequirement(schemes={name: StringList()})],
    }


def agent_url(base_url: str, agent: Agent) -> str:
    """Where the agent's A2A interfaces are."""
    return f"{base_url.rstrip('/')}{A2A_PREFIX}/{agent.agent_id}"


def agent_card(agent: Agent, template: Template | None, base_url: str, auth: AuthMode) -> AgentCard:
    """The card of one agent: JSON-RPC and HTTP+JSON on the same URL, streaming, push
    notifications."""
    url = agent_url(base_url, agent)
    return AgentCard(
        name=agent.name,
        description=agent.description or f"A {agent.type} agent run by agent-orchestrator.",
        supported_interfaces=[
            AgentInterface(
                url=url, protocol_binding=binding.value, protocol_version=PROTOCOL_VERSION_1_0
            )
            for binding in (TransportProtocol.JSONRPC, TransportProtocol.HTTP_JSON)
        ],
        provider=AgentProvider(organization="agent-orchestrator", url=base_url.rstrip("/")),
        version=str(agent.version),
        capabilities=AgentCapabilities(streaming=True, push_notifications=True),
        default_input_modes=INPUT_MODES,
        default_output_modes=OUTPUT_MODES,
        skills=skills(agent, template),
        **security(auth),
    )


def host_card(base_url: str, auth: AuthMode) -> AgentCard:
    """The orchestrator's own card: no operations of its own; its catalog extension and
    documentation URL point to the list of its agents' cards."""
    catalog = f"{base_url.rstrip('/')}{A2A_PREFIX}"
    extension = AgentExtension(
        uri=CATALOG_EXTENSION,
        description="The catalog of this orchestrator's agent cards (GET, paged).",
    )
    ParseDict({"url": catalog}, extension.params)
    return AgentCard(
        name="agent-orchestrator",
        description=(
            "An orchestrator of AI agents. It takes no messages itself: each of its agents is "
            f"an A2A agent with its own card; GET {catalog} lists them."
        ),
        provider=AgentProvider(organization="agent-orchestrator", url=base_url.rstrip("/")),
        version=__version__,
        documentation_url=catalog,
        capabilities=AgentCapabilities(extensions=[extension]),
        default_input_modes=INPUT_MODES,
        default_output_modes=OUTPUT_MODES,
        skills=[
            AgentSkill(
                id="agent-catalog",
                name="Agent catalog",
                description=f"Lists the cards of the agents the caller may use: GET {catalog}",
                tags=["catalog"],
            )
        ],
        **security(auth),
    )


__all__ = ["A2A_PREFIX", "CATALOG_EXTENSION", "agent_card", "host_card", "skills"]
