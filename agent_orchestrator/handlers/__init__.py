"""Command areas (one class per module, its marked methods the handlers) and the durable
background jobs; see docs/architecture.md."""
