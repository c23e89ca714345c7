-- Tasks handed to agents. Each attempt is also an assignment message in stream AGENT_TASKS.

CREATE TABLE tasks (
    task_id          uuid        PRIMARY KEY,
    agent_id         uuid        NOT NULL,
    project_id       text,
    status           text        NOT NULL,
    status_reason    text,
    input            jsonb,
    parameters       jsonb       NOT NULL DEFAULT '{}',
    result           jsonb,
    error            jsonb,
    progress         integer     NOT NULL DEFAULT 0,
    progress_message text,
    attempts         integer     NOT NULL DEFAULT 0,
    max_attempts     integer     NOT NULL,
    timeout_s        integer     NOT NULL,
    deadline_at      timestamptz,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    started_at       timestamptz,
    finished_at      timestamptz,
    -- Grows on every change; a write succeeds only on the revision it read (internal).
    revision         integer     NOT NULL DEFAULT 1,
    -- The Nats-Msg-Id of the current attempt's assignment, and where it sits in AGENT_TASKS
    -- (set by the outbox relay, cleared once a worker took it or it was removed).
    message_id       uuid,
    stream_seq       bigint
);

CREATE INDEX tasks_agent_idx   ON tasks (agent_id, task_id DESC);
CREATE INDEX tasks_project_idx ON tasks (project_id, task_id DESC);
CREATE INDEX tasks_status_idx  ON tasks (status, task_id DESC);
CREATE UNIQUE INDEX tasks_message_idx ON tasks (message_id) WHERE message_id IS NOT NULL;
-- The timeout sweep.
CREATE INDEX tasks_deadline_idx ON tasks (deadline_at) WHERE status = 'RUNNING';
-- Tasks to cancel when their agent is terminated.
CREATE INDEX tasks_open_idx ON tasks (agent_id) WHERE status IN ('QUEUED', 'RUNNING');
-- Ended tasks whose assignment may still be in the stream, for the sweep that removes it.
CREATE INDEX tasks_in_stream_idx ON tasks (task_id)
    WHERE status NOT IN ('QUEUED', 'RUNNING') AND stream_seq IS NOT NULL;
