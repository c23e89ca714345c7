"""Optional py-spy profiles of the service while a bench scenario runs.

Set ``AO_BENCH_PROFILE_DIR`` (and have ``py-spy`` on PATH): every measured window of a
service scenario is also sampled with ``py-spy record --format raw`` into
``<dir>/<scenario>.txt`` (collapsed stacks, one line per stack with its sample count).
``python bench/profiling.py <dir>/<scenario>.txt`` prints where the samples went: the share of
each function anywhere on the stack (inclusive) and at the top (self).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

PROFILE_DIR_ENV = "AO_BENCH_PROFILE_DIR"
_service_pid: int | None = None


def profile_service(pid: int | None) -> None:
    """The process to profile during measured windows (None: nothing)."""
    global _service_pid
    _service_pid = pid


@contextlib.asynccontextmanager
async def profiled(scenario: str, seconds: float) -> AsyncIterator[None]:
    """Sample the service for ``seconds`` while the block runs, when profiling is asked for."""
    folder = os.environ.get(PROFILE_DIR_ENV)
    spy = shutil.which("py-spy")
    if not folder or spy is None or _service_pid is None:
        yield
        return
    out = Path(folder) / (re.sub(r"[^\w.-]+", "_", scenario) + ".txt")
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = await asyncio.create_subprocess_exec(
        spy, "record", "--pid", str(_service_pid), "--duration", str(max(1, round(seconds))),
        "--rate", "250", "--format", "raw", "--nonblocking", "-o", str(out),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield
    finally:
        await proc.wait()


def _frame_name(frame: str) -> str:
    """``handle (agent_orchestrator/handlers/agents.py:94)`` -> ``handle (handlers/agents.py)``."""
    match = re.match(r"(.*?) \((.*?)(?::\d+)?\)$", frame)
    if not match:
        return frame
    name, path = match.groups()
    path = re.sub(r".*site-packages/", "", path)
    path = re.sub(r".*/(agent_orchestrator|asyncio|lib/python3[.\d]*)/", r"\1/", path)
    return f"{name} ({path})"


def top_frames(path: Path, limit: int = 25, by: str = "inclusive") -> str:
    """A text table of the functions that took the most samples (``by``: inclusive or self)."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_frame_name(f) for f in stack.split(";")]
        for name in set(frames):
            inclusive[name] += count
        own[frames[-1]] += count
    rows = [f"{'incl %':>7} {'self %':>7}  function (file)", "-" * 72]
    ranked = own if by == "self" else inclusive
    for name, _ in ranked.most_common(limit):
        share, own_share = 100 * inclusive[name] / total, 100 * own[name] / total
        rows.append(f"{share:>7.1f} {own_share:>7.1f}  {name}")
    rows.append(f"({total} samples)")
    return "\n".join(rows)


def main() -> None:
    """Print the top frames of one or more raw profiles."""
    parser = argparse.ArgumentParser(description="Top frames of py-spy raw profiles.")
    parser.add_argument("profiles", type=Path, nargs="+")
    parser.add_argument("--limit", type=int, default=25)
    parser.add_argument("--by", choices=("inclusive", "self"), default="inclusive")
    args = parser.parse_args()
    for path in args.profiles:
        print(f"== {path.stem}")
        print(top_frames(path, args.limit, args.by))
        print()


if __name__ == "__main__":
    main()
