"""Is a TCP port free, and if not, who listens on it (best effort, from Linux's /proc)?"""

from __future__ import annotations

import contextlib
import errno
import socket
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")
_LISTEN = "0A"  # TCP state code of a listening socket in /proc/net/tcp


@dataclass(frozen=True)
class PortHolder:
    """A process that listens on a port."""

    pid: int
    command: str

    def __str__(self) -> str:
        return f"pid {self.pid} ({self.command})" if self.command else f"pid {self.pid}"


def port_is_free(host: str, port: int) -> bool:
    """False when binding `host:port` fails because the address is in use, else True.

    The socket gets SO_REUSEADDR as the servers' own listeners do, so connections of an earlier
    run still in TIME_WAIT do not count; any other bind error is left for the server to report.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno != errno.EADDRINUSE
    return True


def port_holder(port: int) -> PortHolder | None:
    """The process listening on TCP `port` (any address), None when it cannot be known."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    links = {f"socket:[{inode}]" for inode in inodes}
    with contextlib.suppress(OSError):
        for proc in sorted(_PROC.iterdir(), key=_pid_order):
            if proc.name.isdigit() and _holds_any(proc, links):
                return PortHolder(int(proc.name), _command_name(proc))
    return None


def _pid_order(entry: Path) -> int:
    return int(entry.name) if entry.name.isdigit() else 0


def _listening_inodes(port: int) -> set[str]:
    """Inodes of the listening sockets on `port`, from /proc/net/tcp and tcp6."""
    found: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (_PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != _LISTEN:
                continue
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[9] != "0":
                found.add(fields[9])
    return found


def _holds_any(proc: Path, links: set[str]) -> bool:
    """True if one of the process' file descriptors is one of these sockets."""
    try:
        fds = list((proc / "fd").iterdir())
    except OSError:  # gone, or not ours to read
        return False
    for fd in fds:
        with contextlib.suppress(OSError):
            if str(fd.readlink()) in links:
                return True
    return False


def _command_name(proc: Path) -> str:
    try:
        return (proc / "comm").read_text().strip()
    except OSError:
        return ""


def busy_port_message(what: str, host: str, port: int, hint: str) -> str:
    """One line saying which port is taken, by whom (when /proc tells), and what to do."""
    holder = port_holder(port)
    return f"the {what} port {port} on {host} is in use by {holder or 'another process'}; {hint}"
