"""How ``agent-orchestrator dev`` sets up NATS: one open account, or (``--secure``) the
production layout of docs/security.md with a project ``demo``."""

from dataclasses import dataclass
from pathlib import Path

from agent_orchestrator.runtime.nats_accounts import (
    Credentials,
    project_operator,
    server_config,
    url,
)

DEMO_PROJECT = "demo"
CREDENTIALS_FILE = "nats-credentials.json"


@dataclass
class DevLayout:
    """The NATS side of ``dev``: configuration, the URLs each part connects with, the banner."""

    data_dir: Path
    secure: bool = False

    def __post_init__(self) -> None:
        self.credentials: Credentials | None = None
        if self.secure:
            path = self.data_dir / CREDENTIALS_FILE
            self.credentials = Credentials.load(path)
            self.credentials.add(projects=[DEMO_PROJECT])
            self.credentials.save(path)

    @property
    def service_account(self) -> str | None:
        """The service's NATS account (None: one open account)."""
        return self.credentials.service_account if self.credentials else None

    def nats_config(self) -> str:
        """What nats-server's configuration gets besides the defaults."""
        return server_config(self.credentials) if self.credentials else ""

    def _url(self, nats_url: str, account: str, user: str) -> str:
        assert self.credentials is not None
        return url(self.credentials, account, user, nats_url.removeprefix("nats://"))

    def service_url(self, nats_url: str) -> str:
        """What the service (and the bridge) connect with."""
        if self.credentials is None:
            return nats_url
        return self._url(nats_url, self.credentials.service_account, "service")

    def caller_url(self, nats_url: str) -> str:
        """What the banner's example request uses: the demo project's operator when secure."""
        if self.credentials is None:
            return nats_url
        return self._url(nats_url, DEMO_PROJECT, project_operator(DEMO_PROJECT))

    def banner(self, nats_url: str) -> str:
        """The banner's lines about NATS identity."""
        if self.credentials is None:
            return (
                "  NATS auth:  none: one open account, every client may do anything "
                "(dev --secure runs the production layout; see docs/security.md)\n"
            )
        service = self.credentials.service_account
        return (
            f"  NATS auth:  accounts {service} (service, bridge, operator) and project "
            f"{DEMO_PROJECT}; passwords in {self.data_dir / CREDENTIALS_FILE}\n"
            f"  operator:   {self._url(nats_url, service, 'operator')}\n"
            f"  demo:       {self.caller_url(nats_url)}\n"
        )
