-- Checkpoint records. The snapshot bytes live in JetStream (KV agent_checkpoints, or the
-- object store of the same name when larger than a KV value may be).

CREATE TABLE checkpoints (
    checkpoint_id  uuid        PRIMARY KEY,
    agent_id       uuid        NOT NULL REFERENCES agents (agent_id) ON DELETE CASCADE,
    label          text,
    recoverable    boolean     NOT NULL,
    state_revision bigint      NOT NULL,
    agent_status   text        NOT NULL,
    agent_version  integer     NOT NULL,
    size_bytes     integer     NOT NULL,
    storage        text        NOT NULL,
    created_at     timestamptz NOT NULL
);
CREATE INDEX checkpoints_agent_idx ON checkpoints (agent_id, checkpoint_id DESC);
