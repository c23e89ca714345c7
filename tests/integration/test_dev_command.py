"""`agent-orchestrator dev` runs everything embedded, keeps data, and stops with no orphans."""

import json
import os
import signal
import subprocess
import sys
import time
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
