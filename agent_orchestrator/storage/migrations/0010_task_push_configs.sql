-- Push configs (A2A push notifications): webhooks told of every change of a task. They belong
-- to their task and go with it.

CREATE TABLE task_push_configs (
    task_id          uuid        NOT NULL REFERENCES tasks (task_id) ON DELETE CASCADE,
    config_id        text        NOT NULL,
    url              text        NOT NULL,
    token            text,
    auth_scheme      text,
    auth_credentials text,
    created_at       timestamptz NOT NULL,
    PRIMARY KEY (task_id, config_id)
);
