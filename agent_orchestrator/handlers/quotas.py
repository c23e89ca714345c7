"""Per-project quotas: one project cannot use up what others need.

A request whose project is known (``Project-Scope``, or the caller's NATS account) is counted
against its project's quotas before its handler runs: live agents (``agent.create``), tasks in
flight (``agent.execute``), messages waiting for delivery (``agent.send``) and requests per
second (every subject, counted by each service instance). Over a quota the reply is
``quota_exceeded`` (429) naming the quota, its limit and its setting. Callers without a project
(operators) are not counted. The counts are read before the change, so requests racing at the
limit may pass it by a few; the sender backlog (``AO_MAX_SENDER_BACKLOG``) is the exact one.
"""

import time
from dataclasses import dataclass, field

from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from agent_orchestrator.contracts import subjects
from agent_orchestrator.domain.errors import QuotaExceeded
from agent_orchestrator.storage.quotas import ProjectUsage


@dataclass(frozen=True)
class Quota:
    """One countable quota: what it counts, on which subject, and its setting."""

    what: str
    subject: str
    setting: str
    noun: str


QUOTAS = (
    Quota("agents", subjects.AGENT_CREATE, "AO_PROJECT_MAX_AGENTS", "agents not terminated"),
    Quota(
        "tasks_in_flight",
        subjects.AGENT_EXECUTE,
        "AO_PROJECT_MAX_TASKS_IN_FLIGHT",
        "tasks queued or running",
    ),
    Quota(
        "waiting_messages",
        subjects.AGENT_SEND,
        "AO_PROJECT_MAX_WAITING_MESSAGES",
        "messages waiting for delivery",
    ),
)


@dataclass
class ProjectQuotas:
    """The limits of every project (0: none) and the counting that enforces them."""

    usage: ProjectUsage
    max_agents: int = 0
    max_tasks_in_flight: int = 0
    max_waiting_messages: int = 0
    max_requests_per_s: int = 0
    _rates: MovingWindowRateLimiter = field(
        default_factory=lambda: MovingWindowRateLimiter(MemoryStorage()), init=False
    )

    def _limit(self, quota: Quota) -> int:
        return int(getattr(self, f"max_{quota.what}"))

    async def check(self, subject: str, project: str) -> None:
        """Raise QuotaExceeded when a request on ``subject`` would take ``project`` over one
        of its quotas."""
        if self.max_requests_per_s:
            rate = RateLimitItemPerSecond(self.max_requests_per_s)
            if not self._rates.hit(rate, project):
                retry = self._rates.get_window_stats(rate, project).reset_time - time.time()
                raise QuotaExceeded(
                    f"project {project!r} sends more than {self.max_requests_per_s} requests "
                    "per second (AO_PROJECT_MAX_REQUESTS_PER_S); retry shortly",
                    details={
                        "quota": "requests_per_s",
                        "limit": self.max_requests_per_s,
                        "setting": "AO_PROJECT_MAX_REQUESTS_PER_S",
                        "retry_after_s": max(0.0, round(retry, 3)),
                    },
                )
        for quota in QUOTAS:
            limit = self._limit(quota)
            if quota.subject != subject or not limit:
                continue
            held = await self.usage.count(quota.what, project, limit=limit)
            if held >= limit:
                raise QuotaExceeded(
                    f"project {project!r} has {held} {quota.noun}, its quota ({quota.setting}); "
                    "finish or remove some first",
                    details={"quota": quota.what, "limit": limit, "setting": quota.setting},
                )
