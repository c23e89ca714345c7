"""Size limits: which one applies to what, and the wording of a ``payload_too_large`` reply.

Three limits of the service and one of NATS decide how big a request may be:

- a request body: ``AO_MAX_REQUEST_BYTES`` (256 KiB by default), except
- a request that carries a whole state (``agent.state.update``): ``AO_MAX_STATE_BYTES`` plus
  :data:`STATE_ENVELOPE_BYTES` for the rest of the body (agent id, mode, JSON spacing);
- the stored state itself (after a merge): ``AO_MAX_STATE_BYTES`` (6 MiB by default);
- and below all of them the NATS server's ``max_payload`` (1 MiB unless configured; the
  embedded server and docker-compose.yml allow 8 MiB): nothing larger crosses NATS at all.

The service, the client SDK and the HTTP bridge share these rules and this wording. Pure: no I/O.
"""

from dataclasses import dataclass
from typing import Final

from agent_orchestrator.contracts.subjects import AGENT_STATE_UPDATE

KIB: Final = 1024
MIB: Final = 1024 * KIB

#: Room for the rest of a request that carries a state, besides the state's own bytes.
STATE_ENVELOPE_BYTES: Final = 64 * KIB
#: Subjects whose request carries a whole state, so may be as large as a state.
STATE_SUBJECTS: Final = frozenset({AGENT_STATE_UPDATE})

MAX_REQUEST_SETTING: Final = "AO_MAX_REQUEST_BYTES"
MAX_STATE_SETTING: Final = "AO_MAX_STATE_BYTES"
MAX_CHECKPOINT_SETTING: Final = "AO_MAX_CHECKPOINT_BYTES"
MAX_MESSAGE_SETTING: Final = "AO_MAX_MESSAGE_BYTES"
#: How the NATS server's own limit is named in replies and warnings.
NATS_MAX_PAYLOAD: Final = "the NATS server's max_payload"


@dataclass(frozen=True)
class Limit:
    """A size limit and the setting that raises it."""

    bytes: int
    setting: str
    #: Bytes of ``bytes`` allowed besides what ``setting`` counts (a state request's envelope).
    allowance: int = 0

    def refusal(self, what: str, size: int | None) -> str:
        """``"state is 1.2 MiB (1258291 bytes); the limit is 1 MiB (AO_MAX_STATE_BYTES)"``;
        ``"request body is over …"`` when the size is unknown (a body cut off while streamed)."""
        limit = human_bytes(self.bytes - self.allowance)
        if self.allowance:
            limit += f" + {human_bytes(self.allowance)}"
        measured = "over the limit" if size is None else f"{human_bytes(size)} ({size} bytes)"
        return f"{what} is {measured}; the limit is {limit} ({self.setting})"

    def details(self, size: int) -> dict[str, int | str]:
        """The ``details`` of the error reply: size, limit and setting."""
        return {"size": size, "limit": self.bytes, "setting": self.setting}


def request_limit(subject: str, *, max_request_bytes: int, max_state_bytes: int) -> Limit:
    """The largest request body accepted on ``subject``."""
    if subject in STATE_SUBJECTS:
        return Limit(
            max_state_bytes + STATE_ENVELOPE_BYTES, MAX_STATE_SETTING, STATE_ENVELOPE_BYTES
        )
    return Limit(max_request_bytes, MAX_REQUEST_SETTING)


def payload_needed(*, max_request_bytes: int, max_state_bytes: int) -> int:
    """The NATS ``max_payload`` that lets every request and state within the limits through."""
    return max(max_request_bytes, max_state_bytes + STATE_ENVELOPE_BYTES)


def max_payload_refusal(what: str, size: int, max_payload: int) -> str:
    """The message for something larger than the NATS server lets through."""
    return (
        f"{what} is {human_bytes(size)} ({size} bytes); the limit is {human_bytes(max_payload)} "
        f"({NATS_MAX_PAYLOAD}: raise max_payload in the nats-server configuration)"
    )


def human_bytes(size: int) -> str:
    """``"900 bytes"``, ``"256 KiB"``, ``"1.2 MiB"``: exact when whole, else one decimal."""
    for unit, factor in (("MiB", MIB), ("KiB", KIB)):
        if size >= factor:
            value = size / factor
            return f"{value:.0f} {unit}" if size % factor == 0 else f"{value:.1f} {unit}"
    return f"{size} bytes"
