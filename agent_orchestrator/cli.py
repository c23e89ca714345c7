"""The ``agent-orchestrator`` command: ``dev`` (everything embedded), ``serve``, ``bridge``,
``asyncapi`` and ``adopt`` (an agent of the NATS agent protocol)."""

import asyncio
import contextlib
import logging
import signal
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any

import nats
import typer
from fastapi import FastAPI
from opentelemetry.trace import TracerProvider
from pydantic import ValidationError

from agent_orchestrator import __version__
from agent_orchestrator.bridge import BridgeSettings, create_app
from agent_orchestrator.bridge.server import (
    BridgePortInUse,
    BridgeStartError,
    EmbeddedBridge,
    run_bridge,
)
from agent_orchestrator.client import OrchestratorClient, RequestFailed
from agent_orchestrator.client.protocol_adapter import adopt as adopt_protocol_agent
from agent_orchestrator.contracts.agent_protocol import ProtocolAgentRef
from agent_orchestrator.contracts.agents import Agent
from agent_orchestrator.credentials_cli import credentials
from agent_orchestrator.dev_layout import DevLayout
from agent_orchestrator.domain.errors import Unavailable
from agent_orchestrator.observability import configure_logging, tracer_provider_from_env
from agent_orchestrator.observability.logs import LogFormat
from agent_orchestrator.observability.tracing import shutdown as shutdown_tracing
from agent_orchestrator.runtime import (
    DataDirBusy,
    DataDirLock,
    EmbeddedNats,
    EmbeddedPostgres,
    EmbeddedServerError,
    PortInUse,
    busy_port_message,
    free_port,
    port_is_free,
)
from agent_orchestrator.service import MetricsPortInUse, Service, unconnected_service
from agent_orchestrator.settings import Settings
from agent_orchestrator.wiring.parts import BROKER_LOGGER

app = typer.Typer(help="agent-orchestrator: manage AI agents over NATS.", no_args_is_help=True)
log = logging.getLogger("agent_orchestrator")


def _configure_logging(level: str, fmt: LogFormat = "text") -> None:
    configure_logging(level, fmt)
    # FastStream's own chatter (per message, per worker task) only in DEBUG runs.
    quiet = max(logging.getLevelName(level), logging.WARNING)
    logging.getLogger(BROKER_LOGGER).setLevel(quiet)
    logging.getLogger("faststream").setLevel(quiet)


async def _serve_until_signalled(settings: Settings, banner: str = "", http_port: int = 0) -> None:
    tracing = _tracer_provider()
    service = Service(settings, tracer_provider=tracing)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await service.start()
    bridge: EmbeddedBridge | None = None
    try:
        if http_port:
            bridge_settings = _bridge_settings(nats_url=settings.nats_url)
            try:
                bridge = EmbeddedBridge(bridge_settings, port=http_port, tracer_provider=tracing)
            except (ValueError, OSError) as exc:
                raise _refuse(exc) from None
            url = await bridge.start()
            banner = banner.replace("{http}", f"{url} (API docs: {url}/docs)")
        banner = banner.replace("{metrics}", service.metrics_url or "")
        if banner:
            print(banner, flush=True)
        await stop.wait()
    finally:
        print("stopping agent-orchestrator ...", flush=True)
        if bridge is not None:
            await bridge.stop()
        await service.stop()
        shutdown_tracing(tracing)


def _tracer_provider(service_name: str = "agent-orchestrator") -> TracerProvider | None:
    """Tracing as the OTEL_* variables ask (None: off), or exit 2 with the reason."""
    try:
        return tracer_provider_from_env(service_name)
    except ValueError as exc:
        typer.echo(f"agent-orchestrator: tracing cannot start: {exc}", err=True)
        raise typer.Exit(2) from None


def _refuse(exc: Exception) -> typer.Exit:
    """Say why the bridge will not start, without echoing any secret it was given."""
    if isinstance(exc, ValidationError):
        why = "; ".join(e["msg"] for e in exc.errors(include_input=False, include_url=False))
    else:
        why = str(exc)
    typer.echo(f"agent-orchestrator: the HTTP bridge refuses to start: {why}", err=True)
    return typer.Exit(2)


def _bridge_settings(**given: str) -> BridgeSettings:
    """The bridge's settings from the environment (and ``given``), or exit 2 with the reason."""
    try:
        return BridgeSettings(**given)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise _refuse(exc) from None


def _bridge_app(settings: BridgeSettings, tracing: TracerProvider | None = None) -> FastAPI:
    """The bridge app (its API keys file is read here), or exit 2 with the reason."""
    try:
        return create_app(settings, tracer_provider=tracing)
    except (ValueError, OSError) as exc:
        raise _refuse(exc) from None


def run_fast(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on uvloop (a dependency; its event loop costs a fraction of asyncio's per
    message), or on asyncio's loop where uvloop is not available (Windows)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


@app.command()
def serve() -> None:
    """Serve the command subjects against NATS_URL and DATABASE_URL (production)."""
    settings = Settings()
    _configure_logging(settings.log_level, settings.log_format)
    try:
        run_fast(_serve_until_signalled(settings))
    except Unavailable as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from exc


@app.command()
def dev(
    data_dir: Annotated[
        Path, typer.Option(help="Where NATS and PostgreSQL keep their data (kept across runs).")
    ] = Path(".agent-orchestrator"),
    nats_port: Annotated[int, typer.Option(help="NATS client port.")] = 4222,
    postgres_port: Annotated[
        int, typer.Option(help="PostgreSQL port; 0 picks a free one once and keeps it.")
    ] = 0,
    http_port: Annotated[
        int, typer.Option(help="Port of the HTTP bridge (127.0.0.1); 0 disables it.")
    ] = 8000,
    metrics_port: Annotated[
        int, typer.Option(help="Port of the service's Prometheus metrics (127.0.0.1); 0: off.")
    ] = 9464,
    secure: Annotated[
        bool,
        typer.Option(
            help="Run the production layout: NATS accounts for the service and a project "
            "'demo', passwords in <data-dir>/nats-credentials.json (docs/security.md)."
        ),
    ] = False,
) -> None:
    """Run everything locally: embedded nats-server (JetStream) and PostgreSQL, plus the service.

    One `dev` per data folder: a second one on the same folder exits at once, touching nothing.
    """
    data_dir = data_dir.resolve()
    lock = DataDirLock(data_dir)
    try:
        lock.acquire()
    except DataDirBusy as exc:
        holder = f"pid {exc.pid}" if exc.pid is not None else "another process"
        raise _fail(
            f"the data dir {data_dir} is in use by {holder} (another `agent-orchestrator dev`); "
            "stop that one first, or choose another --data-dir"
        ) from None
    try:
        _dev(data_dir, nats_port, postgres_port, http_port, metrics_port, secure=secure)
    finally:
        lock.release()


#: What each port of `dev` is called, and the option that changes it.
_DEV_PORT_HINTS = {
    "nats": ("NATS", "choose another with --nats-port"),
    "postgres": ("PostgreSQL", "choose another with --postgres-port"),
    "http": ("HTTP", "choose another with --http-port, or 0 to turn the HTTP bridge off"),
    "metrics": ("metrics", "choose another with --metrics-port, or 0 to turn metrics off"),
}


def _port_taken(kind: str, port: int, host: str = "127.0.0.1") -> typer.Exit:
    what, hint = _DEV_PORT_HINTS[kind]
    return _fail(busy_port_message(what, host, port, hint))


def _fail(message: str) -> typer.Exit:
    """Say what stops `dev` on one line of stderr; the exit to raise."""
    typer.echo(f"agent-orchestrator: {message}", err=True)
    return typer.Exit(1)


def _dev(
    data_dir: Path,
    nats_port: int,
    postgres_port: int,
    http_port: int,
    metrics_port: int,
    *,
    secure: bool = False,
) -> None:
    """`dev` once its data folder is locked: check the ports, start everything, stop it all."""
    postgres_port = _remembered_port(data_dir, postgres_port)
    ports = {
        "nats": nats_port,
        "postgres": postgres_port,
        "http": http_port,
        "metrics": metrics_port,
    }
    for kind, port in ports.items():
        if port and not port_is_free("127.0.0.1", port):
            raise _port_taken(kind, port)
    nats = EmbeddedNats(data_dir, port=nats_port)
    postgres = EmbeddedPostgres(data_dir, port=postgres_port)
    layout = DevLayout(data_dir, secure=secure)
    nats.extra_config = layout.nats_config()
    try:
        nats_url = nats.start()
        database_url = postgres.start()
        settings = Settings(
            nats_url=layout.service_url(nats_url),
            nats_service_account=layout.service_account,
            database_url=database_url,
            metrics_port=metrics_port,
            metrics_host="127.0.0.1",
        )
        _configure_logging(settings.log_level, settings.log_format)
        banner = (
            f"agent-orchestrator {__version__} is up (Ctrl-C stops it)\n"
            f"  NATS:       {nats_url}\n"
            f"{layout.banner(nats_url)}"
            f"  PostgreSQL: {database_url}\n"
            + ("  HTTP:       {http}\n" if http_port else "")
            + ("  metrics:    {metrics}\n" if metrics_port else "")
            + f"  data:       {data_dir}\n"
            f"  try:        nats --server {layout.caller_url(nats_url)} req agent.create "
            '\'{"name":"demo","type":"echo"}\''
        )
        run_fast(_serve_until_signalled(settings, banner, http_port))
    except PortInUse as exc:  # taken between the check and the server's start
        raise _port_taken(exc.server, exc.port, exc.host) from None
    except BridgePortInUse as exc:
        raise _port_taken("http", exc.port, exc.host) from None
    except MetricsPortInUse as exc:
        raise _port_taken("metrics", exc.port, exc.host) from None
    except Unavailable as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from exc
    except (BridgeStartError, EmbeddedServerError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        with contextlib.suppress(Exception):
            postgres.stop()
        with contextlib.suppress(Exception):
            nats.stop()


@app.command()
def bridge(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port.")] = 8000,
) -> None:
    """Serve the HTTP bridge (REST → one NATS request per call) against NATS_URL."""
    settings = _bridge_settings()
    _configure_logging(settings.log_level, settings.log_format)
    tracing = _tracer_provider("agent-orchestrator-bridge")
    try:
        run_bridge(settings, host, port, app=_bridge_app(settings, tracing))
    finally:
        shutdown_tracing(tracing)


def _remembered_port(data_dir: Path, requested: int) -> int:
    """The PostgreSQL port of this data folder: as requested, else the one used last time."""
    memo = data_dir / "postgres.port"
    if requested == 0 and memo.is_file():
        return int(memo.read_text().strip())
    port = requested or free_port()
    memo.write_text(f"{port}\n")
    return port


app.command()(credentials)


@app.command()
def asyncapi(
    out: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
) -> None:
    """Print the AsyncAPI document of every subject (YAML)."""
    text = unconnected_service().asyncapi_yaml()
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")


@app.command()
def adopt(
    agent: Annotated[str, typer.Argument(help="The protocol agent's `agent` token.")],
    owner: Annotated[str, typer.Argument(help="Its `owner` token.")],
    session_name: Annotated[str, typer.Argument(help="Its `session_name` token.")],
    project: Annotated[str | None, typer.Option(help="Our project (default: owner).")] = None,
    name: Annotated[str | None, typer.Option(help="Our name (default: session_name).")] = None,
    nats_url: Annotated[str, typer.Option("--nats", help="NATS URL.")] = "nats://127.0.0.1:4222",
) -> None:
    """Adopt an agent of the NATS agent protocol (found by $SRV.INFO agents): create our agent
    for it, start it, print it (JSON). Its tasks then go to it as prompts."""
    ref = ProtocolAgentRef(agent=agent, owner=owner, session_name=session_name)
    try:
        adopted = asyncio.run(_adopt(nats_url, ref, project, name))
    except (RequestFailed, OSError, TimeoutError) as exc:
        raise _fail(f"not adopted: {exc}") from exc
    typer.echo(adopted.model_dump_json(indent=2))


async def _adopt(
    nats_url: str, ref: ProtocolAgentRef, project: str | None, name: str | None
) -> Agent:
    nc = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=0)
    try:
        return await adopt_protocol_agent(
            OrchestratorClient(nc), ref, project_id=project, name=name
        )
    finally:
        await nc.close()


def main() -> None:
    """Console-script entry point."""
    app()
