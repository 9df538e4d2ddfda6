"""Everything gRPC: channels, the worker stream, unary client calls, proto conversion, and
the one place where gRPC errors become SteplineErrors."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from protos.stepline.v1 import client_pb2 as cpb
from protos.stepline.v1 import client_pb2_grpc as cpb_grpc
from protos.stepline.v1 import common_pb2 as pb
from protos.stepline.v1 import worker_pb2 as wpb
from protos.stepline.v1 import worker_pb2_grpc as wpb_grpc
from worker_sdk import _serde, errors
from worker_sdk._messages import (
    Abandon,
    Assignment,
    Drain,
    Heartbeat,
    HeartbeatAck,
    Incoming,
    Outgoing,
    RecordedStep,
    Register,
    Registered,
    Rejected,
    Release,
    StartResult,
    StartWorkflow,
    StepAck,
    StepResult,
    StepStart,
    WorkflowAck,
    WorkflowResult,
)
from worker_sdk._models import ErrorInfo, Payload, StepInfo, StepStatus, WorkflowInfo, WorkflowStatus
from worker_sdk._version import __version__

PROTOCOL_VERSION = 1
_MAX_MESSAGE = 64 << 20

_WF_FROM_PB = {getattr(pb, "WORKFLOW_STATUS_" + s.value): s for s in WorkflowStatus}
_WF_TO_PB = {v: k for k, v in _WF_FROM_PB.items()}
_STEP_FROM_PB = {getattr(pb, "STEP_STATUS_" + s.value): s for s in StepStatus}
_ABANDON_REASONS = {v: k for k, v in wpb.AbandonReason.items()}


# --- channels and errors ------------------------------------------------------------------


def api_key_or_env(api_key: str | None) -> str | None:
    return api_key if api_key is not None else os.environ.get("STEPLINE_API_KEY") or None


def metadata(api_key: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {api_key}"),) if api_key else ()


def channel(address: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(
        address,
        options=[
            ("grpc.max_receive_message_length", _MAX_MESSAGE),
            ("grpc.max_send_message_length", _MAX_MESSAGE),
            # Fast reconnects: the worker has its own backoff with jitter.
            ("grpc.initial_reconnect_backoff_ms", 50),
            ("grpc.min_reconnect_backoff_ms", 50),
            ("grpc.max_reconnect_backoff_ms", 1000),
            ("grpc.keepalive_time_ms", 10_000),
            ("grpc.keepalive_timeout_ms", 5_000),
            ("grpc.keepalive_permit_without_calls", 1),
        ],
    )


_TRANSLATION: dict[grpc.StatusCode, type[errors.SteplineError]] = {
    grpc.StatusCode.NOT_FOUND: errors.WorkflowNotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: errors.WorkflowConflictError,
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgumentError,
    grpc.StatusCode.UNAUTHENTICATED: errors.AuthenticationError,
    grpc.StatusCode.UNAVAILABLE: errors.CoordinatorUnavailableError,
}


def translate(exc: grpc.aio.AioRpcError) -> errors.SteplineError:
    """The SDK's error for a failed call."""
    kind = _TRANSLATION.get(exc.code(), errors.SteplineError)
    return kind(exc.details() or exc.code().name)


def translate_code(code: int, message: str) -> errors.SteplineError:
    for status in grpc.StatusCode:
        if status.value[0] == code:
            return _TRANSLATION.get(status, errors.SteplineError)(message)
    return errors.SteplineError(message)


# --- conversion ---------------------------------------------------------------------------


def _time(ts: Timestamp, present: bool) -> datetime | None:
    return ts.ToDatetime(tzinfo=UTC) if present else None


def _payload(p: pb.Payload) -> Payload:
    return Payload(p.data, p.encoding or "json")


def _value(p: pb.Payload, present: bool) -> Any:
    if not present:
        return None
    try:
        return _serde.decode(p.data, p.encoding or "json")
    except errors.SerializationError:
        return _payload(p)  # written by another SDK in an encoding this one cannot read


def error_in(e: pb.ErrorInfo) -> ErrorInfo:
    return ErrorInfo(e.type, e.message, e.traceback, _payload(e.details) if e.HasField("details") else None)


def _error_out(e: ErrorInfo) -> pb.ErrorInfo:
    out = pb.ErrorInfo(type=e.type, message=e.message, traceback=e.traceback)
    if e.details is not None:
        out.details.data = e.details.data
        out.details.encoding = e.details.encoding
    return out


def workflow_info(w: pb.WorkflowInfo) -> WorkflowInfo:
    return WorkflowInfo(
        workflow_id=w.workflow_id,
        workflow_name=w.workflow_name,
        status=_WF_FROM_PB[w.status],
        input=_value(w.input, w.HasField("input")),
        output=_value(w.output, w.HasField("output")),
        error=error_in(w.error) if w.HasField("error") else None,
        owner_worker_id=w.owner_worker_id or None,
        epoch=w.epoch,
        recovery_attempts=w.recovery_attempts,
        created_at=_time(w.created_at, w.HasField("created_at")),
        updated_at=_time(w.updated_at, w.HasField("updated_at")),
        started_at=_time(w.started_at, w.HasField("started_at")),
        completed_at=_time(w.completed_at, w.HasField("completed_at")),
    )


def step_info(s: pb.StepInfo) -> StepInfo:
    return StepInfo(
        step_id=s.step_id,
        step_name=s.step_name,
        status=_STEP_FROM_PB[s.status],
        output=_value(s.output, s.HasField("output")),
        error=error_in(s.error) if s.HasField("error") else None,
        attempts=s.attempts,
        worker_id=s.worker_id,
        epoch=s.epoch,
        started_at=_time(s.started_at, s.HasField("started_at")),
        completed_at=_time(s.completed_at, s.HasField("completed_at")),
    )


def worker_frame(events: Sequence[Outgoing]) -> wpb.WorkerFrame:
    frame = wpb.WorkerFrame()
    add = frame.events.add
    for ev in events:
        target = add()
        kind = type(ev)
        if kind is StepResult:
            r: StepResult = ev  # type: ignore[assignment]
            out = target.step_result
            out.workflow_id, out.epoch, out.step_id, out.step_name, out.attempt = (
                r.workflow_id,
                r.epoch,
                r.step_id,
                r.step_name,
                r.attempt,
            )
            if r.output is not None:
                out.output.data = r.output
                out.output.encoding = "json"
            else:
                assert r.error is not None
                out.error.CopyFrom(_error_out(r.error))
        elif kind is StepStart:
            s: StepStart = ev  # type: ignore[assignment]
            st = target.step_start
            st.workflow_id, st.epoch, st.step_id, st.step_name, st.attempt = (
                s.workflow_id,
                s.epoch,
                s.step_id,
                s.step_name,
                s.attempt,
            )
        else:
            _other_event(target, ev)
    return frame


def _other_event(target: wpb.WorkerEvent, ev: Outgoing) -> None:
    if isinstance(ev, WorkflowResult):
        w = target.workflow_result
        w.workflow_id, w.epoch = ev.workflow_id, ev.epoch
        if ev.output is not None:
            w.output.data = ev.output
            w.output.encoding = "json"
        else:
            assert ev.error is not None
            w.error.CopyFrom(_error_out(ev.error))
    elif isinstance(ev, Heartbeat):
        target.heartbeat.sequence = ev.sequence
    elif isinstance(ev, StartWorkflow):
        s = target.start_workflow
        s.request_id, s.workflow_name, s.workflow_id = ev.request_id, ev.workflow_name, ev.workflow_id
        s.input.data = ev.input
        s.input.encoding = "json"
    elif isinstance(ev, Release):
        target.release.workflow_id, target.release.epoch = ev.workflow_id, ev.epoch
    elif isinstance(ev, Drain):
        target.drain.SetInParent()
    elif isinstance(ev, Register):
        r = target.register
        r.worker_id, r.capacity = ev.worker_id, ev.capacity
        r.workflow_names.extend(ev.workflow_names)
        r.language, r.sdk_version, r.protocol_version = "python", __version__, PROTOCOL_VERSION
        for workflow_id, epoch in ev.held:
            r.held.add(workflow_id=workflow_id, epoch=epoch)
    else:  # pragma: no cover
        raise TypeError(f"cannot send {type(ev).__name__}")


def coordinator_events(frame: wpb.CoordinatorFrame) -> list[Incoming]:
    out: list[Incoming] = []
    for ev in frame.events:
        kind = ev.WhichOneof("kind")
        if kind == "step_ack":
            a = ev.step_ack
            out.append(StepAck(a.workflow_id, a.epoch, a.step_id))
        elif kind == "assignment":
            out.append(_assignment(ev.assignment))
        elif kind == "workflow_ack":
            w = ev.workflow_ack
            out.append(WorkflowAck(w.workflow_id, w.epoch, _WF_FROM_PB[w.status]))
        elif kind == "start_result":
            r = ev.start_result
            has_workflow = r.WhichOneof("outcome") == "workflow"
            out.append(
                StartResult(
                    r.request_id,
                    workflow_info(r.workflow) if has_workflow else None,
                    r.created,
                    r.error.code,
                    r.error.message,
                )
            )
        elif kind == "abandon":
            b = ev.abandon
            out.append(Abandon(b.workflow_id, b.epoch, _ABANDON_REASONS.get(b.reason, "UNKNOWN"), b.message))
        elif kind == "rejected":
            j = ev.rejected
            out.append(Rejected(j.workflow_id, j.epoch, j.step_id, j.status.code, j.status.message))
        elif kind == "registered":
            g = ev.registered
            out.append(
                Registered(
                    g.session_id,
                    g.lease_ms,
                    g.heartbeat_interval_ms,
                    g.max_payload_bytes,
                    tuple((r.workflow_id, r.epoch) for r in g.reattached),
                )
            )
        elif kind == "heartbeat_ack":
            out.append(HeartbeatAck(ev.heartbeat_ack.sequence))
        # Unknown kinds (a newer coordinator) are ignored, as the protocol promises.
    return out


def _assignment(a: wpb.Assignment) -> Assignment:
    steps = []
    for s in a.steps:
        outcome = s.WhichOneof("outcome")
        steps.append(
            RecordedStep(
                s.step_id,
                s.step_name,
                _STEP_FROM_PB[s.status],
                _payload(s.output) if outcome == "output" else None,
                error_in(s.error) if outcome == "error" else None,
                s.attempts,
            )
        )
    return Assignment(
        a.workflow_id, a.workflow_name, a.epoch, _payload(a.input), tuple(steps), a.recovery_attempt
    )


# --- calls --------------------------------------------------------------------------------


class WorkerStream:
    """One Connect call: frames of events out and in."""

    def __init__(self, ch: grpc.aio.Channel, api_key: str | None) -> None:
        stub = wpb_grpc.WorkerServiceStub(ch)
        self._call = stub.Connect(metadata=metadata(api_key))

    async def send(self, events: Sequence[Outgoing]) -> None:
        await self._call.write(worker_frame(events))

    async def receive(self) -> list[Incoming] | None:
        """The next frame's events; None when the coordinator ended the stream cleanly."""
        frame = await self._call.read()
        if frame is grpc.aio.EOF:
            return None
        return coordinator_events(frame)  # type: ignore[arg-type]

    def cancel(self) -> None:
        self._call.cancel()


class ClientCalls:
    """The unary calls of WorkflowService, on records."""

    def __init__(self, ch: grpc.aio.Channel, api_key: str | None) -> None:
        self._stub = cpb_grpc.WorkflowServiceStub(ch)
        self._metadata = metadata(api_key)

    async def start_workflow(self, name: str, workflow_id: str, data: bytes) -> tuple[WorkflowInfo, bool]:
        request = cpb.StartWorkflowRequest(
            workflow_name=name, workflow_id=workflow_id, input=pb.Payload(data=data, encoding="json")
        )
        try:
            r = await self._stub.StartWorkflow(request, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            raise translate(exc) from None
        return workflow_info(r.workflow), r.created

    async def start_workflows(
        self, starts: Sequence[tuple[str, str, bytes]]
    ) -> list[tuple[WorkflowInfo, bool] | errors.SteplineError]:
        """Many starts in one call: (name, workflow_id, input) each; an outcome for each."""
        request = cpb.StartWorkflowsRequest(
            requests=[
                cpb.StartWorkflowRequest(
                    workflow_name=name, workflow_id=workflow_id, input=pb.Payload(data=data, encoding="json")
                )
                for name, workflow_id, data in starts
            ]
        )
        try:
            r = await self._stub.StartWorkflows(request, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            raise translate(exc) from None
        out: list[tuple[WorkflowInfo, bool] | errors.SteplineError] = []
        for o in r.outcomes:
            if o.WhichOneof("outcome") == "started":
                out.append((workflow_info(o.started.workflow), o.started.created))
            else:
                out.append(translate_code(o.error.code, o.error.message))
        return out

    async def await_workflows(
        self, workflow_ids: Sequence[str], timeout: float
    ) -> tuple[list[WorkflowInfo], list[str]]:
        """Waits for the first of the workflows to be final; returns the final ones and unknown IDs."""
        request = cpb.AwaitWorkflowsRequest(workflow_ids=list(workflow_ids), timeout_ms=int(timeout * 1000))
        try:
            r = await self._stub.AwaitWorkflows(request, metadata=self._metadata, timeout=timeout + 10)
        except grpc.aio.AioRpcError as exc:
            raise translate(exc) from None
        return [workflow_info(w) for w in r.done], list(r.not_found)

    async def get_workflow(self, workflow_id: str) -> WorkflowInfo:
        try:
            r = await self._stub.GetWorkflow(
                cpb.GetWorkflowRequest(workflow_id=workflow_id), metadata=self._metadata
            )
        except grpc.aio.AioRpcError as exc:
            raise translate(exc) from None
        return workflow_info(r.workflow)

    async def await_workflow(self, workflow_id: str, timeout: float) -> tuple[WorkflowInfo, bool]:
        request = cpb.AwaitWorkflowRequest(workflow_id=workflow_id, timeout_ms=int(timeout * 1000))
        try:
            r = await self._stub.AwaitWorkflow(request, metadata=self._metadata, timeout=timeout + 10)
        except grpc.aio.AioRpcError as exc:
            raise translate(exc) from None
        return workflow_info(r.workflow), r.done

    async def list_workflows(
        self,
        *,
        name: str | None,
        statuses: Sequence[WorkflowStatus],
        created_after: datetime | None,
        created_before: datetime | None,
        page_size: int,
        page_token: str,
        descending: bool,
        include_payloads: bool,
    ) -> tuple[list[WorkflowInfo], str]:
        request = cpb.ListWorkflowsRequest(
            workflow_name=name or "",
            statuses=[_WF_TO_PB[s] for s in statuses],
            page_size=page_size,
            page_token=page_token,
            descending=descending,
            include_payloads=include_payloads,
        )
        if created_after is not None:
            request.created_after.FromDatetime(created_after)
        if created_before is not None:
            request.created_before.FromDatetime(created_before)
        try:
            r = await self._stub.ListWorkflows(request, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            raise translate(exc) from None
        return [workflow_info(w) for w in r.workflows], r.next_page_token

    async def list_steps(self, workflow_id: str) -> list[StepInfo]:
        try:
            r = await self._stub.ListSteps(
                cpb.ListStepsRequest(workflow_id=workflow_id), metadata=self._metadata
            )
        except grpc.aio.AioRpcError as exc:
            raise translate(exc) from None
        return [step_info(s) for s in r.steps]
