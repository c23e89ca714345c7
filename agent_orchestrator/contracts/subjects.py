"""Every public NATS name in one place: command subjects, streams, buckets, queue group.

These names are the product's contract (see docs/agents.md and the pages it links, and
asyncapi.yaml); changing one is a breaking change.
"""

from typing import Final

QUEUE_GROUP: Final = "agent-orchestrator"
SERVICE_NAME: Final = "agent-orchestrator"

# Commands (request/reply).
AGENT_CREATE: Final = "agent.create"
AGENT_GET: Final = "agent.get"
AGENT_LIST: Final = "agent.list"
AGENT_COUNT: Final = "agent.count"
AGENT_UPDATE: Final = "agent.update"
AGENT_DELETE: Final = "agent.delete"
AGENT_STATUS: Final = "agent.status"
AGENT_INITIALIZE: Final = "agent.initialize"
AGENT_ACTIVATE: Final = "agent.activate"
AGENT_PAUSE: Final = "agent.pause"
AGENT_TERMINATE: Final = "agent.terminate"
AGENT_HISTORY: Final = "agent.history"
AGENT_STATE_GET: Final = "agent.state.get"
AGENT_STATE_UPDATE: Final = "agent.state.update"
AGENT_STATE_HISTORY: Final = "agent.state.history"
AGENT_CHECKPOINT_CREATE: Final = "agent.checkpoint.create"
AGENT_CHECKPOINT_LIST: Final = "agent.checkpoint.list"
AGENT_CHECKPOINT_RESTORE: Final = "agent.checkpoint.restore"
AGENT_CHECKPOINT_DELETE: Final = "agent.checkpoint.delete"
AGENT_CHECKPOINT_SCHEDULE: Final = "agent.checkpoint.schedule"
TEMPLATE_CREATE: Final = "template.create"
TEMPLATE_GET: Final = "template.get"
TEMPLATE_LIST: Final = "template.list"
TEMPLATE_UPDATE: Final = "template.update"
TEMPLATE_VERSIONS: Final = "template.versions"
TEMPLATE_DELETE: Final = "template.delete"
AGENT_SEND: Final = "agent.send"
AGENT_COMMUNICATIONS: Final = "agent.communications"
COMMUNICATION_DELIVERED: Final = "communication.delivered"
COMMUNICATION_HANDOVER: Final = "communication.handover"
COMMUNICATION_GET: Final = "communication.get"
AGENT_EXECUTE: Final = "agent.execute"
TASK_GET: Final = "task.get"
TASK_LIST: Final = "task.list"
TASK_CANCEL: Final = "task.cancel"
TASK_START: Final = "task.start"
TASK_PROGRESS: Final = "task.progress"
TASK_COMPLETE: Final = "task.complete"
TASK_FAIL: Final = "task.fail"
TASK_REQUEST_INPUT: Final = "task.request_input"
TASK_PROVIDE_INPUT: Final = "task.provide_input"
TASK_PUSH_SET: Final = "task.push_config.set"
TASK_PUSH_GET: Final = "task.push_config.get"
TASK_PUSH_LIST: Final = "task.push_config.list"
TASK_PUSH_DELETE: Final = "task.push_config.delete"
AGENT_RECOVER: Final = "agent.recover"

# The AsyncAPI document of the running service (YAML), for tools and the bridge's /asyncapi.
ASYNCAPI: Final = "agent-orchestrator.asyncapi"

# Every command subject, as the few wildcards a NATS account exports them with (none of them
# matches a stream's subjects: agent.inbox.<id>, agent.task.<id> and agent.event.<id>.<kind>
# have more tokens). See docs/security.md.
COMMAND_EXPORTS: Final = (
    "agent.*",
    "agent.state.*",
    "agent.checkpoint.*",
    "template.*",
    "communication.*",
    "task.*",
    ASYNCAPI,
)
# The JetStream API as the service's account serves it ...
DEFAULT_JS_API_PREFIX: Final = "$JS.API"
# ... and as a project's account imports it for its agents' workers (a project's account has
# no JetStream of its own, whose "not enabled" answer on $JS.API would come first).
WORKER_JS_API_PREFIX: Final = "ao.js.api"
# What an agent's worker may ask for: its own agent's reports, state, messages and reads.
WORKER_COMMANDS: Final = (
    TASK_START,
    TASK_PROGRESS,
    TASK_COMPLETE,
    TASK_FAIL,
    TASK_REQUEST_INPUT,
    TASK_GET,
    COMMUNICATION_DELIVERED,
    COMMUNICATION_HANDOVER,
    COMMUNICATION_GET,
    AGENT_STATE_UPDATE,
    AGENT_STATE_GET,
    AGENT_GET,
    AGENT_SEND,
    AGENT_CHECKPOINT_CREATE,
    # Its agent protocol endpoint (client.protocol_endpoint): a prompt is a task of its own
    # agent, the answer to a query that task's input.
    AGENT_EXECUTE,
    TASK_PROVIDE_INPUT,
)

# Streams.
EVENTS_STREAM: Final = "AGENT_EVENTS"
EVENTS_SUBJECTS: Final = "agent.event.>"
TEMPLATE_EVENTS_STREAM: Final = "TEMPLATE_EVENTS"
TEMPLATE_EVENTS_SUBJECTS: Final = "template.event.>"
SCHEDULES_STREAM: Final = "AGENT_SCHEDULES"
SCHEDULES_SUBJECTS: Final = ("agent.schedule.>", "agent.scheduled.>")
JOBS_STREAM: Final = "AGENT_JOBS"
JOBS_SUBJECTS: Final = "agent.job.>"
MESSAGES_STREAM: Final = "AGENT_MESSAGES"
MESSAGES_SUBJECTS: Final = "agent.inbox.>"
# Messages a worker sends without a request: one subject per sender, ingested by the service.
OUTGOING_STREAM: Final = "AGENT_OUTGOING"
OUTGOING_SUBJECTS: Final = "agent.outgoing.>"
TASKS_STREAM: Final = "AGENT_TASKS"
TASKS_SUBJECTS: Final = "agent.task.>"
# The server's max-deliveries advisories about AGENT_MESSAGES, kept so none is missed.
DEAD_LETTERS_STREAM: Final = "AGENT_DEAD_LETTERS"
MESSAGE_DEAD_LETTERS_SUBJECTS: Final = (
    f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{MESSAGES_STREAM}.*"
)

# Key-value buckets.
STATE_BUCKET: Final = "agent_state"
CHECKPOINT_BUCKET: Final = "agent_checkpoints"
CHECKPOINT_OBJECTS: Final = "agent_checkpoints"
HEARTBEATS_BUCKET: Final = "agent_heartbeats"
HEARTBEATS_STREAM: Final = f"KV_{HEARTBEATS_BUCKET}"

# Durable consumers of the service's own background jobs.
INITIALIZE_JOB_CONSUMER: Final = "agent-initializer"
CHECKPOINT_SCHEDULER_CONSUMER: Final = "checkpoint-scheduler"
AGENT_CLEANUP_CONSUMER: Final = "agent-cleanup"
#: Consumers earlier versions made, removed at start-up.
OBSOLETE_CONSUMERS: Final = ((EVENTS_STREAM, "agent-consumer-keeper"),)
DEAD_LETTER_CONSUMER: Final = "dead-letter-keeper"
#: Read by the one instance that leads the ingest of AGENT_OUTGOING (created when it starts).
MESSAGE_INGEST_CONSUMER: Final = "message-ingest"
LIVENESS_MONITOR_CONSUMER: Final = "liveness-monitor"

# Headers.
IDEMPOTENCY_KEY_HEADER: Final = "Idempotency-Key"
ACTOR_HEADER: Final = "Actor"
# Set by the HTTP bridge for an authenticated caller: the one project the request may touch.
PROJECT_SCOPE_HEADER: Final = "Project-Scope"
# Set by nats-server on a request that crossed from a tenant's account into the service's
# through an import with `share: true`: who sent it (account, user, ...). See docs/security.md.
REQUEST_INFO_HEADER: Final = "Nats-Request-Info"
MSG_ID_HEADER: Final = "Nats-Msg-Id"
SERVICE_ERROR_CODE_HEADER: Final = "Nats-Service-Error-Code"
SERVICE_ERROR_HEADER: Final = "Nats-Service-Error"
TRACE_ID_HEADER: Final = "Trace-Id"

# Header limits: a longer Idempotency-Key is refused, a longer Actor is cut to this length.
MAX_IDEMPOTENCY_KEY_LENGTH: Final = 200
MAX_ACTOR_LENGTH: Final = 200
# A Project-Scope header is a project_id: as long as a body's may be.
MAX_PROJECT_ID_LENGTH: Final = 200
DEFAULT_ACTOR: Final = "caller"


def event_subject(agent_id: str, kind: str) -> str:
    """Subject of one agent event: ``agent.event.<agent_id>.<kind>``."""
    return f"agent.event.{agent_id}.{kind}"


def template_event_subject(template_id: str, kind: str) -> str:
    """Subject of one template event: ``template.event.<template_id>.<kind>``."""
    return f"template.event.{template_id}.{kind}"


def initialize_job_subject(agent_id: str) -> str:
    """Subject of the durable job that finishes an agent's initialization."""
    return f"agent.job.initialize.{agent_id}"


def checkpoint_schedule_subject(agent_id: str) -> str:
    """Where an agent's checkpoint schedule message lives (one per agent)."""
    return f"agent.schedule.checkpoint.{agent_id}"


def scheduled_checkpoint_subject(agent_id: str) -> str:
    """Where the server publishes each firing of an agent's checkpoint schedule."""
    return f"agent.scheduled.checkpoint.{agent_id}"


def inbox_subject(agent_id: str) -> str:
    """Where an agent's messages wait: ``agent.inbox.<agent_id>`` in AGENT_MESSAGES."""
    return f"agent.inbox.{agent_id}"


def outgoing_subject(agent_id: str) -> str:
    """Where an agent's worker publishes the messages it sends, without a request:
    ``agent.outgoing.<agent_id>`` in AGENT_OUTGOING (the subject names the sender)."""
    return f"agent.outgoing.{agent_id}"


def inbox_consumer(agent_id: str) -> str:
    """The consumer a running worker of the agent creates to receive its messages (shared by
    the agent's workers, gone when they stop)."""
    return f"inbox-{agent_id}"


def task_subject(agent_id: str) -> str:
    """Where an agent's task assignments wait: ``agent.task.<agent_id>`` in AGENT_TASKS."""
    return f"agent.task.{agent_id}"


def task_consumer(agent_id: str) -> str:
    """The consumer a running worker of the agent creates to receive its tasks (shared by the
    agent's workers, gone when they stop)."""
    return f"tasks-{agent_id}"


def heartbeat_subject(agent_id: str) -> str:
    """The subject of an agent's key in KV bucket ``agent_heartbeats``."""
    return f"$KV.{HEARTBEATS_BUCKET}.{agent_id}"
