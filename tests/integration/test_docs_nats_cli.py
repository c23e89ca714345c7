"""The docs' commands run as written, real `nats` CLI and curl, on `agent-orchestrator dev`.

The commands come from the docs themselves, so docs and test cannot drift: every fenced block
whose info string is ``bash tested`` (or ``python tested``) in ``PAGES`` runs, page after page, in
one shell environment (a variable set in one block, such as ``ID``, is there in the next). In
such a block:

- a command is one line, or several (after a trailing ``\\``, or a quoted body going on);
  ``NAME=$(...)`` sets ``NAME`` from what the command prints, and ``B=...`` is set to the
  bridge of the dev under test;
- ``#`` lines right under a command, with no blank line between, are its output as the docs
  show it, and are checked: a ``{...}`` line against the reply's JSON (every key whose value is
  shown in full, at any depth; ``…`` elides), any other line piece by piece (every fragment
  between ``…`` must appear in the output). Comments after a blank line are prose;
- ``nats sub`` and a command ending in ``&`` keep running beside the rest (the docs say "in
  another terminal"); a program's shown output is awaited before the next step, and all their
  output is checked once every block has run. ``NATS_URL`` is the dev's.

``nats`` gets ``--server`` pointing at the dev under test; it runs on a pseudo-terminal because
``nats stream view`` pages only on one.
"""

import json
import os
import pty
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent_orchestrator.runtime import free_port

NEEDS_NATS_CLI = pytest.mark.skipif(
    shutil.which("nats") is None,
    reason="the nats CLI is not on PATH (go install github.com/nats-io/natscli/nats@v0.5.0)",
)

ROOT = Path(__file__).resolve().parents[2]
#: The pages whose ``tested`` blocks run, in this order (later pages use the tour's variables).
PAGES = [
    "README.md",
    "docs/agents.md",
    "docs/templates.md",
    "docs/state.md",
    "docs/messages.md",
    "docs/tasks.md",
    "docs/events.md",
    "docs/errors.md",
    "docs/debugging.md",
]
CLI = str(Path(sys.executable).parent / "agent-orchestrator")
BLOCK = re.compile(r"^```(bash|python) tested\n(.*?)^```", re.M | re.S)
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # curl prints header names in bold on a terminal
ASSIGN = re.compile(r"^([A-Z_][A-Z0-9_]*)=(.*)$", re.S)
#: Commands that only read, and may be repeated until what the docs show has happened.
READS = re.compile(r"\.(get|history|list|communications)\b|kv (get|history)|curl -s (-i )?\$")


@dataclass
class Step:
    """One command of a tested block, and the output the docs show under it."""

    page: str
    command: str
    shown: list[str] = field(default_factory=list)


def runnable_blocks(page: str) -> Iterator[tuple[str, str]]:
    """(language, body) of every tested block of a page."""
    for match in BLOCK.finditer((ROOT / page).read_text(encoding="utf-8")):
        yield match[1], match[2]


def steps(page: str, body: str) -> list[Step]:
    """The commands of a bash block, each with the output lines shown right under it."""
    found: list[Step] = []
    after_command = False
    pending = ""
    for raw in body.splitlines():
        line = raw.strip()
        if pending:
            line, pending = pending + line, ""
        if line.endswith("\\"):
            pending = line[:-1].strip() + " "
            continue
        if not line.startswith("#") and line.count("'") % 2:  # a quoted body goes on
            pending = line + "\n"
            continue
        if not line:
            after_command = False
        elif line.startswith("#"):
            if after_command:
                found[-1].shown.append(line.lstrip("#").strip())
        else:
            found.append(Step(page, line))
            after_command = True
    return found


def shown_values(text: str) -> list[tuple[tuple[str, ...], Any]]:
    """Every ``"key": value`` of a shown JSON line whose value is complete, with its key path."""
    decoder = json.JSONDecoder()
    values: list[tuple[tuple[str, ...], Any]] = []
    path: list[str] = []  # the key that opened each object we are in (or "" for an array)
    opener = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == '"':
            try:
                string, end = decoder.raw_decode(text, i)
            except ValueError:
                i += 1
                continue
            rest = text[end:].lstrip()
            if rest.startswith(":") and path and path[-1] != "[":
                start = end + text[end:].index(":") + 1
                while start < len(text) and text[start] == " ":
                    start += 1
                try:
                    value, value_end = decoder.raw_decode(text, start)
                except ValueError:
                    opener, i = string, start
                    continue
                complete = "…" not in json.dumps(value, ensure_ascii=False)
                if complete and "[" not in path:  # array items have no path to check by
                    values.append(((*path[1:], string), value))
                i = value_end
                continue
            i = end
            continue
        if ch == "{":
            path.append(opener or "{")
        elif ch == "[":
            path.append("[")
        elif ch in "}]" and path:
            path.pop()
        opener = ""
        i += 1
    return values


def reply_json(output: str) -> Any:
    """The first JSON document a command printed (a reply, a body, a value; pretty or not)."""
    decoder = json.JSONDecoder()
    offset = 0
    for line in output.splitlines(keepends=True):
        if line.lstrip().startswith(("{", "[")):
            try:
                document, end = decoder.raw_decode(output, offset + len(line) - len(line.lstrip()))
            except ValueError:
                document, end = None, offset
            if end > offset and not output[end:].split("\n", 1)[0].strip():  # not `[44] Subject`
                return document
        offset += len(line)
    raise AssertionError(f"no JSON in the output:\n{output}")


def dig(document: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        assert isinstance(document, dict), f"no {'.'.join(path)}"
        assert key in document, f"no {'.'.join(path)}"
        document = document[key]
    return document


def check_shown(step: Step, output: str) -> None:
    """What the docs show under a command is what it printed."""
    flat = " ".join(output.split())
    for line in step.shown:
        if line.startswith("{"):
            document = reply_json(output)
            for path, value in shown_values(line):
                assert dig(document, path) == value, (
                    f"{step.page}: `{step.command}` shows {'.'.join(path)}={value!r}, "
                    f"printed {dig(document, path)!r}"
                )
        else:
            for piece in line.split("…"):
                piece = " ".join(piece.split())
                assert piece in flat, f"{step.page}: `{step.command}` shows {piece!r}:\n{output}"


def run_on_terminal(script: str, env: dict[str, str], timeout: float = 30) -> tuple[int, str]:
    """Run a bash script with stdin and stdout on a pseudo-terminal; (exit code, output)."""
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        ["bash", "-c", script],
        stdin=secondary,
        stdout=secondary,
        stderr=subprocess.PIPE,
        env=env,
        cwd=ROOT,
        start_new_session=True,
    )
    os.close(secondary)
    chunks = []
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # EIO: every writer has closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(primary)
    _, err = proc.communicate(timeout=timeout)
    out = ANSI.sub("", b"".join(chunks).decode(errors="replace").replace("\r\n", "\n"))
    return proc.returncode, out + err.decode(errors="replace")


class Shell:
    """Runs the docs' steps against one dev, keeping their variables and background `nats sub`."""

    def __init__(self, nats_url: str, http_url: str, workdir: Path) -> None:
        self.workdir = workdir
        # NATS_URL: what the docs' programs connect to (the nats CLI gets --server besides).
        self.env = dict(os.environ, DOCS_NATS_URL=nats_url, NATS_URL=nats_url, B=http_url)
        self.env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{self.env['PATH']}"
        self.fixed = {"B": http_url}
        self.prelude = 'nats() { command nats --server "$DOCS_NATS_URL" "$@"; }\n'
        self.background: list[tuple[Step, subprocess.Popen[bytes], Path]] = []
        self.ran: list[str] = []

    def run(self, step: Step) -> None:
        self.ran.append(step.command)
        assignment = ASSIGN.match(step.command)
        if assignment:
            name = assignment[1]
            if name in self.fixed:
                return
            done = subprocess.run(
                ["bash", "-c", f'{self.prelude}{step.command}\nprintf %s "${name}"'],
                env=self.env,
                capture_output=True,
                timeout=30,
                check=False,
            )
            self.env[name] = done.stdout.decode().strip()
            why = f"{step.page}: `{step.command}` set nothing: {done.stderr.decode()}"
            assert done.returncode == 0, why
            assert self.env[name] not in ("", "null"), why
            return
        if step.command.startswith("nats sub ") or step.command.endswith("&"):
            self.start_background(step)
            return
        deadline = time.monotonic() + (10 if READS.search(step.command) else 0)
        while True:
            code, output = run_on_terminal(self.prelude + step.command, self.env)
            try:
                assert code == 0, f"{step.page}: `{step.command}` exited {code}:\n{output}"
                check_shown(step, output)
                return
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def start_background(self, step: Step) -> None:
        """Start `nats sub` (until it subscribed) or `program &` (until its shown output)."""
        out = self.workdir / f"background-{len(self.background)}.out"
        if step.command.startswith("nats sub "):
            script = 'exec nats --server "$DOCS_NATS_URL" ' + step.command.removeprefix("nats ")
            ready = ["Subscribing on"]
        else:
            script = "exec " + step.command.removesuffix("&")
            ready = [piece for line in step.shown for piece in line.split("…")]
        with out.open("wb") as sink:
            proc = subprocess.Popen(
                ["bash", "-c", script],
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=ROOT,
            )
        self.background.append((step, proc, out))
        deadline = time.monotonic() + 15
        while not all(piece.strip() in out.read_text(errors="replace") for piece in ready):
            assert proc.poll() is None, f"`{step.command}` ended:\n{out.read_text()}"
            assert time.monotonic() < deadline, f"`{step.command}` is not ready:\n{out.read_text()}"
            time.sleep(0.05)

    def check_background(self) -> None:
        """Each background command printed what the docs show (give it a moment to arrive)."""
        for step, _, out in self.background:
            deadline = time.monotonic() + 10
            while True:
                try:
                    check_shown(step, out.read_text(errors="replace"))
                    break
                except AssertionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)

    def stop_background(self) -> None:
        for _, proc, _ in self.background:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def run_python(self, page: str, source: str) -> None:
        script = self.workdir / f"block-{len(self.ran)}.py"
        script.write_text(source, encoding="utf-8")
        self.ran.append(f"python {page} block")
        done = subprocess.run(
            [sys.executable, str(script)],
            env=dict(self.env, NATS_URL=self.env["DOCS_NATS_URL"]),
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"{page}: a python block failed:\n{done.stderr.decode()}"


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """`agent-orchestrator dev` on a fresh data dir and free ports: (NATS URL, bridge URL)."""
    nats_port, http_port = free_port(), free_port()
    log = tmp_path / "dev.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                CLI,
                "dev",
                "--data-dir",
                str(tmp_path / "data"),
                "--nats-port",
                str(nats_port),
                "--http-port",
                str(http_port),
                "--metrics-port",
                "0",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    try:
        deadline = time.monotonic() + 60
        while "is up" not in log.read_text(errors="replace"):
            assert proc.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.1)
        yield f"nats://127.0.0.1:{nats_port}", f"http://127.0.0.1:{http_port}"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_shown_values_reads_what_the_docs_show() -> None:
    shown = '{"agent_id":"01a2…","status":"READY","error":{"code":"conflict",…},"n":[1,…],"v":3,…}'
    assert shown_values(shown) == [
        (("status",), "READY"),
        (("error", "code"), "conflict"),
        (("v",), 3),
    ]


@pytest.mark.slow
@NEEDS_NATS_CLI
def test_the_docs_nats_commands_run_as_shown(dev: tuple[str, str], tmp_path: Path) -> None:
    if shutil.which("curl") is None or shutil.which("jq") is None:
        pytest.skip("the docs' blocks use curl and jq, and one of them is not on PATH")
    shell = Shell(*dev, workdir=tmp_path)
    try:
        run_every_page(shell)
    finally:
        shell.stop_background()
    check_the_service_counted_the_docs(shell)


def run_every_page(shell: Shell) -> None:
    for page in PAGES:
        blocks = list(runnable_blocks(page))
        assert blocks, f"{page} has no tested block"
        for language, body in blocks:
            if language == "python":
                shell.run_python(page, body)
                continue
            for step in steps(page, body):
                shell.run(step)
    shell.check_background()
    ran = " ".join(shell.ran)
    commands = ("req", "sub", "kv get", "kv history", "stream view", "micro info", "micro stats")
    for command in commands:
        assert f"nats {command} " in ran, f"no tested block runs `nats {command}`"


def check_the_service_counted_the_docs(shell: Shell) -> None:
    """`nats micro info/stats --json`: every command listed, the docs' requests counted."""
    code, output = run_on_terminal(
        shell.prelude + "nats micro info agent-orchestrator --json", shell.env
    )
    assert code == 0, output
    info = reply_json(output)["info"]
    assert info["name"] == "agent-orchestrator"
    subjects = {endpoint["subject"] for endpoint in info["endpoints"]}
    assert {"agent.create", "agent.get", "agent.state.update", "task.cancel"} <= subjects
    code, output = run_on_terminal(
        shell.prelude + "nats micro stats agent-orchestrator --json", shell.env
    )
    assert code == 0, output
    [stats] = reply_json(output)  # one instance
    by_subject = {endpoint["subject"]: endpoint for endpoint in stats["endpoints"]}
    creates = " ".join(shell.ran).count("nats req agent.create ")
    assert by_subject["agent.create"]["num_requests"] >= creates
    assert by_subject["agent.get"]["num_errors"] >= 2  # docs/errors.md: not_found, not JSON
    assert by_subject["agent.get"]["last_error"].startswith("400:")
