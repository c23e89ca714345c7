"""Adapters: PostgreSQL repositories and migrations, JetStream topology, the outbox relay."""
