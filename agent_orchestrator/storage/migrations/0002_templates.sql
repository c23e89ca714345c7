-- Versioned agent templates. A version row never changes; the head row points at the latest.

CREATE TABLE templates (
    template_id    uuid PRIMARY KEY,
    agent_type     text        NOT NULL,
    name           text        NOT NULL,
    latest_version integer     NOT NULL,
    created_at     timestamptz NOT NULL,
    deleted_at     timestamptz
);

-- Names are unique per agent type among live templates.
CREATE UNIQUE INDEX templates_live_name_idx ON templates (agent_type, name) WHERE deleted_at IS NULL;
CREATE INDEX templates_type_idx ON templates (agent_type, template_id DESC) WHERE deleted_at IS NULL;

CREATE TABLE template_versions (
    template_id           uuid        NOT NULL REFERENCES templates (template_id),
    version               integer     NOT NULL,
    name                  text        NOT NULL,
    description           text,
    agent_type            text        NOT NULL,
    config_schema         jsonb       NOT NULL,
    default_configuration jsonb       NOT NULL,
    prompt_template       text,
    changelog             text,
    created_at            timestamptz NOT NULL,
    PRIMARY KEY (template_id, version)
);
