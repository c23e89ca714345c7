"""How much of the service one project holds: live agents, open tasks, waiting messages.

Each count stops at the limit asked about (``LIMIT``), on a partial index by project, so a
check costs at most that many index entries and nothing for a project far below it.
"""

from agent_orchestrator.storage.postgres import Database, translate_errors

_COUNTS = {
    "agents": "SELECT 1 FROM agents WHERE project_id = $1 AND status <> 'TERMINATED'",
    "tasks_in_flight": """SELECT 1 FROM tasks WHERE project_id = $1
                          AND status IN ('QUEUED', 'RUNNING', 'INPUT_REQUIRED')""",
    "waiting_messages": "SELECT 1 FROM communications WHERE project_id = $1 AND status = 'SENT'",
}


class ProjectUsage:
    """Counts of what a project holds, up to a limit."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @translate_errors
    async def count(self, what: str, project: str, *, limit: int) -> int:
        """How many of ``what`` (a key of the quotas: agents, tasks_in_flight,
        waiting_messages) ``project`` holds, counting no further than ``limit``."""
        count = await self._db.pool.fetchval(
            f"SELECT count(*) FROM ({_COUNTS[what]} LIMIT $2) AS held", project, limit
        )
        return int(count)
