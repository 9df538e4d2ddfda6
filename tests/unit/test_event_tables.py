"""Every kind of stream event has exactly one handler and one converter, on both sides."""

from __future__ import annotations

import typing
from typing import Any

from coordinator import models as coordinator_models
from coordinator.config import Settings
from coordinator.engine import Engine


def oneof_fields(message: Any) -> set[str]:
    return {f.name for f in message.DESCRIPTOR.oneofs_by_name["kind"].fields}


def test_the_coordinator_handles_every_worker_event() -> None:
    engine = Engine(None, Settings())  # type: ignore[arg-type]  # constructing touches no database
    assert set(engine._handlers) == set(typing.get_args(coordinator_models.WorkerEvent))
