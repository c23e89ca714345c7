"""One `dev` per data folder: the lock refuses a second holder and never outlives its owner."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import agent_orchestrator
from agent_orchestrator.runtime import DataDirBusy, DataDirLock
from agent_orchestrator.runtime.data_dir_lock import LOCK_FILE


def test_the_lock_holds_our_pid_and_refuses_a_second_holder(tmp_path: Path) -> None:
    with DataDirLock(tmp_path / "data") as lock:
        assert lock.path.read_text() == f"{os.getpid()}\n"
        with pytest.raises(DataDirBusy) as refused:
            DataDirLock(tmp_path / "data").acquire()
        assert refused.value.pid == os.getpid()
        assert lock.path.read_text() == f"{os.getpid()}\n"  # the refused one wrote nothing
    with DataDirLock(tmp_path / "data"):  # released on exit
        pass


def test_a_lock_file_left_by_a_dead_process_blocks_nobody(tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from agent_orchestrator.runtime import DataDirLock\n"
        "lock = DataDirLock(Path(sys.argv[1]))\n"
        "lock.acquire()\n"
        "print('locked', flush=True)\n"
        "time.sleep(60)\n"
    )
    root = Path(agent_orchestrator.__file__).parent.parent
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    with subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, env=env, text=True
    ) as holder:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(DataDirBusy) as refused:
            DataDirLock(tmp_path).acquire()
        assert refused.value.pid == holder.pid
        holder.send_signal(signal.SIGKILL)
    assert (tmp_path / LOCK_FILE).read_text() == f"{holder.pid}\n"  # stale, as after a crash
    with DataDirLock(tmp_path) as lock:
        assert lock.path.read_text() == f"{os.getpid()}\n"


def test_children_started_while_locked_do_not_keep_the_lock(tmp_path: Path) -> None:
    lock = DataDirLock(tmp_path)
    lock.acquire()
    child = subprocess.Popen(["sleep", "30"], close_fds=False)
    try:
        lock.release()
        started = time.monotonic()
        with DataDirLock(tmp_path):
            assert time.monotonic() - started < 1.0
    finally:
        child.kill()
        child.wait()


def test_an_unreadable_holder_is_another_process(tmp_path: Path) -> None:
    with DataDirLock(tmp_path) as lock:
        lock.path.write_text("")  # as if the holder had not written its pid yet
        with pytest.raises(DataDirBusy, match="in use by another process") as refused:
            DataDirLock(tmp_path).acquire()
        assert refused.value.pid is None
