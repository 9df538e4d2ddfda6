"""The one table from the core's error codes to gRPC statuses, and ending calls with them.

Only the gRPC edge (``service.py``, ``auth.py``, ``convert.py``) uses this module.
"""

from __future__ import annotations

from typing import Any

import grpc

from coordinator.errors import Code, CoordinatorError

GRPC_STATUS: dict[Code, grpc.StatusCode] = {
    Code.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    Code.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Code.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    Code.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    Code.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    Code.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    Code.ABORTED: grpc.StatusCode.ABORTED,
    Code.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    Code.INTERNAL: grpc.StatusCode.INTERNAL,
}


def wire_number(code: Code) -> int:
    """The gRPC status number, as ErrorStatus.code carries it on the worker stream."""
    number: int = GRPC_STATUS[code].value[0]
    return number


async def abort(context: grpc.aio.ServicerContext[Any, Any], error: CoordinatorError) -> None:
    """Ends the call with the error's status and message (raises, as abort does)."""
    await context.abort(GRPC_STATUS[error.code], str(error))
