"""A worker that speaks stepline.v1 by hand, through the generated stubs only.

Tests use it to send exactly the events they need (stale epochs, malformed payloads,
silence) and to read exactly what the coordinator answers. It knows nothing of the SDK;
it is also the seed of the language-neutral conformance runner.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
from stepline.v1 import common_pb2 as pb
from stepline.v1 import worker_pb2 as wpb
from stepline.v1 import worker_pb2_grpc as wpb_grpc


def register_frame(
    worker_id: str = "raw",
    names: Sequence[str] = ("wf",),
    held: Sequence[tuple[str, int]] = (),
    **fields: Any,
) -> wpb.WorkerFrame:
    """A frame holding only Register; ``fields`` override any of its fields."""
    values: dict[str, Any] = {
        "worker_id": worker_id,
        "workflow_names": list(names),
        "protocol_version": pb.PROTOCOL_VERSION_1,
        "held": [wpb.ExecutionRef(workflow_id=w, epoch=e) for w, e in held],
    }
    values.update(fields)
    return wpb.WorkerFrame(events=[wpb.WorkerEvent(register=wpb.Register(**values))])


def step_result(
    workflow_id: str, step_id: str = "1", data: bytes = b'"ok"', *, epoch: int = 1, name: str = "s"
) -> wpb.WorkerEvent:
    """A successful StepResult (attempt 1) with ``data`` as its JSON output."""
    result = wpb.StepResult(
        workflow_id=workflow_id, epoch=epoch, step_id=step_id, step_name=name, attempt=1,
        output=pb.Payload(data=data, encoding="json"),
    )  # fmt: skip
    return wpb.WorkerEvent(step_result=result)


def step_error(workflow_id: str, step_id: str, message: str, *, epoch: int = 1) -> wpb.WorkerEvent:
    """A StepResult that records a ValueError with ``message``."""
    error = pb.ErrorInfo(type="builtins.ValueError", message=message)
    result = wpb.StepResult(
        workflow_id=workflow_id, epoch=epoch, step_id=step_id, step_name="s", attempt=1, error=error
    )
    return wpb.WorkerEvent(step_result=result)


def workflow_output(workflow_id: str, data: bytes, *, epoch: int = 1) -> wpb.WorkerEvent:
    result = wpb.WorkflowResult(workflow_id=workflow_id, epoch=epoch, output=pb.Payload(data=data))
    return wpb.WorkerEvent(workflow_result=result)


def heartbeat(sequence: int) -> wpb.WorkerEvent:
    return wpb.WorkerEvent(heartbeat=wpb.Heartbeat(sequence=sequence))


class RawWorker:
    """One Connect stream: frames written as given, events read one at a time."""

    def __init__(
        self, channel: grpc.aio.Channel, worker_id: str = "raw", names: Sequence[str] = ("wf",)
    ) -> None:
        self.call: Any = wpb_grpc.WorkerServiceStub(channel).Connect()
        self.worker_id = worker_id
        self.names = list(names)
        self._pending: list[wpb.CoordinatorEvent] = []

    async def register(self, held: Sequence[tuple[str, int]] = ()) -> wpb.Registered:
        """Registers (with ``held`` executions) and returns the Registered answer."""
        await self.call.write(register_frame(self.worker_id, self.names, held))
        return (await self.next("registered")).registered

    async def send(self, *events: wpb.WorkerEvent) -> None:
        """Sends the events in one frame (so the coordinator takes them together)."""
        await self.call.write(wpb.WorkerFrame(events=list(events)))

    async def next_any(self) -> wpb.CoordinatorEvent:
        """The next event the coordinator sent, whatever its kind."""
        while not self._pending:
            frame = await self.call.read()
            assert isinstance(frame, wpb.CoordinatorFrame), f"the stream ended: {frame}"
            self._pending.extend(frame.events)
        return self._pending.pop(0)

    async def next(self, kind: str) -> wpb.CoordinatorEvent:
        """The next event, which must be of ``kind``."""
        event = await self.next_any()
        assert event.WhichOneof("kind") == kind, f"expected {kind}, got {event}"
        return event

    async def next_of(self, kind: str) -> wpb.CoordinatorEvent:
        """The next event of ``kind``, skipping events of other kinds."""
        while True:
            event = await self.next_any()
            if event.WhichOneof("kind") == kind:
                return event

    def close(self) -> None:
        """Drops the stream, as a dying worker would."""
        self.call.cancel()
