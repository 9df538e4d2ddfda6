"""Exits 0 when the coordinator's gRPC health service answers SERVING, else 1.

Usage: ``python deploy/healthcheck.py [ADDRESS]``; the address defaults to
``127.0.0.1:$STEPLINE_PORT`` (7420). The health service needs no API key. It reports
NOT_SERVING while PostgreSQL is unreachable, so this fails then too.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

TIMEOUT_SECONDS = 3.0


def check(address: str, timeout: float = TIMEOUT_SECONDS) -> str:
    """The serving status of ``address``'s whole server, or the gRPC error code's name."""
    with grpc.insecure_channel(address) as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)  # its typing stubs omit the methods
        try:
            reply: health_pb2.HealthCheckResponse = stub.Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout
            )
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            return code.name if code is not None else "ERROR"
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def main(argv: Sequence[str]) -> int:
    address = argv[0] if argv else f"127.0.0.1:{os.environ.get('STEPLINE_PORT') or 7420}"
    status = check(address)
    print(f"{address}: {status}", file=sys.stdout if status == "SERVING" else sys.stderr)
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
