"""Run every benchmark of bench/ and print one table of their key figures.

    python bench/summary.py [--only NAME ...] [--seconds S] [--full-scale] [--json out.json]
        [--logs DIR]

Each benchmark runs as its own subprocess, one after the other, with `--json <file>`; its full
report goes to `<logs>/<name>.log`. The table takes from each JSON document the scenarios, their
rate, p50/p99 latency, the ratio to the baseline that benchmark measured in the same run, its
target and verdict. scale.py runs with --quick unless --full-scale. Exit code 1 when a benchmark
failed or flagged its run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
#: Benchmarks in the order they run, and whether they take --seconds.
BENCHES = {
    "commands": True,
    "state_checkpoints": True,
    "messages": False,
    "tasks": False,
    "bridge": True,
    "scale": True,
}

#: bridge.py's scenarios (its module is not imported here: each bench runs as a subprocess).
BRIDGE_NATS, BRIDGE_HTTP = "agent.get (NATS)", "GET /api/agents/{id}"
#: The floors of commands.py and state_checkpoints.py (commands.FLOORS), by scenario name.
FASTSTREAM = "FastStream echo"
FLOORS = ("raw nats-py echo", FASTSTREAM, "F_read", "F_write")


@dataclass
class Row:
    """One line of the table."""

    bench: str
    scenario: str
    rate: float | None
    unit: str
    p50_ms: float | None
    p99_ms: float | None
    ratio: float | None = None
    baseline: str = ""
    target: str = ""
    verdict: str = ""


def met(flag: bool | None) -> str:
    """A target verdict."""
    return "-" if flag is None else ("met" if flag else "MISSED")


def result_row(bench: str, r: dict[str, Any], unit: str = "req/s", **extra: Any) -> Row:
    """A row from a commands.py-shaped result."""
    return Row(bench, r["scenario"], r["req_per_s"], unit, r["p50_ms"], r["p99_ms"], **extra)


def echo_rows(bench: str, doc: dict[str, Any]) -> list[Row]:
    """commands.py and the throughput part of state_checkpoints.py: the floors (as ratios to
    the FastStream echo), then each scenario against the floor of each of its targets (a row
    per target), or against the FastStream echo when it has none."""
    rows = []
    for r in doc["results"]:
        if r.get("ratio_to_faststream") is None:
            continue
        if r["scenario"] in FLOORS:
            echo = r["scenario"] == FASTSTREAM
            rows.append(
                result_row(
                    bench,
                    r,
                    ratio=None if echo else r["ratio_to_faststream"],
                    baseline="(floor)" if echo else f"(floor) {FASTSTREAM}",
                )
            )
            continue
        targets = r.get("targets") or []
        rows += [
            result_row(
                bench,
                r,
                ratio=t["ratio"],
                baseline=t["floor"],
                target=f">= {t['minimum']:g}x",
                verdict=met(t["met"]),
            )
            for t in targets
        ]
        if not targets:
            rows.append(result_row(bench, r, ratio=r["ratio_to_faststream"], baseline=FASTSTREAM))
    return rows


def state_rows(doc: dict[str, Any]) -> list[Row]:
    """state_checkpoints.py: throughput rows, then ours / langgraph's latency at p50."""
    rows = echo_rows("state_checkpoints", doc)
    latency = doc.get("latency") or {}
    ours = {(r["size"], r["operation"]): r for r in latency.get("rows", [])}
    for ratio in latency.get("ratios", []):
        mine = ours.get((ratio["size"], ratio["ours"]), {})
        kib = ratio["size"] // 1024
        size = f"{kib // 1024} MiB" if kib >= 1024 else f"{kib} KiB"
        rows.append(
            Row(
                "state_checkpoints",
                f"checkpoint.{ratio['ours']} {size}",
                None,
                "",
                mine.get("p50_ms"),
                mine.get("p99_ms"),
                ratio=ratio["p50_ratio"],
                baseline=f"langgraph {ratio['theirs']} (p50)",
                target=ratio["target"],
                verdict=met(ratio["met"]),
            )
        )
    if latency.get("skipped"):
        rows.append(Row("state_checkpoints", "langgraph comparison", None, "", None, None))
        rows[-1].verdict = f"skipped: {latency['skipped']}"
    return rows


def raw_rows(bench: str, unit: str, target: float | None) -> Callable[[dict[str, Any]], list[Row]]:
    """messages.py and tasks.py: the raw JetStream path, then ours with its throughput ratio."""

    def rows(doc: dict[str, Any]) -> list[Row]:
        raw, *ours = doc["results"]
        by_path = doc.get("ratios_by_path") or {ours[0]["scenario"]: doc["ratios_to_raw"]}
        out = [result_row(bench, raw, unit, baseline="(baseline)")]
        for path in ours:
            ratio = by_path[path["scenario"]]["throughput"]
            out.append(
                result_row(
                    bench,
                    path,
                    unit,
                    ratio=ratio,
                    baseline=raw["scenario"],
                    target=f">= {target:g}x" if target is not None else "",
                    verdict=met(None if target is None else ratio >= target),
                )
            )
        return out

    return rows


def bridge_rows(doc: dict[str, Any]) -> list[Row]:
    """bridge.py: agent.get over NATS, then over HTTP (and variants) as ratios to it; the
    target is judged on the default bridge."""
    rows = []
    for r in doc["results"]:
        if r["scenario"] == BRIDGE_NATS:
            rows.append(result_row("bridge", r, baseline="(baseline)"))
            continue
        default = r["scenario"] == BRIDGE_HTTP
        rows.append(
            result_row(
                "bridge",
                r,
                ratio=r.get("ratios_to_nats", {}).get("req_per_s"),
                baseline=BRIDGE_NATS,
                target=">= 0.5x" if default else "(variant)",
                verdict=met(doc.get("target_met")) if default else "",
            )
        )
    return rows


def scale_rows(doc: dict[str, Any]) -> list[Row]:
    """scale.py: each scenario at the largest level as a ratio to the first (req/s over the
    FastStream echo's measured right before it, at each level), and memory."""
    levels = doc["levels"]
    first, last = levels[0]["level"], levels[-1]["level"]
    rows = []
    for r in levels[-1]["results"]:
        ratio = next(
            (x for x in doc["ratios"] if x["scenario"] == r["scenario"] and x["level"] == last),
            None,
        )
        if ratio is None:
            continue  # the FastStream echo: each scenario's floor, judged through them
        cost = ratio["ratios"]["cpu_per_op"]
        rows.append(
            result_row(
                "scale",
                r | {"scenario": f"{r['scenario']} @ {last:,}"},
                ratio=ratio["ratios"]["vs_echo"],
                baseline=f"same @ {first:,}, / echo (CPU x{cost:.2f})",
                target="+-20%",
                verdict=ratio["verdict"] + (" NOISY" if ratio.get("noisy") else ""),
            )
        )
    rss = levels[-1]["memory_mib"]["service_rss"]
    rows.append(
        Row(
            "scale",
            f"service RSS @ {last:,}: {rss:.0f} MiB",
            None,
            "",
            None,
            None,
            ratio=doc["memory_ratio"],
            baseline=f"RSS @ {first:,}",
            target="<= 1.2x",
            verdict=met(doc["memory_target_met"]),
        )
    )
    return rows


EXTRACT: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "commands": lambda doc: echo_rows("commands", doc),
    "state_checkpoints": state_rows,
    "messages": raw_rows("messages", "msg/s", 0.3),
    "tasks": raw_rows("tasks", "tasks/s", None),
    "bridge": bridge_rows,
    "scale": scale_rows,
}


@dataclass
class Run:
    """One benchmark's run."""

    name: str
    argv: list[str]
    exit_code: int
    seconds: float
    log: str
    document: dict[str, Any] | None


def run_bench(name: str, args: argparse.Namespace, logs: Path) -> Run:
    """Run bench/<name>.py with --json into `logs`; its output goes to <name>.log."""
    json_path = logs / f"{name}.json"
    argv = [sys.executable, str(BENCH_DIR / f"{name}.py"), "--json", str(json_path)]
    if args.seconds is not None and BENCHES[name]:
        argv += ["--seconds", f"{args.seconds:g}"]
    if name == "scale" and not args.full_scale:
        argv.append("--quick")
    log = logs / f"{name}.log"
    print(f"{name}: {' '.join(argv[1:])} ...", flush=True)
    began = time.monotonic()
    with log.open("wb") as out:
        code = subprocess.run(
            argv, stdout=out, stderr=subprocess.STDOUT, cwd=BENCH_DIR.parent, check=False
        ).returncode
    took = time.monotonic() - began
    document = json.loads(json_path.read_text()) if json_path.is_file() else None
    print(f"{name}: exit code {code} after {took:.0f} s, log {log}", flush=True)
    return Run(name, argv[1:], code, round(took, 1), str(log), document)


def rows_of(run: Run) -> list[Row]:
    """The table rows of one run (a failed run is one row saying so)."""
    if run.document is None:
        failed = f"exit {run.exit_code}"
        return [Row(run.name, "(no figures)", None, "", None, None, verdict=failed)]
    rows = EXTRACT[run.name](run.document)
    if run.document.get("flagged"):
        for row in rows:
            row.verdict = f"{row.verdict} FLAGGED".strip()
    return rows


def fmt(value: float | None, spec: str) -> str:
    """A number, or '-'."""
    return "-" if value is None else format(value, spec)


def table(rows: Sequence[Row]) -> str:
    """The one table."""
    w = max(28, *(len(r.scenario) + 2 for r in rows))
    b = max(24, *(len(r.baseline) + 2 for r in rows))
    header = (
        f"{'bench':<18}{'scenario':<{w}}{'rate':>9} {'unit':<8}{'p50 ms':>8}{'p99 ms':>9}"
        f"{'ratio':>7}  {'baseline':<{b}}{'target':<9}verdict"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r.bench:<18}{r.scenario:<{w}}{fmt(r.rate, '.0f'):>9} {r.unit:<8}"
            f"{fmt(r.p50_ms, '.2f'):>8}{fmt(r.p99_ms, '.2f'):>9}{fmt(r.ratio, '.2f'):>7}  "
            f"{r.baseline:<{b}}{r.target:<9}{r.verdict}"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--only", nargs="+", choices=list(BENCHES), help="run only these")
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="measured seconds a scenario, for the benchmarks that take it",
    )
    parser.add_argument("--full-scale", action="store_true", help="scale.py up to 100,000 agents")
    parser.add_argument("--json", type=Path, default=None, help="also write the table here")
    parser.add_argument("--logs", type=Path, default=None, help="folder for reports (temp)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks one by one, print the table."""
    args = parse_args(argv)
    logs = args.logs or Path(tempfile.mkdtemp(prefix="ao-bench-summary-"))
    logs.mkdir(parents=True, exist_ok=True)
    runs = [run_bench(name, args, logs) for name in BENCHES if name in (args.only or BENCHES)]
    rows = [row for run in runs for row in rows_of(run)]
    print()
    print(table(rows))
    print(
        "\nratio: rate over the baseline's (commands, state_checkpoints: floors over the "
        "FastStream echo, a scenario over the floor of each of its targets, a row per target; "
        "state_checkpoints latency rows: our p50 over langgraph's; scale: req/s at the largest "
        "level over the first, CPU per op in brackets; service RSS: largest over first)"
    )
    for run in runs:
        settings = (run.document or {}).get("settings", {})
        machine = settings.get("machine", "")
        print(f"{run.name}: {run.seconds:.0f} s, exit code {run.exit_code}  {machine}")
    print(f"full reports: {logs}")
    failed = any(run.exit_code != 0 for run in runs)
    if args.json is not None:
        document = {
            "rows": [asdict(row) for row in rows],
            "runs": [asdict(run) for run in runs],
            "failed": failed,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
