"""Translation between stepline.v1 messages and the SDK's records and stream events.

Each kind of stream event has one converter in each direction, registered in
``_TO_COORDINATOR`` and ``_FROM_COORDINATOR``; kinds this SDK does not know (from a newer
coordinator) are ignored, as the protocol promises.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from stepline.v1 import client_pb2 as cpb
from stepline.v1 import common_pb2 as pb
from stepline.v1 import worker_pb2 as wpb

from worker_sdk import _serde, errors
from worker_sdk._messages import (
    Abandon,
    Assignment,
    Drain,
    Heartbeat,
    HeartbeatAck,
    Idle,
    Incoming,
    Limits,
    Outgoing,
    RecordedStep,
    Register,
    Registered,
    Rejected,
    Release,
    Send,
    SetEvent,
    StartChild,
    StartResult,
    StartWorkflow,
    StepAck,
    StepDone,
    StepResult,
    StepStart,
    Suspend,
    Wait,
    WorkflowAck,
    WorkflowResult,
)
from worker_sdk._models import (
    ErrorInfo,
    Payload,
    StepInfo,
    StepKind,
    StepStatus,
    WorkerInfo,
    WorkflowCount,
    WorkflowInfo,
    WorkflowStatus,
)
from worker_sdk._version import __version__

#: The worker protocol version this SDK speaks, from the contract.
PROTOCOL_VERSION = pb.PROTOCOL_VERSION_1

_WF_TO_PB = {s: pb.WorkflowStatus.Value("WORKFLOW_STATUS_" + s.value) for s in WorkflowStatus}
_WF_FROM_PB = {v: k for k, v in _WF_TO_PB.items()}
_STEP_FROM_PB = {getattr(pb, "STEP_STATUS_" + s.value): s for s in StepStatus}
_KIND_TO_PB = {k: pb.StepKind.Value("STEP_KIND_" + k.name) for k in StepKind}
_KIND_FROM_PB = {v: k for k, v in _KIND_TO_PB.items()}
_ABANDON_REASONS = {v: k for k, v in wpb.AbandonReason.items()}


# --- records ------------------------------------------------------------------------------


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


def _error_out(target: pb.ErrorInfo, e: ErrorInfo) -> None:
    target.type, target.message, target.traceback = e.type, e.message, e.traceback
    if e.details is not None:
        target.details.data = e.details.data
        target.details.encoding = e.details.encoding


def limits_in(m: pb.Limits) -> Limits:
    return Limits(m.max_payload_bytes, m.max_message_bytes, m.max_starts_per_call, m.max_awaited_per_call)


def status_to_pb(status: WorkflowStatus) -> pb.WorkflowStatus.ValueType:
    return _WF_TO_PB[status]


_COUNT_FIELDS: dict[str, cpb.WorkflowField.ValueType] = {
    "name": cpb.WORKFLOW_FIELD_NAME,
    "version": cpb.WORKFLOW_FIELD_VERSION,
    "status": cpb.WORKFLOW_FIELD_STATUS,
}


def count_field_to_pb(field: str) -> cpb.WorkflowField.ValueType:
    if field not in _COUNT_FIELDS:
        raise ValueError(f"cannot count by {field!r}; choose from {', '.join(_COUNT_FIELDS)}")
    return _COUNT_FIELDS[field]


def workflow_count(c: cpb.WorkflowCount, by: Sequence[str]) -> WorkflowCount:
    """One group of a count; only the fields grouped ``by`` are filled in."""
    return WorkflowCount(
        count=c.count,
        name=c.workflow_name if "name" in by else None,
        version=c.version if c.HasField("version") else None,
        status=_WF_FROM_PB[c.status] if "status" in by else None,
    )


def worker_info(w: cpb.WorkerInfo) -> WorkerInfo:
    return WorkerInfo(
        worker_id=w.worker_id,
        coordinator_id=w.coordinator_id,
        local=w.local,
        language=w.language,
        sdk_version=w.sdk_version,
        version=w.version,
        capacity=w.capacity,
        workflow_names=tuple(w.workflow_names),
        in_flight=w.in_flight,
        connected_at=_time(w.connected_at, w.HasField("connected_at")),
        heartbeat_age=w.heartbeat_age.ToTimedelta().total_seconds(),
    )


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
        deadline=_time(w.deadline, w.HasField("deadline")),
        suspended=w.suspended,
        parent_workflow_id=w.parent_workflow_id or None,
        parent_step_id=w.parent_step_id or None,
        version=w.version if w.HasField("version") else None,
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
        kind=_KIND_FROM_PB.get(s.kind, StepKind.STEP),
        timed_out=s.timed_out,
        wake_at=_time(s.wake_at, s.HasField("wake_at")),
    )


# --- worker -> coordinator ----------------------------------------------------------------


def _outcome(target: Any, output: bytes | None, error: ErrorInfo | None) -> None:
    """Fills a result's ``outcome`` oneof: the JSON output, or else the error."""
    if output is not None:
        target.output.data = output
        target.output.encoding = "json"
    else:
        assert error is not None
        _error_out(target.error, error)


def _step_result(target: wpb.WorkerEvent, r: StepResult) -> None:
    out = target.step_result
    out.workflow_id, out.epoch, out.step_id, out.step_name, out.attempt = (
        r.workflow_id,
        r.epoch,
        r.step_id,
        r.step_name,
        r.attempt,
    )
    _outcome(out, r.output, r.error)


def _step_start(target: wpb.WorkerEvent, s: StepStart) -> None:
    st = target.step_start
    st.workflow_id, st.epoch, st.step_id, st.step_name, st.attempt = (
        s.workflow_id,
        s.epoch,
        s.step_id,
        s.step_name,
        s.attempt,
    )


def _workflow_result(target: wpb.WorkerEvent, r: WorkflowResult) -> None:
    w = target.workflow_result
    w.workflow_id, w.epoch = r.workflow_id, r.epoch
    _outcome(w, r.output, r.error)


def _start_workflow(target: wpb.WorkerEvent, ev: StartWorkflow) -> None:
    s = target.start_workflow
    s.request_id, s.workflow_name, s.workflow_id = ev.request_id, ev.workflow_name, ev.workflow_id
    s.input.data = ev.input
    s.input.encoding = "json"
    if ev.timeout is not None:
        s.timeout.FromTimedelta(timedelta(seconds=ev.timeout))
    if ev.deadline is not None:
        s.deadline.FromDatetime(ev.deadline)


def _wait(target: wpb.WorkerEvent, ev: Wait) -> None:
    w = target.wait
    w.workflow_id, w.epoch, w.step_id = ev.workflow_id, ev.epoch, ev.step_id
    if ev.kind is StepKind.SLEEP:
        if ev.until is not None:
            w.sleep.until.FromDatetime(ev.until)
        else:
            w.sleep.duration.FromTimedelta(timedelta(seconds=_left(ev.seconds or 0.0, ev.called)))
        return
    condition: Any
    if ev.kind is StepKind.RECV:
        condition = w.recv
        w.recv.topic = ev.topic
    elif ev.kind is StepKind.AWAIT_WORKFLOW:
        condition = w.workflow
        w.workflow.workflow_id = ev.target
    else:
        condition = w.get_event
        w.get_event.workflow_id, w.get_event.key = ev.target, ev.topic
    if ev.timeout is not None:
        condition.timeout.FromTimedelta(timedelta(seconds=_left(ev.timeout, ev.called)))
    else:
        condition.SetInParent()


def _left(seconds: float, called: float) -> float:
    """What is left of ``seconds`` counted from ``called``: a wait that waited in this
    process before it was sent (behind a busy event loop, a garbage collection, a lost
    connection) does not end that much later."""
    return max(0.0, seconds - (time.monotonic() - called))


def _start_child(target: wpb.WorkerEvent, ev: StartChild) -> None:
    s = target.start_child
    s.workflow_id, s.epoch, s.step_id = ev.workflow_id, ev.epoch, ev.step_id
    s.child_workflow_id, s.workflow_name = ev.child_id, ev.name
    s.input.data, s.input.encoding = ev.input, "json"


def _send(target: wpb.WorkerEvent, ev: Send) -> None:
    s = target.send
    s.workflow_id, s.epoch, s.step_id = ev.workflow_id, ev.epoch, ev.step_id
    s.destination_id, s.topic, s.idempotency_key = ev.destination, ev.topic, ev.idempotency_key
    s.message.data, s.message.encoding = ev.message, "json"


def _set_event(target: wpb.WorkerEvent, ev: SetEvent) -> None:
    s = target.set_event
    s.workflow_id, s.epoch, s.step_id, s.key = ev.workflow_id, ev.epoch, ev.step_id, ev.key
    s.value.data, s.value.encoding = ev.value, "json"


def _idle(target: wpb.WorkerEvent, ev: Idle) -> None:
    target.idle.workflow_id, target.idle.epoch = ev.workflow_id, ev.epoch


def _suspend(target: wpb.WorkerEvent, ev: Suspend) -> None:
    s = target.suspend
    s.workflow_id, s.epoch = ev.workflow_id, ev.epoch
    s.waiting_on.extend(ev.waiting_on)


def _register(target: wpb.WorkerEvent, ev: Register) -> None:
    r = target.register
    r.worker_id, r.capacity = ev.worker_id, ev.capacity
    r.workflow_names.extend(ev.workflow_names)
    r.language, r.sdk_version, r.protocol_version = "python", __version__, PROTOCOL_VERSION
    r.version = ev.version
    r.auto_upgrade.extend(ev.auto_upgrade)
    for workflow_id, epoch in ev.held:
        r.held.add(workflow_id=workflow_id, epoch=epoch)


def _release(target: wpb.WorkerEvent, ev: Release) -> None:
    target.release.workflow_id, target.release.epoch = ev.workflow_id, ev.epoch


_TO_COORDINATOR: dict[type[Any], Callable[[wpb.WorkerEvent, Any], None]] = {
    StepResult: _step_result,
    StepStart: _step_start,
    WorkflowResult: _workflow_result,
    StartWorkflow: _start_workflow,
    Heartbeat: lambda target, ev: setattr(target.heartbeat, "sequence", ev.sequence),
    Release: _release,
    Drain: lambda target, ev: target.drain.SetInParent(),
    Register: _register,
    Wait: _wait,
    Send: _send,
    SetEvent: _set_event,
    StartChild: _start_child,
    Idle: _idle,
    Suspend: _suspend,
}


def worker_frames(events: Sequence[Outgoing], max_bytes: int) -> list[wpb.WorkerFrame]:
    """The events as frames, each within ``max_bytes`` (the coordinator's message limit)
    unless one event alone is larger; the coordinator then refuses that frame."""
    frame = wpb.WorkerFrame()
    add = frame.events.add
    for ev in events:
        _TO_COORDINATOR[type(ev)](add(), ev)
    if len(events) <= 1 or frame.ByteSize() <= max_bytes:
        return [frame]
    half = len(events) // 2
    return worker_frames(events[:half], max_bytes) + worker_frames(events[half:], max_bytes)


# --- coordinator -> worker ----------------------------------------------------------------


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
                _KIND_FROM_PB.get(s.kind, StepKind.STEP),
                s.timed_out,
            )
        )
    return Assignment(
        a.workflow_id,
        a.workflow_name,
        a.epoch,
        _payload(a.input),
        tuple(steps),
        a.recovery_attempt,
        a.traceparent,
    )


def _start_result(r: wpb.StartWorkflowResult) -> StartResult:
    has_workflow = r.WhichOneof("outcome") == "workflow"
    return StartResult(
        r.request_id,
        workflow_info(r.workflow) if has_workflow else None,
        r.created,
        r.error.code,
        r.error.message,
    )


def _step_done(d: wpb.StepDone) -> StepDone:
    outcome = d.WhichOneof("outcome")
    return StepDone(
        d.workflow_id,
        d.epoch,
        d.step_id,
        _payload(d.output) if outcome == "output" else None,
        error_in(d.error) if outcome == "error" else None,
        d.timed_out,
    )


def _registered(g: wpb.Registered) -> Registered:
    return Registered(
        g.session_id,
        g.lease_ms,
        g.heartbeat_interval_ms,
        tuple((r.workflow_id, r.epoch) for r in g.reattached),
        limits_in(g.limits),
    )


_FROM_COORDINATOR: dict[str, Callable[[Any], Incoming]] = {
    "step_ack": lambda a: StepAck(a.workflow_id, a.epoch, a.step_id),
    "assignment": _assignment,
    "workflow_ack": lambda w: WorkflowAck(w.workflow_id, w.epoch, _WF_FROM_PB[w.status]),
    "start_result": _start_result,
    "abandon": lambda b: Abandon(
        b.workflow_id, b.epoch, _ABANDON_REASONS.get(b.reason, "UNKNOWN"), b.message
    ),
    "rejected": lambda j: Rejected(j.workflow_id, j.epoch, j.step_id, j.status.code, j.status.message),
    "registered": _registered,
    "heartbeat_ack": lambda h: HeartbeatAck(h.sequence),
    "step_done": _step_done,
}


def coordinator_events(frame: wpb.CoordinatorFrame) -> list[Incoming]:
    out: list[Incoming] = []
    for ev in frame.events:
        kind = ev.WhichOneof("kind") or ""
        convert = _FROM_COORDINATOR.get(kind)
        if convert is not None:
            out.append(convert(getattr(ev, kind)))
    return out
