-- Messages between agents: the log behind stream AGENT_MESSAGES (one row per recipient).

CREATE TABLE communications (
    communication_id uuid        PRIMARY KEY,
    broadcast_id     uuid,
    from_agent_id    uuid        NOT NULL,
    to_agent_id      uuid        NOT NULL,
    project_id       text,
    type             text        NOT NULL,
    content          jsonb,
    correlation_id   text,
    reply_to         uuid,
    ttl_s            integer,
    expires_at       timestamptz,
    status           text        NOT NULL,
    status_reason    text,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    delivered_at     timestamptz,
    -- Where the message sits in AGENT_MESSAGES (set by the outbox relay); cleared once a
    -- message that reached a final status has been removed from the stream.
    stream_seq       bigint
);

-- Keyset pagination, newest first (communication_id is a time-ordered UUIDv7).
CREATE INDEX communications_sent_idx     ON communications (from_agent_id, communication_id DESC);
CREATE INDEX communications_received_idx ON communications (to_agent_id, communication_id DESC);
CREATE INDEX communications_broadcast_idx ON communications (broadcast_id)
    WHERE broadcast_id IS NOT NULL;
-- The per-sender backlog limit counts undelivered messages.
CREATE INDEX communications_backlog_idx ON communications (from_agent_id) WHERE status = 'SENT';
-- The expiry sweep.
CREATE INDEX communications_expiry_idx ON communications (expires_at)
    WHERE status = 'SENT' AND expires_at IS NOT NULL;
-- Final messages still in the stream, for the sweep that removes them.
CREATE INDEX communications_in_stream_idx ON communications (communication_id)
    WHERE status <> 'SENT' AND stream_seq IS NOT NULL;

-- A message published with a TTL: the relay publishes what is left of it, or nothing if past.
ALTER TABLE outbox ADD COLUMN expires_at timestamptz;
