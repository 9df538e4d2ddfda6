"""Every kind of stream event has exactly one handler and one converter, on both sides."""

from __future__ import annotations

import typing
from typing import Any

from stepline.v1 import worker_pb2 as wpb

from coordinator import frames
from coordinator import models as coordinator_models
from coordinator.config import Settings
from coordinator.engine import Engine
from worker_sdk import _convert, _messages
from worker_sdk._dispatch import Dispatch
from worker_sdk._messages import StepResult


def oneof_fields(message: Any) -> set[str]:
    return {f.name for f in message.DESCRIPTOR.oneofs_by_name["kind"].fields}


def test_the_coordinator_converts_and_handles_every_worker_event() -> None:
    assert set(frames._FROM_WORKER) == oneof_fields(wpb.WorkerEvent)
    engine = Engine(None, Settings())  # type: ignore[arg-type]  # constructing touches no database
    assert set(engine._handlers) == set(typing.get_args(coordinator_models.WorkerEvent))


def test_the_coordinator_can_send_every_coordinator_event() -> None:
    assert set(frames._TO_WORKER) == set(typing.get_args(coordinator_models.CoordinatorEvent))
    assert len(frames._TO_WORKER) == len(oneof_fields(wpb.CoordinatorEvent))


def test_the_sdk_converts_and_handles_every_coordinator_event() -> None:
    assert set(_convert._FROM_COORDINATOR) == oneof_fields(wpb.CoordinatorEvent)
    assert set(_convert._TO_COORDINATOR) == set(typing.get_args(_messages.Outgoing))
    assert len(_convert._TO_COORDINATOR) == len(oneof_fields(wpb.WorkerEvent))
    dispatch = Dispatch(None, {}, 1)  # type: ignore[arg-type]
    assert set(dispatch._handlers) == set(typing.get_args(_messages.Incoming))


def test_frames_are_split_to_stay_within_the_coordinator_message_limit() -> None:
    events = [StepResult("w", 1, str(i), "s", 1, b'"' + b"x" * 1000 + b'"', None) for i in range(10)]
    frames = _convert.worker_frames(events, 3500)
    assert len(frames) > 1
    assert all(f.ByteSize() <= 3500 for f in frames)
    assert [e.step_result.step_id for f in frames for e in f.events] == [str(i) for i in range(10)]
    assert len(_convert.worker_frames(events, 1 << 20)) == 1


def test_the_coordinator_acts_on_every_kind_of_hint() -> None:
    from coordinator import hints

    engine = Engine(None, Settings())  # type: ignore[arg-type]
    kinds = {hints.WAKE, hints.READY, hints.EVENT, hints.DONE, hints.INTEREST, hints.CANCELLED}
    assert set(engine.hints._handlers) == kinds
