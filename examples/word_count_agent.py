"""A small agent program on the worker SDK: counts the words of every task's text, and answers
every message with the word count of its content.

    python examples/word_count_agent.py [--nats nats://127.0.0.1:4222] [--agent-id ID] [--no-total]
                                        [--concurrency 1]

Without --agent-id it creates an agent (type `word-counter`) and starts it (initialize,
activate), printing its id; then it serves until the agent is terminated (or Ctrl-C). Hand it
work with `nats req agent.execute '{"agent_id":"<id>","input":{"text":"to be or not to be"}}'`.

Task parameters: `seconds_per_word` (default 0) makes it work slowly, to watch progress, pause,
cancel or kill it mid-task (a cancelled task stops at its next report, with one INFO line). It
keeps a running total in the agent's state (`words_counted`), unless started with --no-total:
then a task is only the two requests of the SDK's task path (task.start, task.complete), with
no state read or write (what bench/tasks.py runs). --concurrency N runs up to N tasks at once
(with a running total only 1 is safe: the total is read, then written).
"""

import argparse
import asyncio
import contextlib
import logging
import sys
from typing import Any

import nats
from pydantic import JsonValue

from agent_orchestrator.client import AgentWorker, InboxMessage, OrchestratorClient, TaskRun
from agent_orchestrator.contracts.agents import CreateAgent


def build_worker(
    nc: nats.aio.client.Client, agent_id: str, *, keep_total: bool = True, concurrency: int = 1
) -> AgentWorker:
    """The word counter: one task handler and one message handler; ``keep_total``: add each
    task's words to ``words_counted`` in the agent's state; ``concurrency``: tasks at once."""
    worker = AgentWorker(nc, agent_id, concurrency=concurrency)

    @worker.task
    async def count_words(run: TaskRun) -> JsonValue:
        text = run.input.get("text", "") if isinstance(run.input, dict) else str(run.input)
        words = text.split()
        delay = float(run.parameters.get("seconds_per_word", 0))
        for done, _ in enumerate(words, start=1):
            if delay:
                await asyncio.sleep(delay)
                await run.progress(done * 100 // len(words), f"{done} of {len(words)} words")
        if keep_total:
            state = await run.state()
            total = state.state.get("words_counted", 0) + len(words)
            await run.update_state({"words_counted": total})
        print(f"task {run.task_id} (attempt {run.attempt}): {len(words)} words", flush=True)
        return {"words": len(words)}

    @worker.message
    async def answer(message: InboxMessage) -> None:
        await message.reply({"words": len(str(message.content).split())})

    return worker


async def main(
    url: str, agent_id: str | None, keep_total: bool = True, concurrency: int = 1
) -> None:
    nc = await nats.connect(url)
    if agent_id is None:
        client = OrchestratorClient(nc)
        agent = await client.create_agent(CreateAgent(name="word counter", type="word-counter"))
        await client.start_agent(agent.agent_id)
        agent_id = str(agent.agent_id)
    print(f"agent {agent_id} is ready for tasks", flush=True)
    await build_worker(nc, agent_id, keep_total=keep_total, concurrency=concurrency).run()
    print(f"agent {agent_id} was terminated; bye", flush=True)
    await nc.close()


def parse(argv: list[str]) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nats", default="nats://127.0.0.1:4222", help="NATS URL")
    parser.add_argument("--agent-id", help="serve this agent instead of creating one")
    parser.add_argument(
        "--no-total",
        action="store_true",
        help="count only: keep no running total in the agent's state",
    )
    parser.add_argument("--concurrency", type=int, default=1, help="tasks run at once")
    args = parser.parse_args(argv)
    if args.concurrency < 1 or (args.concurrency > 1 and not args.no_total):
        parser.error("--concurrency must be >= 1, and above 1 only with --no-total")
    return {
        "url": args.nats,
        "agent_id": args.agent_id,
        "keep_total": not args.no_total,
        "concurrency": args.concurrency,
    }


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(**parse(sys.argv[1:])))
