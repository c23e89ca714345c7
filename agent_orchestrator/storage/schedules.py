"""Checkpoint schedules, run by nats-server itself (JetStream message schedules).

An agent's schedule is one message on ``agent.schedule.checkpoint.<agent_id>`` in stream
AGENT_SCHEDULES with a ``Nats-Schedule`` header (``@every 5s`` or ``@at <time>``). The server
publishes each firing to ``agent.scheduled.checkpoint.<agent_id>`` in the same work-queue
stream, where one durable consumer shared by all instances takes it exactly once. The schedule
outlives service restarts because it lives in the stream; publishing again replaces it.
"""

from nats.js.errors import NotFoundError

from agent_orchestrator.contracts import subjects
from agent_orchestrator.contracts.checkpoints import Schedule
from agent_orchestrator.storage.jetstream import JetStreamBound, jetstream_calls


def schedule_header(schedule: Schedule) -> str:
    """The ``Nats-Schedule`` value for a schedule."""
    if schedule.at is not None:
        return "@at " + schedule.at.isoformat().replace("+00:00", "Z")
    return f"@every {schedule.interval_s}s"


class CheckpointSchedules(JetStreamBound):
    """Sets, reads and cancels the server-run schedule of each agent."""

    async def set(self, schedule: Schedule) -> None:
        """Create or replace an agent's schedule."""
        agent = str(schedule.agent_id)
        with jetstream_calls():
            await self.js.publish(
                subjects.checkpoint_schedule_subject(agent),
                schedule.model_dump_json().encode(),
                headers={
                    "Nats-Schedule": schedule_header(schedule),
                    "Nats-Schedule-Target": subjects.scheduled_checkpoint_subject(agent),
                },
            )

    async def get(self, agent_id: str) -> Schedule | None:
        """The agent's schedule as stored, or None."""
        with jetstream_calls():
            try:
                msg = await self.js.get_last_msg(
                    subjects.SCHEDULES_STREAM, subjects.checkpoint_schedule_subject(agent_id)
                )
            except NotFoundError:
                return None
        return Schedule.model_validate_json(msg.data or b"{}")

    async def cancel(self, agent_id: str) -> None:
        """Stop an agent's schedule (and drop firings not yet handled)."""
        with jetstream_calls():
            for subject in (
                subjects.checkpoint_schedule_subject(agent_id),
                subjects.scheduled_checkpoint_subject(agent_id),
            ):
                await self.js.purge_stream(subjects.SCHEDULES_STREAM, subject=subject)
