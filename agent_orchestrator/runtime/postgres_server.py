"""PostgreSQL from the binaries the pgserver package ships (run directly, as a child)."""

from __future__ import annotations

import grp
import importlib.util
import os
import pwd
import shutil
import signal
import stat
import subprocess
from pathlib import Path
from typing import BinaryIO

from agent_orchestrator.runtime.process import (
    _START_ATTEMPTS,
    EmbeddedServerError,
    _log_tail,
    _pid_alive,
    _ServerProcess,
    _url_host,
)

#: System user that runs PostgreSQL when the caller is root (postgres refuses to run as root).
#: The same name pgserver uses, so data folders stay usable by both.
POSTGRES_SYSTEM_USER = "pgserver"


def postgres_bin_dir() -> Path:
    """Return the folder of the PostgreSQL binaries that the pgserver wheel ships."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or spec.origin is None:
        raise EmbeddedServerError("PostgreSQL binaries not found: install the pgserver package")
    bin_dir = Path(spec.origin).parent / "pginstall" / "bin"
    if not (bin_dir / "postgres").is_file():
        raise EmbeddedServerError(f"pgserver is installed but {bin_dir}/postgres is missing")
    return bin_dir


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
