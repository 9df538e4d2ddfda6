"""Runs the coordinator: database (given or embedded), migrations, engine, gRPC server."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from stepline.v1 import client_pb2, client_pb2_grpc, worker_pb2, worker_pb2_grpc

from coordinator import embedded_pg
from coordinator.auth import TokenInterceptor, digest, load_tokens
from coordinator.config import Settings
from coordinator.engine import Engine
from coordinator.limits import MAX_MESSAGE_BYTES
from coordinator.metrics import MetricsServer
from coordinator.service import WorkerService, WorkflowService
from coordinator.store import migrations
from coordinator.store.database import Database

log = logging.getLogger("coordinator")

_SERVICES = ("stepline.v1.WorkflowService", "stepline.v1.WorkerService", "")
# What server reflection lists (grpcurl, grpcui, Postman): the contract, health, itself.
_REFLECTED = (
    client_pb2.DESCRIPTOR.services_by_name["WorkflowService"].full_name,
    worker_pb2.DESCRIPTOR.services_by_name["WorkerService"].full_name,
    health.SERVICE_NAME,
    reflection.SERVICE_NAME,
)


@dataclass
class Running:
    """A started coordinator; ``stop()`` shuts it down."""

    server: grpc.aio.Server
    engine: Engine
    db: Database
    port: int
    stop_embedded: Callable[[], None] | None
    _health_task: asyncio.Task[None]
    metrics: MetricsServer | None = None

    async def stop(self, grace: float = 5.0) -> None:
        self._health_task.cancel()
        if self.metrics is not None:
            await asyncio.to_thread(self.metrics.stop)
        await self.engine.stop()
        await self.server.stop(grace)
        await self.db.close()
        if self.stop_embedded is not None:
            await asyncio.to_thread(self.stop_embedded)


def _interceptors(settings: Settings) -> list[grpc.aio.ServerInterceptor]:
    tokens = load_tokens(settings.tokens_file) if settings.tokens_file is not None else []
    if settings.api_key:
        tokens.append(("admin", digest(settings.api_key).encode()))
    return [TokenInterceptor(tokens)] if tokens else []


def _tls(settings: Settings) -> grpc.ServerCredentials | None:
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    client_ca = settings.tls_client_ca.read_bytes() if settings.tls_client_ca is not None else None
    return grpc.ssl_server_credentials(
        [(settings.tls_key.read_bytes(), settings.tls_cert.read_bytes())],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


def _warn_if_exposed(settings: Settings, *, secure: bool, tokens: bool) -> None:
    """Loudly, when anyone on the network could call it in the clear or without a token."""
    try:
        loopback = ipaddress.ip_address(settings.host).is_loopback
    except ValueError:
        loopback = settings.host == "localhost"
    if loopback or (secure and tokens):
        return
    missing = " and ".join(w for w, ok in (("TLS", secure), ("tokens", tokens)) if not ok)
    log.warning(
        "SERVING %s:%d WITHOUT %s: anyone who can reach this address can %s. "
        "Set --tls-cert/--tls-key and --tokens-file, or bind to 127.0.0.1.",
        settings.host,
        settings.port,
        missing.upper(),
        "read and change every workflow" if not tokens else "read the traffic",
    )


async def database_url(settings: Settings) -> tuple[str, Callable[[], None] | None]:
    if settings.database_url:
        return settings.database_url, None
    log.info("no database URL given: starting embedded PostgreSQL in %s", settings.data_dir)
    return await asyncio.to_thread(embedded_pg.start, settings.data_dir)


async def start(settings: Settings) -> Running:
    url, stop_embedded = await database_url(settings)
    db = await Database.connect(url, size=settings.pool_size)
    applied = await migrations.apply(db)
    if applied:
        log.info("applied migrations %s", applied)
    engine = Engine(db, settings)
    await engine.start()
    interceptors = _interceptors(settings)
    server = grpc.aio.server(
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            # Workers ping to notice a dead coordinator; let them.
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 1000),
            ("grpc.http2.max_ping_strikes", 0),
        ],
    )
    client_pb2_grpc.add_WorkflowServiceServicer_to_server(WorkflowService(engine), server)
    worker_pb2_grpc.add_WorkerServiceServicer_to_server(WorkerService(engine), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(_REFLECTED, server)
    target = f"{settings.host}:{settings.port}"
    credentials = _tls(settings)
    port = server.add_secure_port(target, credentials) if credentials else server.add_insecure_port(target)
    _warn_if_exposed(settings, secure=credentials is not None, tokens=bool(interceptors))
    await server.start()
    health_task = asyncio.create_task(_report_health(db, health_servicer))
    metrics = None
    if settings.metrics_port is not None:
        metrics = MetricsServer(engine, settings.host, settings.metrics_port)
    return Running(server, engine, db, port, stop_embedded, health_task, metrics)


async def _report_health(db: Database, servicer: health.aio.HealthServicer) -> None:
    """SERVING while PostgreSQL answers, NOT_SERVING while it does not."""
    last = None
    while True:
        if db.healthy != last:
            last = db.healthy
            status = (
                health_pb2.HealthCheckResponse.SERVING if last else health_pb2.HealthCheckResponse.NOT_SERVING
            )
            for name in _SERVICES:
                await servicer.set(name, status)
        await asyncio.sleep(0.2)


async def serve(settings: Settings) -> None:
    """Runs until SIGTERM or SIGINT, then shuts down gracefully."""
    # Handlers first: a SIGTERM that arrives as soon as we say we are listening must still
    # shut down gracefully.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    running = await start(settings)
    if running.metrics is not None:
        print(f"stepline metrics on http://{settings.host}:{running.metrics.port}/metrics", flush=True)
    print(f"stepline coordinator listening on {settings.host}:{running.port}", flush=True)
    await stop.wait()
    log.info("shutting down")
    with contextlib.suppress(Exception):
        await running.stop()
