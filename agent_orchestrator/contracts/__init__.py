"""The wire contract: subjects and pydantic models of requests, replies, events and errors.

No I/O here; everything else, the client SDK included, imports from this package.
"""
