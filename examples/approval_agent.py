"""An agent that asks before it acts: for every task it proposes an action, waits for a person
to approve it, and carries it out only when approved.

    python examples/approval_agent.py [--nats nats://127.0.0.1:4222] [--agent-id ID]

Without --agent-id it creates an agent (type `approver`) and starts it, printing its id. Hand it
work with `nats req agent.execute '{"agent_id":"<id>","input":{"refund":30,"order":4711}}'`;
the task goes to INPUT_REQUIRED with the proposal as its prompt (it is in the inbox:
`nats req task.list '{"status":"INPUT_REQUIRED"}'`), and
`nats req task.provide_input '{"task_id":"<task>","input":{"approved":true}}'` (or
`POST /api/tasks/<task>/input` on the bridge) lets it go on. A refusal (`"approved": false`,
with an optional `note`) ends the task without acting; nobody answering within the task's
parameter `approval_timeout_s` (default 3600) cancels it.

Its actions are kept in the agent's state (`actions`), so you can see what it did.
"""

import argparse
import asyncio
import contextlib
import logging
import sys
from typing import Any

import nats
from pydantic import JsonValue

from agent_orchestrator.client import AgentWorker, OrchestratorClient, TaskRun
from agent_orchestrator.contracts.agents import CreateAgent

APPROVAL_SCHEMA = {
    "type": "object",
    "properties": {"approved": {"type": "boolean"}, "note": {"type": "string"}},
    "required": ["approved"],
    "additionalProperties": False,
}


def build_worker(nc: nats.aio.client.Client, agent_id: str) -> AgentWorker:
    """The approver: one task handler that proposes, asks, and acts only when approved."""
    worker = AgentWorker(nc, agent_id)

    @worker.task
    async def propose_and_act(run: TaskRun) -> JsonValue:
        proposal = {"action": "carry out", "what": run.input}
        print(f"task {run.task_id} (attempt {run.attempt}): proposing {run.input}", flush=True)
        answer: Any = await run.ask(
            {"question": "May I do this?", "proposal": proposal},
            schema=APPROVAL_SCHEMA,
            timeout_s=int(run.parameters.get("approval_timeout_s", 3600)),
            on_timeout="cancel",
        )
        if not answer["approved"]:
            print(f"task {run.task_id}: declined", flush=True)
            return {"done": False, "note": answer.get("note")}
        state = await run.state()
        await run.update_state({"actions": [*state.state.get("actions", []), proposal]})
        print(f"task {run.task_id}: approved, done", flush=True)
        return {"done": True, "action": proposal}

    return worker


async def main(url: str, agent_id: str | None) -> None:
    nc = await nats.connect(url)
    if agent_id is None:
        client = OrchestratorClient(nc)
        agent = await client.create_agent(CreateAgent(name="approver", type="approver"))
        await client.start_agent(agent.agent_id)
        agent_id = str(agent.agent_id)
    print(f"agent {agent_id} is ready for tasks", flush=True)
    await build_worker(nc, agent_id).run()
    print(f"agent {agent_id} was terminated; bye", flush=True)
    await nc.close()


def parse(argv: list[str]) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nats", default="nats://127.0.0.1:4222", help="NATS URL")
    parser.add_argument("--agent-id", help="serve this agent instead of creating one")
    args = parser.parse_args(argv)
    return {"url": args.nats, "agent_id": args.agent_id}


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(**parse(sys.argv[1:])))
