-- Task input (task.request_input / task.provide_input): a RUNNING task may wait for an answer
-- as INPUT_REQUIRED. The pending question and the answers given so far are part of the task
-- (its reply shows them, and a worker that runs the task again reads its answers there), so
-- they are columns of its row, written in the same transaction as its status and event.

ALTER TABLE tasks
    -- The question waiting for an answer (an InputRequest), set exactly while INPUT_REQUIRED.
    ADD COLUMN input_request jsonb,
    -- The answered questions in order (InputAnswer objects, input_seq 1, 2, ...).
    ADD COLUMN input_answers jsonb   NOT NULL DEFAULT '[]',
    -- Seconds the current attempt waited for input (not counted against timeout_s).
    ADD COLUMN input_wait_s  integer NOT NULL DEFAULT 0;

ALTER TABLE tasks ADD CONSTRAINT tasks_input_request_iff_waiting
    CHECK ((status = 'INPUT_REQUIRED') = (input_request IS NOT NULL));

-- The inbox: what waits for a person, per project (task.list status=INPUT_REQUIRED), and
-- across projects.
CREATE INDEX tasks_input_required_idx ON tasks (project_id, task_id DESC)
    WHERE status = 'INPUT_REQUIRED';

-- The timeout sweep also finds questions past their deadline.
DROP INDEX tasks_deadline_idx;
CREATE INDEX tasks_deadline_idx ON tasks (deadline_at) WHERE status IN ('RUNNING', 'INPUT_REQUIRED');

-- An INPUT_REQUIRED task is open: terminating its agent cancels it.
DROP INDEX tasks_open_idx;
CREATE INDEX tasks_open_idx ON tasks (agent_id) WHERE status IN ('QUEUED', 'RUNNING', 'INPUT_REQUIRED');

-- ... and it has not ended: its assignment is not one for the sweep to remove.
DROP INDEX tasks_in_stream_idx;
CREATE INDEX tasks_in_stream_idx ON tasks (task_id)
    WHERE status NOT IN ('QUEUED', 'RUNNING', 'INPUT_REQUIRED') AND stream_seq > 0;
