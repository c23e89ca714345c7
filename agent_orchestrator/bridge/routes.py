"""Every REST route of the bridge in one table: method, path, NATS subject, models, status.

Path parameters and, for GET/DELETE, query parameters (or, for POST/PUT, the JSON body) are
merged into one request body, validated with the contract's request model and sent as ONE NATS
request on ``subject``. A path parameter fills the request field of its name, or the one
``path_fields`` names; that field is then not part of the body or query. To serve a new subject,
add one row here.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from agent_orchestrator.contracts import subjects as s
from agent_orchestrator.contracts.agents import (
    Agent,
    AgentCounts,
    AgentDeleted,
    AgentPage,
    ChangeStatus,
    CountAgents,
    CreateAgent,
    DeleteAgent,
    GetAgent,
    GetHistory,
    LifecycleCommand,
    ListAgents,
    TransitionPage,
    UpdateAgent,
)
from agent_orchestrator.contracts.checkpoints import (
    Checkpoint,
    CheckpointList,
    CheckpointsDeleted,
    CreateCheckpoint,
    DeleteCheckpoints,
    ListCheckpoints,
    RestoreCheckpoint,
    RestoredState,
    Schedule,
    ScheduleCheckpoints,
)
from agent_orchestrator.contracts.common import Reply, Request
from agent_orchestrator.contracts.communications import (
    Communication,
    CommunicationPage,
    GetCommunication,
    ListCommunications,
    MarkDelivered,
    SendMessage,
)
from agent_orchestrator.contracts.liveness import RecoverAgent
from agent_orchestrator.contracts.state import (
    AgentState,
    GetState,
    StateHistory,
    StateHistoryRequest,
    UpdateState,
)
from agent_orchestrator.contracts.tasks import (
    CancelTask,
    ExecuteTask,
    GetTask,
    ListTasks,
    ProvideInput,
    Task,
    TaskPage,
)
from agent_orchestrator.contracts.templates import (
    CreateTemplate,
    DeleteTemplate,
    GetTemplate,
    ListTemplates,
    ListTemplateVersions,
    Template,
    TemplateDeleted,
    TemplatePage,
    TemplateVersions,
    UpdateTemplate,
)

Method = Literal["GET", "POST", "PUT", "DELETE"]
_PATH_PARAM = re.compile(r"{(\w+)}")


@dataclass(frozen=True)
class Route:
    """One REST route and the NATS subject it becomes."""

    method: Method
    path: str
    subject: str
    request: type[Request]
    reply: type[Reply]
    summary: str
    status: int = 200
    tag: str = "agents"
    # Reply field that becomes the ETag, and request field that If-Match fills.
    etag: str | None = None
    if_match: str | None = None
    # For 201 replies: the created resource's path, formatted with the reply's fields.
    location: str | None = None
    # Path parameter -> request field, where they are named differently.
    path_fields: Mapping[str, str] = field(default_factory=dict, hash=False)
    # OpenAPI operationId, where two routes share a subject (default: from the subject).
    operation: str | None = None
    # The body carries a whole state: its size limit is the state's, not the request's.
    carries_state: bool = False

    def __post_init__(self) -> None:
        unknown = set(self.path_fields) - set(_PATH_PARAM.findall(self.path))
        if unknown:
            raise ValueError(f"path_fields names no parameter of {self.path}: {sorted(unknown)}")

    @property
    def path_params(self) -> dict[str, str]:
        """Each path parameter and the request field it fills."""
        return {name: self.path_fields.get(name, name) for name in _PATH_PARAM.findall(self.path)}

    @property
    def operation_id(self) -> str:
        """A stable OpenAPI operationId: ``operation``, or the subject with dots as
        underscores."""
        return self.operation or self.subject.replace(".", "_")


AGENT = "/api/agents/{agent_id}"
TEMPLATE = "/api/templates/{template_id}"
COMMUNICATION = "/api/communications/{communication_id}"
TASK = "/api/tasks/{task_id}"
EXPECTED_VERSION = "expected_version"
EXPECTED_REVISION = "expected_revision"


def _lifecycle(verb: str, subject: str) -> Route:
    return Route(
        "POST",
        f"{AGENT}/{verb}",
        subject,
        LifecycleCommand,
        Agent,
        f"{verb.capitalize()} an agent",
        tag="lifecycle",
        etag="version",
        if_match=EXPECTED_VERSION,
    )


ROUTES: tuple[Route, ...] = (
    # Agents.
    Route(
        "POST",
        "/api/agents",
        s.AGENT_CREATE,
        CreateAgent,
        Agent,
        "Create an agent",
        status=201,
        etag="version",
        location="/api/agents/{agent_id}",
    ),
    Route("GET", "/api/agents", s.AGENT_LIST, ListAgents, AgentPage, "List agents"),
    Route(
        "GET",
        "/api/agent-counts",
        s.AGENT_COUNT,
        CountAgents,
        AgentCounts,
        "Count agents by status (and by template version, given template_id)",
    ),
    Route("GET", AGENT, s.AGENT_GET, GetAgent, Agent, "Get an agent", etag="version"),
    Route(
        "PUT",
        AGENT,
        s.AGENT_UPDATE,
        UpdateAgent,
        Agent,
        "Update an agent",
        etag="version",
        if_match=EXPECTED_VERSION,
    ),
    Route(
        "DELETE",
        AGENT,
        s.AGENT_DELETE,
        DeleteAgent,
        AgentDeleted,
        "Delete an agent",
        if_match=EXPECTED_VERSION,
    ),
    # Lifecycle.
    Route(
        "POST",
        f"{AGENT}/status",
        s.AGENT_STATUS,
        ChangeStatus,
        Agent,
        "Move an agent to a status",
        tag="lifecycle",
        etag="version",
        if_match=EXPECTED_VERSION,
    ),
    _lifecycle("initialize", s.AGENT_INITIALIZE),
    _lifecycle("activate", s.AGENT_ACTIVATE),
    _lifecycle("pause", s.AGENT_PAUSE),
    _lifecycle("terminate", s.AGENT_TERMINATE),
    Route(
        "POST",
        f"{AGENT}/recover",
        s.AGENT_RECOVER,
        RecoverAgent,
        Agent,
        "Recover an ERROR agent (restore a checkpoint, requeue its tasks, READY or ACTIVE)",
        tag="lifecycle",
        etag="version",
        if_match=EXPECTED_VERSION,
    ),
    Route(
        "GET",
        f"{AGENT}/history",
        s.AGENT_HISTORY,
        GetHistory,
        TransitionPage,
        "An agent's transitions, oldest first",
        tag="lifecycle",
    ),
    # Runtime state.
    Route(
        "GET",
        f"{AGENT}/state",
        s.AGENT_STATE_GET,
        GetState,
        AgentState,
        "Get an agent's state",
        tag="state",
        etag="revision",
    ),
    Route(
        "PUT",
        f"{AGENT}/state",
        s.AGENT_STATE_UPDATE,
        UpdateState,
        AgentState,
        "Merge into (or replace) an agent's state",
        tag="state",
        etag="revision",
        if_match=EXPECTED_REVISION,
        carries_state=True,
    ),
    Route(
        "GET",
        f"{AGENT}/state/history",
        s.AGENT_STATE_HISTORY,
        StateHistoryRequest,
        StateHistory,
        "Earlier revisions of an agent's state, newest first",
        tag="state",
    ),
    # Checkpoints.
    Route(
        "POST",
        f"{AGENT}/checkpoint",
        s.AGENT_CHECKPOINT_CREATE,
        CreateCheckpoint,
        Checkpoint,
        "Checkpoint an agent's state",
        status=201,
        tag="checkpoints",
    ),
    Route(
        "DELETE",
        f"{AGENT}/checkpoint",
        s.AGENT_CHECKPOINT_DELETE,
        DeleteCheckpoints,
        CheckpointsDeleted,
        "Delete one checkpoint (checkpoint_id) or all of an agent's",
        tag="checkpoints",
    ),
    Route(
        "GET",
        f"{AGENT}/checkpoints",
        s.AGENT_CHECKPOINT_LIST,
        ListCheckpoints,
        CheckpointList,
        "An agent's checkpoints, newest first",
        tag="checkpoints",
    ),
    Route(
        "POST",
        f"{AGENT}/checkpoints/{{checkpoint_id}}/restore",
        s.AGENT_CHECKPOINT_RESTORE,
        RestoreCheckpoint,
        RestoredState,
        "Restore a checkpoint",
        tag="checkpoints",
        etag="revision",
    ),
    Route(
        "POST",
        f"{AGENT}/schedule-checkpoint",
        s.AGENT_CHECKPOINT_SCHEDULE,
        ScheduleCheckpoints,
        Schedule,
        "Schedule checkpoints (interval_s 0 cancels)",
        tag="checkpoints",
    ),
    # Templates.
    Route(
        "POST",
        "/api/templates",
        s.TEMPLATE_CREATE,
        CreateTemplate,
        Template,
        "Create a template (version 1)",
        status=201,
        tag="templates",
        etag="version",
        location="/api/templates/{template_id}",
    ),
    Route(
        "GET",
        "/api/templates",
        s.TEMPLATE_LIST,
        ListTemplates,
        TemplatePage,
        "List live templates",
        tag="templates",
    ),
    Route(
        "GET",
        TEMPLATE,
        s.TEMPLATE_GET,
        GetTemplate,
        Template,
        "Get a template (latest version, or ?version=)",
        tag="templates",
        etag="version",
    ),
    Route(
        "PUT",
        TEMPLATE,
        s.TEMPLATE_UPDATE,
        UpdateTemplate,
        Template,
        "Update a template (makes a new version)",
        tag="templates",
        etag="version",
        if_match=EXPECTED_VERSION,
    ),
    Route(
        "DELETE",
        TEMPLATE,
        s.TEMPLATE_DELETE,
        DeleteTemplate,
        TemplateDeleted,
        "Delete (retire) a template",
        tag="templates",
    ),
    Route(
        "GET",
        f"{TEMPLATE}/versions",
        s.TEMPLATE_VERSIONS,
        ListTemplateVersions,
        TemplateVersions,
        "Every version of a template, oldest first",
        tag="templates",
    ),
    # Communications.
    Route(
        "POST",
        f"{AGENT}/send",
        s.AGENT_SEND,
        SendMessage,
        Communication,
        "Send a message from this agent to one agent or, as a broadcast, to its project",
        status=201,
        tag="communications",
        location=COMMUNICATION,
        path_fields={"agent_id": "from_agent_id"},
    ),
    Route(
        "GET",
        COMMUNICATION,
        s.COMMUNICATION_GET,
        GetCommunication,
        Communication,
        "Get a communication (or a broadcast summary, by its broadcast id)",
        tag="communications",
    ),
    Route(
        "POST",
        f"{COMMUNICATION}/delivered",
        s.COMMUNICATION_DELIVERED,
        MarkDelivered,
        Communication,
        "Confirm that the recipient has the message (idempotent)",
        tag="communications",
    ),
    Route(
        "GET",
        f"{AGENT}/communications",
        s.AGENT_COMMUNICATIONS,
        ListCommunications,
        CommunicationPage,
        "An agent's communications, newest first",
        tag="communications",
    ),
    # Tasks (workers use NATS: task.start/progress/complete/fail have no route).
    Route(
        "POST",
        f"{AGENT}/execute",
        s.AGENT_EXECUTE,
        ExecuteTask,
        Task,
        "Hand a task to an ACTIVE agent (QUEUED until its worker starts it)",
        status=201,
        tag="tasks",
        location=TASK,
    ),
    Route("GET", TASK, s.TASK_GET, GetTask, Task, "Get a task", tag="tasks"),
    Route(
        "POST",
        f"{TASK}/cancel",
        s.TASK_CANCEL,
        CancelTask,
        Task,
        "Cancel a QUEUED, RUNNING or INPUT_REQUIRED task (a CANCELLED one is answered as "
        "it is; 409 once it ended otherwise)",
        tag="tasks",
    ),
    Route(
        "POST",
        f"{TASK}/input",
        s.TASK_PROVIDE_INPUT,
        ProvideInput,
        Task,
        "Answer the question an INPUT_REQUIRED task waits on (400 listing every failing path "
        "when the input does not match its input_schema; 409 for a second answer)",
        tag="tasks",
    ),
    Route(
        "GET",
        "/api/tasks",
        s.TASK_LIST,
        ListTasks,
        TaskPage,
        "Tasks newest first, by agent, project and status (status=INPUT_REQUIRED: "
        "what waits for a person)",
        tag="tasks",
    ),
    Route(
        "GET",
        f"{AGENT}/tasks",
        s.TASK_LIST,
        ListTasks,
        TaskPage,
        "An agent's tasks, newest first, by status",
        tag="tasks",
        operation="agent_tasks_list",
    ),
)


def route_paths() -> Mapping[str, set[str]]:
    """Every served path and its methods (for tests and docs)."""
    table: dict[str, set[str]] = {}
    for route in ROUTES:
        table.setdefault(route.path, set()).add(route.method)
    return table
