"""The embedded nats-server and PostgreSQL: start, persist, stop, kill, restart, no orphans."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterable
from pathlib import Path

import asyncpg
import nats
import pytest
from nats.js.errors import NotFoundError

import agent_orchestrator
from agent_orchestrator.runtime import (
    EmbeddedNats,
    EmbeddedPostgres,
    EmbeddedServerError,
    PortInUse,
)

pytestmark = pytest.mark.slow


def alive(pid: int) -> bool:
    """True if the process exists and is not a zombie waiting for its reaper."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):  # ESRCH: it went while being read
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat[stat.rindex(")") + 2] not in "ZX"


def children_of(pid: int) -> list[int]:
    """Direct children of a process, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def wait_all_gone(pids: Iterable[int], timeout: float = 5.0) -> list[int]:
    """Return the pids still alive after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    left = list(pids)
    while left and time.monotonic() < deadline:
        left = [pid for pid in left if alive(pid)]
        time.sleep(0.02)
    return [pid for pid in left if alive(pid)]


async def stream_names(url: str) -> list[str]:
    nc = await nats.connect(url)
    try:
        return [
            info.config.name for info in await nc.jetstream().streams_info() if info.config.name
        ]
    finally:
        await nc.close()


async def test_nats_starts_with_jetstream_enabled(tmp_path: Path) -> None:
    with EmbeddedNats(tmp_path) as server:
        assert server.url == f"nats://127.0.0.1:{server.port}"
        nc = await nats.connect(server.url)
        try:
            info = await nc.jetstream().account_info()
        finally:
            await nc.close()
        assert info.limits is not None
        assert (tmp_path / "nats.log").read_text().count("Server is ready") == 1
        pid = server.pid
        assert pid is not None
    assert not server.is_running
    assert wait_all_gone([pid]) == []


async def test_nats_streams_and_messages_survive_a_restart(tmp_path: Path) -> None:
    with EmbeddedNats(tmp_path) as server:
        url = server.url
        nc = await nats.connect(url)
        js = nc.jetstream()
        await js.add_stream(name="KEEP", subjects=["keep.>"])
        await js.publish("keep.one", b"1")
        await nc.close()

        assert server.restart() == url
        nc = await nats.connect(url)
        try:
            info = await nc.jetstream().stream_info("KEEP")
        finally:
            await nc.close()
        assert info.state.messages == 1


async def test_nats_kill_then_restart_on_the_same_port(tmp_path: Path) -> None:
    with EmbeddedNats(tmp_path) as server:
        url = server.url
        nc = await nats.connect(url)
        await nc.jetstream().add_stream(name="CRASH", subjects=["crash.>"])
        await nc.close()
        pid = server.pid
        assert pid is not None

        server.kill()
        assert not server.is_running
        assert not alive(pid)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", server.port), timeout=1).close()

        assert server.restart() == url
        assert await stream_names(url) == ["CRASH"]
        nc = await nats.connect(url)
        try:
            with pytest.raises(NotFoundError):
                await nc.jetstream().stream_info("NOPE")
        finally:
            await nc.close()


async def test_postgres_data_survives_stop_and_a_second_start(tmp_path: Path) -> None:
    first = EmbeddedPostgres(tmp_path)
    with first:
        assert first.url == f"postgresql://postgres@127.0.0.1:{first.port}/postgres"
        conn = await asyncpg.connect(first.url)
        await conn.execute("CREATE TABLE kept (id int PRIMARY KEY, name text)")
        await conn.execute("INSERT INTO kept VALUES (1, 'one')")
        await conn.close()
        tree = [first.pid or 0, *children_of(first.pid or 0)]
    assert len(tree) > 3  # postmaster + checkpointer, writers, launcher...
    assert wait_all_gone(tree) == []

    with EmbeddedPostgres(tmp_path) as second:  # a new handle on the same folder
        conn = await asyncpg.connect(second.url)
        try:
            assert await conn.fetchval("SELECT name FROM kept WHERE id = 1") == "one"
        finally:
            await conn.close()


async def test_postgres_kill_takes_the_backends_down_and_restart_recovers(
    tmp_path: Path,
) -> None:
    with EmbeddedPostgres(tmp_path) as server:
        url = server.url
        conn = await asyncpg.connect(url)
        await conn.execute("CREATE TABLE crash (id int)")
        await conn.execute("INSERT INTO crash VALUES (42)")
        backend = await conn.fetchval("SELECT pg_backend_pid()")
        postmaster = server.pid
        assert postmaster is not None
        tree = [postmaster, *children_of(postmaster)]
        assert backend in tree

        server.kill()
        conn.terminate()
        assert wait_all_gone(tree, timeout=1.0) == []
        assert (server.pgdata / "postmaster.pid").exists()  # stale, as after a crash

        assert server.restart() == url
        conn = await asyncpg.connect(url)
        try:
            assert await conn.fetchval("SELECT id FROM crash") == 42
        finally:
            await conn.close()


async def test_two_postgres_servers_run_at_once_even_under_a_long_path(tmp_path: Path) -> None:
    deep = tmp_path.joinpath(*["a-rather-long-folder-name"] * 5)
    assert len(str(deep / "postgres" / ".s.PGSQL.5432")) > 107  # too long for a Unix socket
    with EmbeddedPostgres(tmp_path / "one") as one, EmbeddedPostgres(deep) as two:
        assert one.port != two.port
        for server, name in ((one, "one"), (two, "two")):
            conn = await asyncpg.connect(server.url)
            try:
                await conn.execute(f"CREATE TABLE {name} ()")
                tables = await conn.fetch(
                    "SELECT tablename FROM pg_tables WHERE schemaname='public'"
                )
            finally:
                await conn.close()
            assert [row["tablename"] for row in tables] == [name]


def test_start_refuses_a_busy_port_with_the_log_tail(tmp_path: Path) -> None:
    with EmbeddedNats(tmp_path / "first") as first:
        second = EmbeddedNats(tmp_path / "second", port=first.port, start_timeout=10)
        with pytest.raises(PortInUse, match="address already in use") as taken:
            second.start()
        assert (taken.value.server, taken.value.host, taken.value.port) == (
            "nats",
            "127.0.0.1",
            first.port,
        )
        assert isinstance(taken.value, EmbeddedServerError)
        assert not second.is_running


def test_servers_die_with_a_killed_parent(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import json, sys, time
        from pathlib import Path
        from agent_orchestrator.runtime import EmbeddedServers
        servers = EmbeddedServers(Path({str(tmp_path)!r}))
        servers.start()
        print(json.dumps([servers.nats.pid, servers.postgres.pid]), flush=True)
        time.sleep(60)
        """
    )
    root = Path(agent_orchestrator.__file__).parent.parent
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    with subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, env=env, text=True
    ) as parent:
        try:
            assert parent.stdout is not None
            nats_pid, postmaster = json.loads(parent.stdout.readline())
            tree = [nats_pid, postmaster, *children_of(postmaster)]
            assert len(tree) > 3
            assert all(alive(pid) for pid in tree)
        finally:
            parent.kill()
    assert wait_all_gone(tree, timeout=10.0) == []
