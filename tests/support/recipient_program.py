"""An agent program for the crash test: receives an agent's messages with the client SDK and
records each one it handled (acknowledged) as a line ``<communication_id> <from> <n>``.

    python -m tests.support.recipient_program NATS_URL AGENT_ID OUT_FILE TOTAL [CRASH_AFTER]

With CRASH_AFTER it first receives TOTAL messages without acknowledging any, then handles the
first CRASH_AFTER of them and kills itself with SIGKILL, holding the rest unacknowledged. Without
it, it handles messages until OUT_FILE holds TOTAL lines, then exits.
"""

import asyncio
import os
import signal
import sys
from pathlib import Path

import nats

from agent_orchestrator.client import Inbox, InboxMessage


def record(out: Path, message: InboxMessage) -> int:
    """Append one handled message; the number of lines now in ``out``."""
    content = message.content
    assert isinstance(content, dict)
    line = f"{message.communication_id} {message.from_agent_id} {content['n']}\n"
    with out.open("a") as file:
        file.write(line)
        file.flush()
        os.fsync(file.fileno())
    return handled(out)


def handled(out: Path) -> int:
    """How many messages ``out`` records."""
    return len(out.read_text().splitlines()) if out.exists() else 0


async def main(url: str, agent_id: str, out: Path, total: int, crash_after: int | None) -> None:
    nc = await nats.connect(url)
    async with Inbox(nc, agent_id, batch=100) as inbox:
        if crash_after is not None:
            received = []
            while len(received) < total:
                message = await inbox.next(timeout=30)
                assert message is not None, f"only {len(received)} of {total} arrived"
                received.append(message)
            for message in received[:crash_after]:
                await message.ack()
                record(out, message)
            os.kill(os.getpid(), signal.SIGKILL)
        done = handled(out)
        while done < total:
            message = await inbox.next(timeout=30)
            assert message is not None, f"only {done} of {total} were handled"
            await message.ack()
            done = record(out, message)
    await nc.close()


if __name__ == "__main__":
    args = sys.argv[1:]
    asyncio.run(
        main(args[0], args[1], Path(args[2]), int(args[3]), int(args[4]) if args[4:] else None)
    )
