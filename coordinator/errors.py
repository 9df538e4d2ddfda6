"""The coordinator's error tree, and the neutral codes that classify its errors.

    CoordinatorError                    Code.INTERNAL
    ├── InvalidArgument                 Code.INVALID_ARGUMENT    malformed ID, payload, request
    ├── NotFound                        Code.NOT_FOUND           unknown workflow ID
    ├── AlreadyExists                   Code.ALREADY_EXISTS      workflow ID owned by another name
    ├── FailedPrecondition              Code.FAILED_PRECONDITION
    ├── Unauthenticated                 Code.UNAUTHENTICATED     missing or wrong API key
    ├── Conflict                        Code.ABORTED             a deadlock or serialization failure
    └── Unavailable                     Code.UNAVAILABLE         PostgreSQL unreachable, shutting down

The core knows nothing of gRPC: an error carries a ``Code``, and ``status.py`` maps codes
to gRPC statuses in one table at the edge. Low-level errors become these in exactly one
place each: asyncpg's in ``store/database.py``.
"""

from __future__ import annotations

import enum


class Code(enum.Enum):
    """What kind of failure an error is, whatever protocol reports it."""

    INVALID_ARGUMENT = enum.auto()
    NOT_FOUND = enum.auto()
    ALREADY_EXISTS = enum.auto()
    FAILED_PRECONDITION = enum.auto()
    UNAUTHENTICATED = enum.auto()
    PERMISSION_DENIED = enum.auto()
    ABORTED = enum.auto()
    UNAVAILABLE = enum.auto()
    INTERNAL = enum.auto()


class CoordinatorError(Exception):
    """Root of the coordinator's errors."""

    code: Code = Code.INTERNAL


class InvalidArgument(CoordinatorError):
    code = Code.INVALID_ARGUMENT


class NotFound(CoordinatorError):
    code = Code.NOT_FOUND


class AlreadyExists(CoordinatorError):
    code = Code.ALREADY_EXISTS


class FailedPrecondition(CoordinatorError):
    code = Code.FAILED_PRECONDITION


class Unauthenticated(CoordinatorError):
    code = Code.UNAUTHENTICATED


class PermissionDenied(CoordinatorError):
    code = Code.PERMISSION_DENIED


class Unavailable(CoordinatorError):
    code = Code.UNAVAILABLE


class Conflict(CoordinatorError):
    """A transaction lost a deadlock or serialization conflict; repeating it is safe."""

    code = Code.ABORTED
