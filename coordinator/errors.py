"""The coordinator's error tree. Each error knows the gRPC status it is answered with.

    CoordinatorError                    (INTERNAL)
    ├── InvalidArgument                 (INVALID_ARGUMENT)  malformed ID, payload, request
    ├── NotFound                        (NOT_FOUND)         unknown workflow ID
    ├── AlreadyExists                   (ALREADY_EXISTS)    workflow ID owned by another name
    ├── FailedPrecondition              (FAILED_PRECONDITION)
    ├── Unauthenticated                 (UNAUTHENTICATED)   missing or wrong API key
    ├── Conflict                        (ABORTED)           a deadlock or serialization failure
    └── Unavailable                     (UNAVAILABLE)       PostgreSQL unreachable, shutting down

Low-level errors become these in exactly one place each: asyncpg's in
``store/database.py``, and these become gRPC statuses in ``service.py``.
"""

from __future__ import annotations

import grpc


class CoordinatorError(Exception):
    """Root of the coordinator's errors."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidArgument(CoordinatorError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(CoordinatorError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(CoordinatorError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(CoordinatorError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unauthenticated(CoordinatorError):
    code = grpc.StatusCode.UNAUTHENTICATED


class Unavailable(CoordinatorError):
    code = grpc.StatusCode.UNAVAILABLE


class Conflict(CoordinatorError):
    """A transaction lost a deadlock or serialization conflict; repeating it is safe."""

    code = grpc.StatusCode.ABORTED
