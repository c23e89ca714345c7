-- Agents, their lifecycle history, the event outbox and idempotency keys.

CREATE TABLE agents (
    agent_id         uuid PRIMARY KEY,
    project_id       text,
    name             text        NOT NULL,
    type             text        NOT NULL,
    description      text,
    template_id      uuid,
    template_version integer,
    configuration    jsonb       NOT NULL DEFAULT '{}',
    prompt_template  text,
    metadata         jsonb       NOT NULL DEFAULT '{}',
    status           text        NOT NULL,
    status_reason    text,
    version          integer     NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL
);

-- Keyset pagination walks agent_id (UUIDv7, time-ordered) newest first, within a filter.
CREATE INDEX agents_project_idx  ON agents (project_id, agent_id DESC);
CREATE INDEX agents_status_idx   ON agents (status, agent_id DESC);
CREATE INDEX agents_type_idx     ON agents (type, agent_id DESC);
CREATE INDEX agents_template_idx ON agents (template_id, agent_id DESC) WHERE template_id IS NOT NULL;

CREATE TABLE agent_transitions (
    agent_id    uuid        NOT NULL REFERENCES agents (agent_id) ON DELETE CASCADE,
    version     integer     NOT NULL,
    from_status text,
    to_status   text        NOT NULL,
    reason      text,
    actor       text        NOT NULL,
    at          timestamptz NOT NULL,
    PRIMARY KEY (agent_id, version)
);

-- Events and jobs to publish to JetStream, written in the same transaction as the change.
CREATE TABLE outbox (
    id           bigserial   PRIMARY KEY,
    msg_id       uuid        NOT NULL UNIQUE,
    subject      text        NOT NULL,
    payload      bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_pending_idx ON outbox (id) WHERE published_at IS NULL;

CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox', '');
    RETURN NULL;
END $$;

CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

CREATE TABLE idempotency_keys (
    subject     text        NOT NULL,
    key         text        NOT NULL,
    fingerprint text        NOT NULL,
    reply       jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subject, key)
);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);
