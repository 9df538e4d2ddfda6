"""Coordinator settings: read once, from command-line flags over ``STEPLINE_*`` variables."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from coordinator.limits import Limits

DEFAULT_PORT = 7420


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the coordinator can be told. Field docs name the flag and variable."""

    host: str = "127.0.0.1"
    """--host / STEPLINE_HOST: interface to listen on."""
    port: int = DEFAULT_PORT
    """--port / STEPLINE_PORT: TCP port; 0 picks a free one (printed at start)."""
    database_url: str | None = None
    """--database-url / STEPLINE_DATABASE_URL: PostgreSQL to use; none starts an embedded one."""
    data_dir: Path = Path(".stepline")
    """--data-dir / STEPLINE_DATA_DIR: where the embedded PostgreSQL keeps its data."""
    lease_ms: int = 3000
    """--lease-ms / STEPLINE_LEASE_MS: silence after which a worker loses its executions."""
    max_payload_bytes: int = 1 << 20
    """--max-payload-bytes / STEPLINE_MAX_PAYLOAD_BYTES: largest accepted payload."""
    max_recovery_attempts: int = 20
    """--max-recovery-attempts / STEPLINE_MAX_RECOVERY_ATTEMPTS: before a workflow is poison."""
    api_key: str | None = None
    """--api-key / STEPLINE_API_KEY: one admin token; calls then send "authorization: Bearer <key>"."""
    tokens_file: Path | None = None
    """--tokens-file / STEPLINE_TOKENS_FILE: tokens with roles (worker, client, admin), one per line as
    "<role> sha256:<hex>" (make one with `stepline token new --role worker`); calls need one."""
    tls_cert: Path | None = None
    """--tls-cert / STEPLINE_TLS_CERT: PEM certificate chain: serve TLS (with --tls-key)."""
    tls_key: Path | None = None
    """--tls-key / STEPLINE_TLS_KEY: PEM private key of --tls-cert."""
    tls_client_ca: Path | None = None
    """--tls-client-ca / STEPLINE_TLS_CLIENT_CA: PEM CA bundle: require client certificates
    signed by it (mutual TLS)."""
    retention_hours: float = 0.0
    """--retention-hours / STEPLINE_RETENTION_HOURS: delete finished workflows this old; 0 keeps all."""
    pool_size: int = 8
    """--pool-size / STEPLINE_POOL_SIZE: PostgreSQL connections."""
    sweep_ms: int = 5000
    """--sweep-ms / STEPLINE_SWEEP_MS: how often to re-check what a lost wake-up hint between
    coordinators could have said (next timer, ready workflows, waits held here)."""
    metrics_port: int | None = None
    """--metrics-port / STEPLINE_METRICS_PORT: serve Prometheus metrics at http://<host>:<port>/metrics;
    0 picks a free port (printed at start); none serves no metrics."""
    log_level: str = "INFO"
    """--log-level / STEPLINE_LOG_LEVEL: DEBUG, INFO, WARNING or ERROR."""
    log_format: str = "text"
    """--log-format / STEPLINE_LOG_FORMAT: text, or json (one object per line with workflow_id,
    step_id, worker_id and epoch on every line)."""

    @property
    def limits(self) -> Limits:
        return Limits(max_payload_bytes=self.max_payload_bytes)

    @property
    def heartbeat_interval_ms(self) -> int:
        # Three heartbeats per lease: one lost or late heartbeat never costs a lease.
        return max(self.lease_ms // 3, 1)


_ENV = {
    "host": ("STEPLINE_HOST", str),
    "port": ("STEPLINE_PORT", int),
    "database_url": ("STEPLINE_DATABASE_URL", str),
    "data_dir": ("STEPLINE_DATA_DIR", Path),
    "lease_ms": ("STEPLINE_LEASE_MS", int),
    "max_payload_bytes": ("STEPLINE_MAX_PAYLOAD_BYTES", int),
    "max_recovery_attempts": ("STEPLINE_MAX_RECOVERY_ATTEMPTS", int),
    "api_key": ("STEPLINE_API_KEY", str),
    "tokens_file": ("STEPLINE_TOKENS_FILE", Path),
    "tls_cert": ("STEPLINE_TLS_CERT", Path),
    "tls_key": ("STEPLINE_TLS_KEY", Path),
    "tls_client_ca": ("STEPLINE_TLS_CLIENT_CA", Path),
    "retention_hours": ("STEPLINE_RETENTION_HOURS", float),
    "pool_size": ("STEPLINE_POOL_SIZE", int),
    "sweep_ms": ("STEPLINE_SWEEP_MS", int),
    "metrics_port": ("STEPLINE_METRICS_PORT", int),
    "log_level": ("STEPLINE_LOG_LEVEL", str),
    "log_format": ("STEPLINE_LOG_FORMAT", str),
}


def add_arguments(parser: argparse.ArgumentParser, *, database_only: bool = False) -> None:
    """Adds the settings' flags to ``parser`` (only the database ones for ``migrate``)."""
    names = ("database_url", "data_dir", "log_level", "log_format") if database_only else tuple(_ENV)
    for name in names:
        env, kind = _ENV[name]
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            type=kind,
            default=None,
            help=f"(env {env})",
        )


def load(args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Builds settings: a flag wins over its variable, which wins over the default."""
    environ = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for name, (env, kind) in _ENV.items():
        flag = getattr(args, name, None) if args is not None else None
        if flag is not None:
            values[name] = flag
        elif environ.get(env):
            try:
                values[name] = kind(environ[env])
            except ValueError as exc:
                raise SystemExit(f"{env}={environ[env]!r} is not a valid value: {exc}") from None
    settings = Settings(**values)  # type: ignore[arg-type]
    _check(settings)
    return settings


def _check(s: Settings) -> None:
    problems: Sequence[str] = [
        msg
        for ok, msg in (
            (0 <= s.port <= 65535, f"port {s.port} is out of range"),
            (
                s.metrics_port is None or 0 <= s.metrics_port <= 65535,
                f"metrics port {s.metrics_port} is out of range",
            ),
            (s.lease_ms >= 100, f"lease of {s.lease_ms} ms is too short (at least 100)"),
            (s.max_payload_bytes >= 1024, "max payload must be at least 1024 bytes"),
            (s.max_recovery_attempts >= 1, "max recovery attempts must be at least 1"),
            (s.pool_size >= 2, "pool size must be at least 2"),
            (s.retention_hours >= 0, "retention must not be negative"),
            (s.log_format in ("text", "json"), f"log format {s.log_format!r} is not text or json"),
            ((s.tls_cert is None) == (s.tls_key is None), "--tls-cert and --tls-key go together"),
            (s.tls_client_ca is None or s.tls_cert is not None, "--tls-client-ca needs --tls-cert"),
            (s.sweep_ms >= 50, f"sweep of {s.sweep_ms} ms is too short (at least 50)"),
        )
        if not ok
    ]
    if problems:
        raise SystemExit("invalid settings: " + "; ".join(problems))
