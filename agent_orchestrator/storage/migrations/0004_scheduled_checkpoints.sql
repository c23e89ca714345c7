-- Checkpoints taken by a schedule are pruned by its keep_last; manual ones never are.
ALTER TABLE checkpoints ADD COLUMN scheduled boolean NOT NULL DEFAULT false;
CREATE INDEX checkpoints_scheduled_idx ON checkpoints (agent_id, checkpoint_id DESC) WHERE scheduled;
