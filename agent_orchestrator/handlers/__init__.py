"""FastStream subscribers, one module per area, and the durable background jobs."""
