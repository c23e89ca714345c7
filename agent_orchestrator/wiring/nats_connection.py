"""The service's NATS connection: nats-py's client with a flusher that writes once per loop turn.

nats-py (2.16) buffers each outgoing command and kicks a flusher task that writes the buffer to
the socket; the flusher writes as soon as it runs, so commands queued by tasks that run a moment
later (the next handler's KV request, the next reply) go out in a ``send`` of their own. On
loopback each ``send`` also carries the receiving side's TCP work: in the service's profiles it
was the largest single cost (``StreamWriter.writelines``, 20-50% of the samples).

``CoalescingClient`` lets the loop run the tasks that are ready once more before writing, so
every command queued during that turn leaves in the same ``send``. There is no timer: a lone
command waits one loop turn (microseconds), not a fixed interval. nats-py has no option for
this (its ``pending_size`` only bounds the buffer, ``flush_timeout`` only bounds a forced
flush), so the client overrides the private ``Client._flusher`` of nats-py 2.16 and uses its
private fields ``_transport``, ``_pending``, ``_pending_data_size`` and ``_flush_queue``;
``tests/integration/test_nats_connection.py`` fails if a nats-py upgrade moves them.

The bench's floors (FastStream echo, F_read, F_write) keep stock nats-py: they measure what a
plain FastStream user gets.
"""

import asyncio
from typing import Any

from faststream.nats import NatsBroker
from nats.aio.client import Client

#: Loop turns the flusher lets pass before it writes.
COALESCE_TURNS = 1


class CoalescingClient(Client):
    """nats-py's ``Client`` whose flusher lets one loop turn's commands accumulate first."""

    async def _flusher(self) -> None:
        assert self._transport, "Client.connect must be called first"
        assert self._flush_queue, "Client.connect must be called first"
        while True:
            if not self.is_connected or self.is_connecting:
                break
            kicks: list[asyncio.Future[Any]] = [await self._flush_queue.get()]
            try:
                for _ in range(COALESCE_TURNS):
                    await asyncio.sleep(0)
                # Publishers that kicked again while we waited: this write serves them too.
                while not self._flush_queue.empty():
                    kicks.append(self._flush_queue.get_nowait())
                if self._pending_data_size > 0:
                    self._transport.writelines(self._pending[:])
                    self._pending = []
                    self._pending_data_size = 0
                    await self._transport.drain()  # type: ignore[no-untyped-call]
            except OSError as e:
                await self._error_cb(e)
                await self._process_op_err(e)
                break
            except (asyncio.CancelledError, RuntimeError, AttributeError):
                break  # RuntimeError: the loop is closed (as in nats-py)
            finally:
                for kick in kicks:
                    if not kick.done():  # a forced flush may have given up on it
                        kick.set_result(None)


class CoalescingBroker(NatsBroker):
    """FastStream's ``NatsBroker`` connected through a ``CoalescingClient``."""

    async def _connect(self) -> Client:
        connection = CoalescingClient()
        await connection.connect(**self._connection_kwargs)
        self.config.connect(connection)
        return connection


__all__ = ["COALESCE_TURNS", "CoalescingBroker", "CoalescingClient"]
