"""The service as a separate OS process, and servers of its own, for fault tests.

Fault tests need what the session fixtures cannot give: a service they can SIGKILL mid-request
and start again, against a nats-server and a PostgreSQL that no other test shares (and that they
may kill too). ``own_servers`` starts the embedded binaries for one test (logs end up in the
test's folder); ``ServiceProcess`` runs ``agent-orchestrator serve`` against them as a child
process.

Nothing outlives the test: the service child gets PR_SET_PDEATHSIG (SIGKILL) on Linux, so even a
SIGKILLed pytest leaves no service behind, and the fixtures that use these helpers kill in their
finalizers (service first, then the servers).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import nats
import nats.aio.client
import nats.errors

from agent_orchestrator.contracts.subjects import AGENT_GET, SERVICE_NAME
from agent_orchestrator.runtime import EmbeddedNats, EmbeddedPostgres

__all__ = [
    "FAULT_TEST_ENV",
    "OwnServers",
    "ServiceNotAnswering",
    "ServiceProcess",
    "instance_ids",
    "own_servers",
    "service_executable",
]

#: Settings of a service under fault test: quick redelivery of jobs, quick relay sweeps, quiet logs.
FAULT_TEST_ENV: Mapping[str, str] = {
    "AO_INIT_JOB_ACK_WAIT_S": "2",
    "AO_OUTBOX_SWEEP_S": "0.5",
    "AO_LOG_LEVEL": "WARNING",
}
# Durability against a machine crash is not under test; a killed server still keeps its data.
_POSTGRES_ARGS = ("-c", "fsync=off")
_PR_SET_PDEATHSIG = 1
_LOG_TAIL_LINES = 60


class ServiceNotAnswering(RuntimeError):
    """The service process exited or did not answer requests in time."""


def service_executable() -> str:
    """The ``agent-orchestrator`` console script of the running venv (else from PATH)."""
    exe = Path(sys.executable).parent / "agent-orchestrator"
    if exe.is_file() and os.access(exe, os.X_OK):
        return str(exe)
    found = shutil.which("agent-orchestrator")
    if found is None:
        raise FileNotFoundError("agent-orchestrator console script not found: pip install -e .")
    return found


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that SIGKILLs the child when the thread that started it dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork, not in the child
    parent = os.getpid()

    def setup() -> None:
        if prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # the parent died before prctl took effect
            raise OSError("parent exited while starting the service")

    return setup


@dataclass
class OwnServers:
    """A nats-server (JetStream) and a PostgreSQL that belong to one test."""

    nats: EmbeddedNats
    postgres: EmbeddedPostgres

    @property
    def nats_url(self) -> str:
        """URL of the nats-server."""
        return self.nats.url

    @property
    def database_url(self) -> str:
        """DSN of PostgreSQL."""
        return self.postgres.url


@contextlib.contextmanager
def own_servers(test_dir: Path) -> Iterator[OwnServers]:
    """Start both servers for one test; stop (or kill) both on exit, whatever happened.

    Their data lives in a fresh folder outside pytest's temp root, linked from
    ``test_dir / "servers"``; at exit their logs are copied into ``test_dir`` and the data is
    removed. Why not under ``tmp_path``: run as root, PostgreSQL runs as another user that must
    traverse every parent folder, and each pytest session that starts (another engineer's, or
    the next run) resets ``/tmp/pytest-of-root`` to mode 0700, which makes a running or
    starting PostgreSQL fail with "Permission denied".
    """
    test_dir.mkdir(parents=True, exist_ok=True)
    data_dir = Path(tempfile.mkdtemp(prefix="ao-fault-test-"))
    with contextlib.suppress(OSError):
        (test_dir / "servers").symlink_to(data_dir, target_is_directory=True)
    servers = OwnServers(
        EmbeddedNats(data_dir), EmbeddedPostgres(data_dir, extra_args=_POSTGRES_ARGS)
    )
    try:
        servers.nats.start()
        servers.postgres.start()
        yield servers
    finally:
        try:
            try:
                _stop_or_kill(servers.postgres)
            finally:
                _stop_or_kill(servers.nats)
        finally:
            for log in data_dir.glob("*.log"):
                with contextlib.suppress(OSError):
                    shutil.copyfile(log, test_dir / log.name)
            with contextlib.suppress(OSError):
                (test_dir / "servers").unlink()
            shutil.rmtree(data_dir, ignore_errors=True)


def _stop_or_kill(server: EmbeddedNats | EmbeddedPostgres) -> None:
    try:
        server.stop()
    except Exception:
        server.kill()
        raise


async def instance_ids(nc: nats.aio.client.Client, *, wait: float = 0.2) -> frozenset[str]:
    """Ids of the service instances that answer ``$SRV.PING`` within ``wait`` seconds."""
    ids = set()
    sub = await nc.subscribe(nc.new_inbox())
    try:
        await nc.publish(f"$SRV.PING.{SERVICE_NAME}", b"", reply=sub.subject)
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = await sub.next_msg(timeout=left)
            except nats.errors.TimeoutError:
                break
            if msg.data:  # not the server's "no responders" status
                ids.add(str(json.loads(msg.data)["id"]))
    finally:
        await sub.unsubscribe()
    return frozenset(ids)


class ServiceProcess:
    """``agent-orchestrator serve`` as a child process that can be killed and started again.

    Its output (all runs) is appended to ``log_path``. The environment is the caller's without
    any ``AO_*`` / ``NATS_URL`` / ``DATABASE_URL``, plus the URLs, ``FAULT_TEST_ENV`` and ``env``;
    the working folder is the log's folder, so no stray ``.env`` file is read.
    """

    def __init__(
        self,
        nats_url: str,
        database_url: str,
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.nats_url = nats_url
        self.database_url = database_url
        self.log_path = Path(log_path)
        self.env = {**FAULT_TEST_ENV, **(env or {})}
        self.starts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    @property
    def pid(self) -> int | None:
        """Process id while it runs, else None."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def is_running(self) -> bool:
        """True while the process is alive."""
        return self.pid is not None

    @property
    def servers(self) -> list[str]:
        """``nats_url`` as nats-py's server list (``NATS_URL`` may name a cluster's nodes,
        comma-separated)."""
        return self.nats_url.split(",")

    def _environment(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("AO_") and k not in ("NATS_URL", "DATABASE_URL")
        }
        env.update(self.env)
        env.update(NATS_URL=self.nats_url, DATABASE_URL=self.database_url, PYTHONUNBUFFERED="1")
        return env

    def start(self) -> None:
        """Start the process (it is not answering yet: see ``wait_until_answers``)."""
        if self.is_running:
            raise RuntimeError(f"the service already runs as pid {self.pid}")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"--- start #{self.starts} at {time.time():.3f} ---\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                [service_executable(), "serve"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.log_path.parent,
                env=self._environment(),
                start_new_session=True,
                preexec_fn=_die_with_parent(),
            )

    async def wait_until_answers(
        self, within: float = 30.0, *, besides: frozenset[str] | None = None
    ) -> None:
        """Wait until the process answers ``agent.get`` with any reply (not_found will do).

        With other instances running, their answers prove nothing about this one: pass the ids
        of the instances that answered ``$SRV.PING`` before this one started as ``besides``,
        and it also waits until an instance not among them answers (``start_and_wait`` does).
        """
        deadline = time.monotonic() + within
        body = json.dumps({"agent_id": str(uuid.uuid4())}).encode()
        nc = await nats.connect(self.servers, allow_reconnect=False, connect_timeout=5)
        try:
            answered = False
            while True:
                if self._proc is None or self._proc.poll() is not None:
                    code = None if self._proc is None else self._proc.returncode
                    raise ServiceNotAnswering(
                        f"the service is not running (exit code {code}); "
                        f"log {self.log_path}:\n{self.log_tail()}"
                    )
                if not answered:
                    try:
                        await nc.request(AGENT_GET, body, timeout=0.5)
                        answered = True
                    except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
                        pass
                if answered and (besides is None or await instance_ids(nc) - besides):
                    return
                if time.monotonic() > deadline:
                    raise ServiceNotAnswering(
                        f"the service did not answer {AGENT_GET} within {within:.0f} s; "
                        f"log {self.log_path}:\n{self.log_tail()}"
                    )
                await asyncio.sleep(0.05)
        finally:
            await nc.close()

    async def start_and_wait(self, within: float = 30.0) -> None:
        """Start the process and wait until it answers (itself, not another instance); kill it
        if it does not."""
        nc = await nats.connect(self.servers, allow_reconnect=False, connect_timeout=5)
        try:
            others = await instance_ids(nc)
        finally:
            await nc.close()
        self.start()
        try:
            await self.wait_until_answers(within, besides=others)
        except BaseException:
            self.kill()
            raise

    def kill(self) -> None:
        """SIGKILL the process, as a crash would, and reap it (a no-op when not running)."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        self._proc = None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (clean shutdown); SIGKILL when it takes longer than ``timeout`` seconds."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return
        self._proc = None

    def log_tail(self, lines: int = _LOG_TAIL_LINES, *, all_runs: bool = False) -> str:
        """The last lines of the log (of the current run unless ``all_runs``)."""
        try:
            with self.log_path.open("rb") as f:
                f.seek(0 if all_runs else self._log_offset)
                data = f.read()
        except OSError:
            return "(no log)"
        return "\n".join(data.decode(errors="replace").splitlines()[-lines:]) or "(log is empty)"

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.is_running else "not running"
        return f"<ServiceProcess {self.nats_url} {state}, {self.starts} starts>"
