"""The task handler of an adopted agent: each attempt of a task is a prompt to the agent of the
NATS agent protocol it stands for.

The prompt is ``{"prompt": <the input's text>}`` (plus ``parameters`` when the task has some).
Its reply stream becomes the task: ``status`` chunks other than ``ack`` and every ``response``
chunk become progress messages, a ``query`` becomes a question (``task.request_input``: the task
is INPUT_REQUIRED until ``task.provide_input``) whose answer is sent back, and the end of the
stream completes the task with ``{"text": <every response chunk joined>}``. An error reply
(``Nats-Service-Error-Code``) fails the task; no responder, or a stream silent for longer than
the protocol's 60 s, fails the attempt with a retry (:class:`RetryTask`).
"""

import contextlib
import json
from typing import Any

import nats.aio.client
import nats.errors
from nats.aio.msg import Msg
from pydantic import JsonValue

from agent_orchestrator.client.task_run import RetryTask, TaskRun
from agent_orchestrator.contracts import agent_protocol as wire

#: The protocol's inactivity timeout of a prompt stream.
INACTIVITY_S = 60.0
MESSAGE_CHARS = 500


class AgentRefused(Exception):
    """The protocol agent answered the prompt with an error."""


class ProtocolPrompter:
    """Prompts one protocol agent per task attempt (see the module docstring)."""

    def __init__(self, nc: nats.aio.client.Client, ref: wire.ProtocolAgentRef) -> None:
        self.nc = nc
        self.ref = ref

    async def __call__(self, run: TaskRun) -> JsonValue:
        envelope: dict[str, Any] = {"prompt": wire.prompt_text(run.input) or " "}
        if run.parameters:
            envelope[wire.PARAMETERS_FIELD] = run.parameters
        inbox = self.nc.new_inbox()
        sub = await self.nc.subscribe(inbox)
        texts: list[str] = []
        try:
            await self.nc.publish(
                self.ref.prompt_subject, json.dumps(envelope).encode(), reply=inbox
            )
            while True:
                try:
                    msg = await sub.next_msg(timeout=INACTIVITY_S)
                except (TimeoutError, nats.errors.TimeoutError) as exc:
                    raise RetryTask(f"{self.ref.prompt_subject} went silent") from exc
                if _ended(msg):
                    return {"text": "".join(texts)}
                chunk = json.loads(msg.data)
                kind, data = chunk.get("type"), chunk.get("data")
                if kind == "response":
                    text = data if isinstance(data, str) else str((data or {}).get("text", ""))
                    texts.append(text)
                    await run.progress(message=text[-MESSAGE_CHARS:] or None)
                elif kind == "status" and data not in ("ack", "done"):
                    await run.progress(message=str(data)[:MESSAGE_CHARS])
                elif kind == "query" and isinstance(data, dict):
                    answer = await run.ask(data.get("prompt"))  # INPUT_REQUIRED until answered
                    reply = json.dumps({"prompt": wire.as_text(answer) or " "}).encode()
                    await self.nc.publish(str(data["reply_subject"]), reply)
        finally:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()


def _ended(msg: Msg) -> bool:
    """The end of the stream; raises for an error reply or no responder."""
    headers = msg.headers or {}
    if headers.get("Status") == "503":
        raise RetryTask("no protocol agent answers")
    if wire.ERROR_CODE_HEADER in headers:
        raise AgentRefused(
            f"{headers[wire.ERROR_CODE_HEADER]}: {headers.get(wire.ERROR_HEADER, '')}"
        )
    return not msg.data
