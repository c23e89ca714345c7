-- Issue 22: project boundaries the probe found open.

-- Templates belong to a project; NULL: a global template, writable only by operators.
-- Names are unique per project (and among global templates), so one project cannot learn or
-- block another's names.
ALTER TABLE templates ADD COLUMN project_id text;
DROP INDEX templates_live_name_idx;
CREATE UNIQUE INDEX templates_live_name_idx
    ON templates (coalesce(project_id, ''), agent_type, name) WHERE deleted_at IS NULL;

-- Idempotency-Keys are a namespace per project ('' for callers without a scope: operators).
ALTER TABLE idempotency_keys ADD COLUMN project text NOT NULL DEFAULT '';
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey;
ALTER TABLE idempotency_keys ADD PRIMARY KEY (project, subject, key);

-- Whether a sender has room for ``adding`` more undelivered messages, decided exactly:
-- sends of one sender queue on a transaction-scoped advisory lock, and the count below,
-- a statement of its own in a VOLATILE function, sees what the previous send committed
-- (the calling statement's snapshot would not).
CREATE FUNCTION sender_backlog_room(sender uuid, adding integer, max_backlog integer)
RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(22, hashtext(sender::text));
    RETURN (SELECT count(*) FROM (
                SELECT 1 FROM communications
                WHERE from_agent_id = sender AND status = 'SENT' LIMIT max_backlog) AS backlog)
           + adding <= max_backlog;
END
$$;

-- Per-project quotas count what a project holds (see storage/quotas.py).
CREATE INDEX agents_live_project_idx ON agents (project_id) WHERE status <> 'TERMINATED';
CREATE INDEX tasks_open_project_idx ON tasks (project_id)
    WHERE status IN ('QUEUED', 'RUNNING', 'INPUT_REQUIRED');
CREATE INDEX communications_waiting_project_idx ON communications (project_id)
    WHERE status = 'SENT';
