"""The core's neutral error codes map to gRPC statuses in one complete table."""

from __future__ import annotations

import grpc

from coordinator import errors
from coordinator.status import GRPC_STATUS, wire_number


def test_every_code_has_a_grpc_status_of_the_same_name() -> None:
    assert set(GRPC_STATUS) == set(errors.Code)
    for code, status in GRPC_STATUS.items():
        assert status.name == code.name
    assert wire_number(errors.Code.NOT_FOUND) == grpc.StatusCode.NOT_FOUND.value[0] == 5


def test_every_error_class_carries_a_code() -> None:
    classes: list[type[errors.CoordinatorError]] = [
        errors.CoordinatorError,
        *errors.CoordinatorError.__subclasses__(),
    ]
    assert {c.code for c in classes} == set(errors.Code)
