-- A task's conversation (A2A contextId, agent.execute's context_id): the tasks of one
-- conversation are listed together (task.list context_id), newest first.

ALTER TABLE tasks ADD COLUMN context_id text;

CREATE INDEX tasks_context_idx ON tasks (context_id, task_id DESC) WHERE context_id IS NOT NULL;
