"""Two small agent programs talking to each other through agent-orchestrator (client SDK).

    python examples/talking_agents.py [nats://127.0.0.1:4222]

`counter` answers every question with its number of words; `asker` sends questions and prints
each answer, matched by correlation_id. Messages wait in each agent's inbox (stream
AGENT_MESSAGES) until it acknowledges them, so either program may start first or restart.
"""

import asyncio
import sys

import nats
from nats.aio.client import Client

from agent_orchestrator.client import Inbox, InboxMessage, OrchestratorClient
from agent_orchestrator.contracts import subjects
from agent_orchestrator.contracts.agents import CreateAgent


async def counter(nc: Client, agent_id: str) -> None:
    """Answer every question with its word count, until the agent is terminated."""

    async def answer(question: InboxMessage) -> None:
        await question.reply({"words": len(str(question.content).split())})

    async with Inbox(nc, agent_id) as inbox:
        await inbox.run(answer)  # acknowledges each message once answer() returns


async def asker(nc: Client, agent_id: str, counter_id: str, questions: list[str]) -> None:
    """Ask ``counter_id`` every question, then print the answers as they come."""
    client = OrchestratorClient(nc)
    for n, text in enumerate(questions):
        await client.send(
            agent_id, counter_id, type="question", content=text, correlation_id=f"q{n}"
        )
    async with Inbox(nc, agent_id) as inbox:
        for _ in questions:
            reply = await inbox.next(timeout=10)
            assert reply is not None, "no answer within 10 s"
            n = int(str(reply.communication.correlation_id)[1:])
            print(f"{questions[n]!r} has {reply.content['words']} words")  # type: ignore[index,call-overload]
            await reply.ack()


async def main(url: str) -> None:
    nc = await nats.connect(url)
    client = OrchestratorClient(nc)
    ids = []
    for name in ("asker", "counter"):
        agent = await client.create_agent(CreateAgent(name=name, type="demo", project_id="talk"))
        await client.start_agent(agent.agent_id)  # initialize, wait for READY, activate
        ids.append(str(agent.agent_id))
    asker_id, counter_id = ids

    counting = asyncio.create_task(counter(nc, counter_id))
    await asker(nc, asker_id, counter_id, ["hello there", "how many words is this", "one"])

    for agent_id in ids:
        await client.change(subjects.AGENT_TERMINATE, agent_id, reason="conversation over")
    await counting  # its inbox closes with the agent
    log = await client.communications(counter_id)
    print("counter's log:", ", ".join(f"{c.type} {c.status}" for c in reversed(log.items)))
    await nc.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "nats://127.0.0.1:4222"))
