"""A server as a child process: start, wait until ready, stop, kill its tree, restart.

Each server is a child process of the caller with its data under one folder that survives
restarts. `stop()` shuts it down cleanly, `kill()` SIGKILLs its whole process tree (for fault
tests), `restart()` brings it back on the same port with the same data, also after a kill.

On Linux a child gets PR_SET_PDEATHSIG, so it is signalled when the thread that started it dies:
call `start()` from a long-lived thread (normally the main thread), and a SIGKILLed caller leaves
no orphan servers behind. Children run in their own session, so Ctrl-C in a terminal reaches the
caller only, which then stops them in order.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

_PR_SET_PDEATHSIG = 1
_LOG_TAIL_LINES = 40
_START_ATTEMPTS = 3
#: What nats-server and PostgreSQL log (in any case) when their port is taken.
_ADDRESS_IN_USE = "address already in use"


class EmbeddedServerError(RuntimeError):
    """An embedded server could not be found, started or stopped."""


class PortInUse(EmbeddedServerError):
    """An embedded server could not listen: another process holds its port."""

    def __init__(self, message: str, *, server: str, host: str, port: int) -> None:
        super().__init__(message)
        self.server = server
        self.host = host
        self.port = port


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on `host` that is free right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read()
    except OSError:
        return b""


def _log_tail(path: Path, since: int = 0) -> str:
    data = _read_from(path, since)
    lines = data.decode(errors="replace").splitlines()[-_LOG_TAIL_LINES:]
    return "\n".join(lines) or "(log is empty)"


def _child_setup(death_signal: signal.Signals) -> Callable[[], None] | None:
    """Return a preexec_fn that ties the child's life to this thread (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork, not in the child
    parent = os.getpid()

    def setup() -> None:
        # Runs after subprocess switched user: a credential change would clear the setting.
        if prctl(_PR_SET_PDEATHSIG, int(death_signal), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # the parent died before prctl took effect
            raise OSError("parent exited while starting the server")

    return setup


def _proc_state(pid: int) -> tuple[str, int] | None:
    """Return (state, ppid) of a process from /proc, None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[1])


def _pid_alive(pid: int) -> bool:
    """Return True if `pid` exists and is not a zombie."""
    if sys.platform.startswith("linux"):
        state = _proc_state(pid)
        return state is not None and state[0] not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _descendants(root: int) -> list[int]:
    """Return the pids of all descendants of `root` (Linux /proc; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    for entry in proc.iterdir():
        if entry.name.isdigit():
            state = _proc_state(int(entry.name))
            if state is not None:
                children.setdefault(state[1], []).append(int(entry.name))
    found: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _wait_gone(pids: Sequence[int], timeout: float) -> list[int]:
    """Wait until `pids` are gone; return those still alive at the deadline."""
    deadline = time.monotonic() + timeout
    alive = [p for p in pids if _pid_alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = [p for p in alive if _pid_alive(p)]
    return alive


class _ServerProcess:
    """Shared lifecycle of one embedded server: a child process, a port, a log file."""

    name = "server"
    stop_signal = signal.SIGTERM
    death_signal = signal.SIGTERM

    def __init__(
        self,
        data_dir: Path,
        port: int = 0,
        host: str = "127.0.0.1",
        extra_args: Sequence[str] = (),
        *,
        start_timeout: float = 30.0,
        stop_timeout: float = 15.0,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.host = host
        self.extra_args = tuple(extra_args)
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._port = port
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    @property
    def log_path(self) -> Path:
        """File that receives the server's output (appended across restarts)."""
        return self.data_dir / f"{self.name}.log"

    @property
    def port(self) -> int:
        """The listening port (picked at the first start when 0 was asked for)."""
        if self._port == 0:
            raise EmbeddedServerError(f"{self.name} has no port yet: call start() first")
        return self._port

    @property
    def pid(self) -> int | None:
        """Process id of the running server, None when it is not running."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def is_running(self) -> bool:
        """True while the server process is alive."""
        return self.pid is not None

    @property
    def url(self) -> str:
        """Connection URL of the server."""
        raise NotImplementedError

    def start(self) -> str:
        """Start the server (a no-op when it runs), wait until it is ready, return its URL."""
        if self.is_running:
            return self.url
        self._reap()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._port == 0:
            self._port = free_port(self.host)
        self._prepare()
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            try:
                self._proc = subprocess.Popen(
                    self._command(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.data_dir,
                    start_new_session=True,
                    preexec_fn=_child_setup(self.death_signal),
                    user=self._run_as_uid,
                    group=self._run_as_gid,
                    extra_groups=self._run_as_groups,
                )
            except OSError as exc:
                raise EmbeddedServerError(f"could not run {self.name}: {exc}") from exc
        deadline = time.monotonic() + self.start_timeout
        while not self._ready():
            problem = None
            if self._proc.poll() is not None:
                problem = f"exited with code {self._proc.returncode}"
            elif time.monotonic() > deadline:
                problem = f"not ready after {self.start_timeout:.0f} s"
            if problem is not None:
                self.kill()
                tail = _log_tail(self.log_path, self._log_offset)
                message = (
                    f"{self.name} on {self.host}:{self._port} {problem}; "
                    f"log {self.log_path}:\n{tail}"
                )
                if _ADDRESS_IN_USE in tail.lower():
                    raise PortInUse(message, server=self.name, host=self.host, port=self._port)
                raise EmbeddedServerError(message)
            time.sleep(0.02)
        return self.url

    def stop(self) -> None:
        """Shut down cleanly; SIGKILL the process tree if that takes longer than stop_timeout."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            tree = _descendants(proc.pid)
            _signal(proc.pid, self.stop_signal)
            try:
                proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return
            for pid in _wait_gone(tree, 2.0):
                _signal(pid, signal.SIGKILL)
            _wait_gone(tree, 2.0)
        self._reap()

    def kill(self) -> None:
        """SIGKILL the server and every process it started, as a crash would."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            _signal(proc.pid, signal.SIGSTOP)  # freeze it so that it forks no new children
            tree = _descendants(proc.pid)
            _signal(proc.pid, signal.SIGKILL)
            for pid in tree:
                _signal(pid, signal.SIGKILL)
            proc.wait()
            if left := _wait_gone(tree, 5.0):
                raise EmbeddedServerError(f"{self.name} children {left} survived SIGKILL")
        self._reap()

    def restart(self) -> str:
        """Stop (if running) and start again on the same port with the same data."""
        self.stop()
        return self.start()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.is_running else "stopped"
        return f"<{type(self).__name__} {self.data_dir} port {self._port or '-'} {state}>"

    def _reap(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            self._proc = None

    def _prepare(self) -> None:
        """Get the data folder ready before the server process starts."""

    # Who the child runs as (None: as the caller).
    _run_as_uid: int | None = None
    _run_as_gid: int | None = None
    _run_as_groups: list[int] | None = None

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError
