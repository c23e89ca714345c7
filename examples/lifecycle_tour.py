"""The README's five-minute tour as one plain nats-py script (no project code needed).

    python examples/lifecycle_tour.py [nats://127.0.0.1:4222]

Creates an agent, walks it CREATED -> INITIALIZING -> READY -> ACTIVE -> PAUSED -> ACTIVE ->
TERMINATED, prints its history, and prints the events it published on agent.event.<id>.>.
"""

import asyncio
import json
import sys
from typing import Any

import nats
from nats.aio.client import Client


async def request(nc: Client, subject: str, body: dict[str, Any]) -> dict[str, Any]:
    """One command; raises with the error reply when the service refuses it."""
    msg = await nc.request(subject, json.dumps(body).encode(), timeout=5)
    reply: dict[str, Any] = json.loads(msg.data)
    if "error" in reply:
        raise RuntimeError(f"{subject}: {reply['error']}")
    return reply


async def main(url: str) -> None:
    nc = await nats.connect(url)
    agent = await request(nc, "agent.create", {"name": "tour", "type": "echo"})
    agent_id = agent["agent_id"]
    print("created", agent_id, agent["status"])

    # Watch this agent's events from the stream, from its first one.
    events = await nc.jetstream().subscribe(f"agent.event.{agent_id}.>", ordered_consumer=True)

    agent = await request(nc, "agent.initialize", {"agent_id": agent_id})
    print("initialize ->", agent["status"])
    while agent["status"] == "INITIALIZING":  # a durable background job finishes it
        await asyncio.sleep(0.05)
        agent = await request(nc, "agent.get", {"agent_id": agent_id})
    print("job done   ->", agent["status"])

    for subject, body in [
        ("agent.activate", {}),
        ("agent.pause", {"reason": "lunch break"}),
        ("agent.activate", {}),
        ("agent.terminate", {"reason": "tour over"}),
    ]:
        agent = await request(nc, subject, {"agent_id": agent_id, **body})
        print(f"{subject:<16} -> {agent['status']} (version {agent['version']})")

    history = await request(nc, "agent.history", {"agent_id": agent_id})
    for t in history["items"]:
        print(f"history v{t['version']}: {t['from']} -> {t['to']} by {t['actor']} ({t['reason']})")

    for _ in range(agent["version"]):
        msg = await events.next_msg(timeout=5)
        event = json.loads(msg.data)
        print(f"event {msg.subject}  version={event['version']}")
    await nc.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "nats://127.0.0.1:4222"))
