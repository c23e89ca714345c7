"""Pure rules: the lifecycle table, cursors, ids, idempotency, errors. No I/O."""
