"""The plans of the service's hot PostgreSQL queries at a population level, for bench/scale.py.

Each query is the service's own SQL (storage/agents.py, communications.py, tasks.py) with
random agents of the population, run under EXPLAIN (ANALYZE, BUFFERS) twice: as PostgreSQL
plans it for those values (what asyncpg's first executions get), and with
``plan_cache_mode = force_generic_plan`` (what a prepared statement may settle on after five).
What matters for flatness: an index scan whose buffers do not grow with the population.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from typing import Any

import asyncpg

from agent_orchestrator.storage.agents import _FILTER, AGENT_COLUMNS

PAGE = 50
GROUP = 32  # agent.get reads share one query: up to handler_max_workers ids at a time

#: name -> (SQL, how to make its arguments from the population and a random generator)
QUERIES: dict[str, tuple[str, Any]] = {
    "agent.get (group read)": (
        f"SELECT {AGENT_COLUMNS} FROM agents WHERE agent_id = ANY($1::uuid[])",
        lambda ids, rng: [rng.sample(ids, min(GROUP, len(ids)))],
    ),
    "agent.list page": (
        f"SELECT {AGENT_COLUMNS} FROM agents WHERE {_FILTER} "
        "AND ($6::uuid IS NULL OR agent_id < $6) ORDER BY agent_id DESC LIMIT $7",
        lambda ids, rng: [None, None, None, None, None, rng.choice(ids[PAGE:]), PAGE],
    ),
    "agent.list by type": (
        f"SELECT {AGENT_COLUMNS} FROM agents WHERE {_FILTER} "
        "AND ($6::uuid IS NULL OR agent_id < $6) ORDER BY agent_id DESC LIMIT $7",
        lambda ids, rng: [None, None, "writer", None, None, rng.choice(ids[4 * PAGE :]), PAGE],
    ),
    "agent.list by status PAUSED": (
        f"SELECT {AGENT_COLUMNS} FROM agents WHERE {_FILTER} "
        "AND ($6::uuid IS NULL OR agent_id < $6) ORDER BY agent_id DESC LIMIT $7",
        lambda ids, rng: [None, "PAUSED", None, None, None, None, PAGE],
    ),
    "agent.send: both agents": (
        "SELECT agent_id, project_id, status, version FROM agents WHERE agent_id = ANY($1::uuid[])",
        lambda ids, rng: [rng.sample(ids, 2)],
    ),
    "agent.execute: agent ACTIVE": (
        "SELECT 1 FROM agents WHERE agent_id = $1 AND status = 'ACTIVE'",
        lambda ids, rng: [rng.choice(ids)],
    ),
}


def _walk(node: dict[str, Any]) -> list[str]:
    """The plan's nodes, outermost first: type and index."""
    here = node["Node Type"] + (f" {node['Index Name']}" if "Index Name" in node else "")
    return [here, *(n for child in node.get("Plans", []) for n in _walk(child))]


async def _explain(
    conn: asyncpg.Connection, sql: str, args: Sequence[Any], *, generic: bool
) -> dict[str, Any]:
    """One EXPLAIN ANALYZE of a prepared statement: nodes, rows, buffers, ms."""
    mode = "force_generic_plan" if generic else "auto"
    async with conn.transaction():
        await conn.execute(f"SET LOCAL plan_cache_mode = {mode}")
        statement = await conn.prepare(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}")
        raw = await statement.fetchval(*args)
    plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]
    top = plan["Plan"]
    return {
        "nodes": _walk(top),
        "rows": top.get("Actual Rows"),
        "buffers": top.get("Shared Hit Blocks", 0) + top.get("Shared Read Blocks", 0),
        "ms": round(plan.get("Execution Time", 0.0), 3),
    }


async def explain_hot_queries(
    conn: asyncpg.Connection, ids: Sequence[str], seed: int = 7
) -> dict[str, dict[str, Any]]:
    """Per hot query: its plan for random values, custom and generic."""
    rng = random.Random(seed)
    agent_ids = list(ids)
    out = {}
    for name, (sql, make_args) in QUERIES.items():
        args = make_args(agent_ids, rng)
        out[name] = {
            "custom": await _explain(conn, sql, args, generic=False),
            "generic": await _explain(conn, sql, args, generic=True),
        }
    return out


def explain_lines(levels: Sequence[tuple[int, dict[str, dict[str, Any]]]]) -> list[str]:
    """Per query and level: the plan (generic when it differs), buffers and ms."""
    lines = []
    for name in QUERIES:
        for level, plans in levels:
            found = plans.get(name)
            if not found:
                continue
            custom, generic = found["custom"], found["generic"]
            plan = " > ".join(custom["nodes"][:3])
            line = (
                f"{name:<30}{level:>8}  {plan:<60} buffers {custom['buffers']:>5} "
                f"{custom['ms']:>7.3f} ms"
            )
            if generic["nodes"] != custom["nodes"]:
                line += (
                    f"; generic: {' > '.join(generic['nodes'][:3])}, buffers "
                    f"{generic['buffers']}, {generic['ms']:.3f} ms"
                )
            lines.append(line)
    return lines
