-- stream_seq 0 now means "its receiver took it (and acknowledges it in JetStream)": the relay
-- no longer records a position there, and the sweep only removes messages at a position > 0.

DROP INDEX communications_in_stream_idx;
CREATE INDEX communications_in_stream_idx ON communications (communication_id)
    WHERE status <> 'SENT' AND stream_seq > 0;

DROP INDEX tasks_in_stream_idx;
CREATE INDEX tasks_in_stream_idx ON tasks (task_id)
    WHERE status NOT IN ('QUEUED', 'RUNNING') AND stream_seq > 0;
