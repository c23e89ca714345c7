"""`agent-orchestrator dev` runs everything embedded, keeps data, and stops with no orphans.

It refuses, in one line and before starting anything, a data folder another `dev` holds and a
port another program holds.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import nats
import pytest

from agent_orchestrator.runtime import free_port

pytestmark = pytest.mark.slow

CLI = str(Path(sys.executable).parent / "agent-orchestrator")


def processes_using(data_dir: Path) -> list[int]:
    """Pids of live processes whose command line mentions ``data_dir``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().split(") ", 1)[1][0]
        except OSError:
            continue
        if str(data_dir) in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def start_dev(
    data_dir: Path, nats_port: int, log: Path, http_port: int = 0, metrics_port: int = 0
) -> subprocess.Popen[bytes]:
    def banners() -> int:
        return log.read_text(errors="replace").count("is up") if log.exists() else 0

    before = banners()
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                CLI,
                "dev",
                "--data-dir",
                str(data_dir),
                "--nats-port",
                str(nats_port),
                "--http-port",
                str(http_port),
                "--metrics-port",
                str(metrics_port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=data_dir.parent,
        )
    deadline = time.monotonic() + 60
    while banners() == before:
        assert proc.poll() is None, log.read_text(errors="replace")
        assert time.monotonic() < deadline, log.read_text(errors="replace")
        time.sleep(0.1)
    return proc


def stop_dev(proc: subprocess.Popen[bytes], sig: signal.Signals) -> int:
    proc.send_signal(sig)
    return proc.wait(timeout=30)


async def request(url: str, subject: str, body: dict[str, str]) -> dict[str, str]:
    nc = await nats.connect(url)
    try:
        msg = await nc.request(subject, json.dumps(body).encode(), timeout=5)
        return dict(json.loads(msg.data))
    finally:
        await nc.close()


async def test_dev_serves_keeps_data_and_leaves_no_process(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    log = tmp_path / "dev.log"
    port = free_port()
    http_port = free_port()
    metrics_port = free_port()
    url = f"nats://127.0.0.1:{port}"
    http_url = f"http://127.0.0.1:{http_port}"
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    proc = start_dev(data_dir, port, log, http_port, metrics_port)
    try:
        assert url in log.read_text()
        assert http_url in log.read_text()
        assert metrics_url in log.read_text()
        async with httpx.AsyncClient(base_url=http_url) as http:
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/readyz")).status_code == 200
            assert "ao_bridge_requests_total" in (await http.get("/metrics")).text
            assert "ao_requests_total" in (await http.get(metrics_url)).text
        agent = await request(url, "agent.create", {"name": "kept", "type": "echo"})
        assert agent["status"] == "CREATED"
        assert stop_dev(proc, signal.SIGINT) == 0
        assert processes_using(data_dir) == []

        proc = start_dev(data_dir, port, log)
        again = await request(url, "agent.get", {"agent_id": agent["agent_id"]})
        assert again == agent
        assert stop_dev(proc, signal.SIGTERM) == 0
        assert processes_using(data_dir) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def run_dev(data_dir: Path, *args: str, prelude: str = "") -> tuple[int, str, str, float]:
    """Run ``dev`` to its end: (exit code, stdout, stderr, seconds taken).

    ``prelude`` is Python run in the CLI's process before it parses ``args``.
    """
    command = [CLI, "dev", "--data-dir", str(data_dir), *args]
    if prelude:
        command = [
            sys.executable,
            "-c",
            f"{prelude}\nimport sys\nfrom agent_orchestrator.cli import main\n"
            "sys.argv[0] = 'agent-orchestrator'\nmain()",
            *command[1:],
        ]
    started = time.monotonic()
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=120, cwd=data_dir.parent, check=False
    )
    return done.returncode, done.stdout, done.stderr, time.monotonic() - started


async def test_a_second_dev_on_the_same_data_dir_is_refused_and_touches_nothing(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    log = tmp_path / "dev.log"
    ports = [str(free_port()) for _ in range(3)]
    url = f"nats://127.0.0.1:{ports[0]}"
    first = start_dev(data_dir, int(ports[0]), log, int(ports[1]), int(ports[2]))
    try:
        agent = await request(url, "agent.create", {"name": "kept", "type": "echo"})
        files = {p.name: p.stat().st_size for p in data_dir.iterdir() if p.is_file()}

        flags = ("--nats-port", "--http-port", "--metrics-port")
        args = [part for pair in zip(flags, ports, strict=True) for part in pair]
        code, out, err, took = run_dev(data_dir, *args)
        assert code == 1
        assert took < 20
        assert out == ""
        assert err == (
            f"agent-orchestrator: the data dir {data_dir} is in use by pid {first.pid} "
            "(another `agent-orchestrator dev`); stop that one first, or choose another "
            "--data-dir\n"
        )
        # No second server ran on the store: not one line more in the servers' logs.
        assert {p.name: p.stat().st_size for p in data_dir.iterdir() if p.is_file()} == files

        assert first.poll() is None
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports[1]}") as http:
            assert (await http.get("/healthz")).status_code == 200
        assert await request(url, "agent.get", {"agent_id": agent["agent_id"]}) == agent
        listed = await request(url, "agent.list", {})
        assert agent["agent_id"] in json.dumps(listed)
        assert stop_dev(first, signal.SIGINT) == 0
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert processes_using(data_dir) == []


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port this test process listens on, as another program would."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


#: The flag of each port of ``dev``, and the way to turn that port off (if any).
PORT_FLAGS = {
    "--nats-port": ("NATS", ""),
    "--postgres-port": ("PostgreSQL", ""),
    "--http-port": ("HTTP", ", or 0 to turn the HTTP bridge off"),
    "--metrics-port": ("metrics", ", or 0 to turn metrics off"),
}


def assert_refused(flag: str, port: int, code: int, err: str) -> None:
    """``dev`` ended with one line on stderr naming the port, this process and the flag."""
    what, off = PORT_FLAGS[flag]
    assert code == 1
    assert "Traceback" not in err
    holder = f"pid {os.getpid()} ({Path('/proc/self/comm').read_text().strip()})"
    assert err.splitlines()[-1] == (
        f"agent-orchestrator: the {what} port {port} on 127.0.0.1 is in use by {holder}; "
        f"choose another with {flag}{off}"
    )


@pytest.mark.parametrize("flag", list(PORT_FLAGS))
def test_a_taken_port_stops_dev_before_it_starts_anything(
    tmp_path: Path, taken_port: int, flag: str
) -> None:
    data_dir = tmp_path / "data"
    ports = {"--nats-port": free_port(), "--http-port": 0, "--metrics-port": 0, flag: taken_port}
    args = [part for pair in ports.items() for part in map(str, pair)]
    code, out, err, took = run_dev(data_dir, *args)
    assert_refused(flag, taken_port, code, err)
    assert len(err.splitlines()) == 1
    assert out == ""
    assert took < 20
    assert not (data_dir / "nats").exists()
    assert not (data_dir / "postgres").exists()


@pytest.fixture(scope="module")
def raced_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data folder for the race tests, so that PostgreSQL's initdb runs once."""
    return tmp_path_factory.mktemp("raced") / "data"


@pytest.mark.parametrize("flag", list(PORT_FLAGS))
def test_a_port_taken_after_the_check_stops_dev_the_same_way(
    raced_data_dir: Path, taken_port: int, flag: str
) -> None:
    ports = {"--nats-port": free_port(), "--http-port": 0, "--metrics-port": 0, flag: taken_port}
    args = [part for pair in ports.items() for part in map(str, pair)]
    # The check finds every port free, as when another program takes one just after it.
    skip_check = "import agent_orchestrator.cli as cli\ncli.port_is_free = lambda host, port: True"
    code, _, err, _ = run_dev(raced_data_dir, *args, prelude=skip_check)
    assert_refused(flag, taken_port, code, err)
    assert processes_using(raced_data_dir) == []
