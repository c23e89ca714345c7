"""One `dev` per data folder: an exclusive `flock` on a lock file that holds the owner's pid.

The kernel drops the lock when its holder dies, so a lock file left behind by a killed process
blocks nobody. The file is opened close-on-exec: the servers `dev` starts do not inherit it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from agent_orchestrator.runtime.process import EmbeddedServerError

#: Name of the lock file inside the data folder.
LOCK_FILE = "dev.lock"


class DataDirBusy(EmbeddedServerError):
    """Another process holds the data folder's lock."""

    def __init__(self, data_dir: Path, pid: int | None) -> None:
        self.data_dir = data_dir
        self.pid = pid
        holder = f"pid {pid}" if pid is not None else "another process"
        super().__init__(f"the data dir {data_dir} is in use by {holder}")


class DataDirLock:
    """An exclusive, non-blocking lock on a data folder, released on `release()` or exit."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / LOCK_FILE
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock and write our pid into it, or raise `DataDirBusy` at once."""
        if self._file is not None:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # "a+": neither truncates the holder's pid nor fails when the file is missing.
        file = self.path.open("a+", encoding="ascii")
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.close()
            raise DataDirBusy(self.data_dir, self._holder_pid()) from None
        except BaseException:
            file.close()
            raise
        file.seek(0)
        file.truncate()
        file.write(f"{os.getpid()}\n")
        file.flush()
        self._file = file

    def release(self) -> None:
        """Drop the lock (the file stays: removing it would race with a new holder)."""
        file, self._file = self._file, None
        if file is None:
            return
        with contextlib.suppress(OSError):
            file.truncate(0)
        file.close()  # closing the last descriptor releases the flock

    def _holder_pid(self, wait: float = 1.0) -> int | None:
        """The pid the holder wrote (it may be writing it right now), None if unreadable."""
        deadline = time.monotonic() + wait
        while True:
            with contextlib.suppress(OSError, ValueError):
                return int(self.path.read_text(encoding="ascii").strip())
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
