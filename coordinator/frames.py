"""The worker stream's events: WorkerFrames in, CoordinatorFrames out.

Each kind of event has one converter in each direction, registered in ``_FROM_WORKER``
and ``_TO_WORKER``. A malformed event becomes a Rejected answer for that event alone;
kinds a newer SDK sends that this coordinator does not know are ignored, as the protocol
promises.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC
from typing import Any

from stepline.v1 import worker_pb2 as wpb

from coordinator import validation
from coordinator.convert import (
    PROTOCOL_VERSIONS,
    STEP_KIND_TO_PB,
    STEP_TO_PB,
    WF_TO_PB,
    duration_in,
    error_in,
    error_out,
    limits_out,
    payload_in,
    payload_out,
    start_request,
    workflow_info,
)
from coordinator.errors import Code, FailedPrecondition, InvalidArgument
from coordinator.models import (
    Abandon,
    AbandonReason,
    Assignment,
    CoordinatorEvent,
    Drain,
    ExecutionRef,
    Heartbeat,
    HeartbeatAck,
    Idle,
    Registered,
    Registration,
    Rejected,
    Release,
    Send,
    SetEvent,
    StartChild,
    StartResult,
    StepAck,
    StepDone,
    StepKind,
    StepResult,
    StepStart,
    Suspend,
    Wait,
    WorkerEvent,
    WorkflowAck,
    WorkflowResult,
)
from coordinator.status import wire_number

_ABANDON_TO_PB = {r: wpb.AbandonReason.Value("ABANDON_REASON_" + r.name) for r in AbandonReason}


def registration(frame: wpb.WorkerFrame) -> tuple[Registration, list[wpb.WorkerEvent]]:
    """The Register event that must open a stream, and the events after it in its frame."""
    if not frame.events or frame.events[0].WhichOneof("kind") != "register":
        raise InvalidArgument("the first event on a worker stream must be Register")
    r = frame.events[0].register
    if r.protocol_version not in PROTOCOL_VERSIONS:
        raise FailedPrecondition(
            f"protocol version {r.protocol_version} is not supported; this coordinator speaks "
            + ", ".join(str(v) for v in sorted(PROTOCOL_VERSIONS))
        )
    names = frozenset(validation.identifier("workflow name", n) for n in r.workflow_names)
    if not names:
        raise InvalidArgument("Register.workflow_names must not be empty")
    held = tuple(
        ExecutionRef(validation.identifier("held workflow_id", h.workflow_id), h.epoch) for h in r.held
    )
    reg = Registration(
        worker_id=validation.identifier("worker_id", r.worker_id),
        workflow_names=names,
        capacity=r.capacity or 100,
        language=r.language[:64],
        sdk_version=r.sdk_version[:64],
        protocol_version=r.protocol_version,
        held=held,
        version=validation.identifier("Register.version", r.version, optional=True),
        auto_upgrade=_auto_upgrade(r, names),
    )
    return reg, list(frame.events[1:])


def _auto_upgrade(r: wpb.Register, names: frozenset[str]) -> frozenset[str]:
    auto = frozenset(r.auto_upgrade)
    if not auto <= names:
        unknown = ", ".join(sorted(auto - names))
        raise InvalidArgument(f"Register.auto_upgrade names workflows it does not serve: {unknown}")
    return auto


def _wid(value: str) -> str:
    return validation.identifier("workflow_id", value)


def _sid(value: str) -> str:
    return validation.identifier("step_id", value)


def _name(value: str) -> str:
    return validation.identifier("step_name", value)


def _step_result(s: wpb.StepResult, max_bytes: int) -> StepResult:
    has_output = s.WhichOneof("outcome") == "output"
    return StepResult(
        _wid(s.workflow_id),
        s.epoch,
        _sid(s.step_id),
        _name(s.step_name),
        s.attempt,
        payload_in(f"output of step {s.step_id!r}", s.output, max_bytes) if has_output else None,
        None if has_output else error_in(s.error, max_bytes),
    )


def _step_start(s: wpb.StepStart, max_bytes: int) -> StepStart:
    return StepStart(_wid(s.workflow_id), s.epoch, _sid(s.step_id), _name(s.step_name), s.attempt)


def _workflow_result(w: wpb.WorkflowResult, max_bytes: int) -> WorkflowResult:
    has_output = w.WhichOneof("outcome") == "output"
    return WorkflowResult(
        _wid(w.workflow_id),
        w.epoch,
        payload_in("workflow output", w.output, max_bytes) if has_output else None,
        None if has_output else error_in(w.error, max_bytes),
    )


def _wait(w: wpb.Wait, max_bytes: int) -> Wait:
    condition = w.WhichOneof("condition")
    ev = Wait(_wid(w.workflow_id), w.epoch, _sid(w.step_id), StepKind.SLEEP)
    if condition == "sleep":
        if w.sleep.HasField("until"):
            ev.until = w.sleep.until.ToDatetime(tzinfo=UTC)
        else:
            ev.seconds = duration_in("sleep duration", w.sleep.duration)
    elif condition == "recv":
        ev.kind = StepKind.RECV
        ev.topic = validation.identifier("topic", w.recv.topic, optional=True)
        ev.timeout = duration_in("recv timeout", w.recv.timeout) if w.recv.HasField("timeout") else None
    elif condition == "get_event":
        e = w.get_event
        ev.kind = StepKind.GET_EVENT
        ev.target = _wid(e.workflow_id)
        ev.topic = validation.identifier("event key", e.key)
        ev.timeout = duration_in("get_event timeout", e.timeout) if e.HasField("timeout") else None
    elif condition == "workflow":
        ev.kind = StepKind.AWAIT_WORKFLOW
        ev.target = _wid(w.workflow.workflow_id)
        if ev.target == ev.workflow_id:
            raise InvalidArgument(f"workflow {ev.workflow_id!r} cannot wait for itself to finish")
        t = w.workflow.timeout
        ev.timeout = duration_in("workflow wait timeout", t) if w.workflow.HasField("timeout") else None
    else:
        raise InvalidArgument("Wait needs a condition (sleep, recv, get_event or workflow)")
    return ev


def _start_child(s: wpb.StartChild, max_bytes: int) -> StartChild:
    return StartChild(
        _wid(s.workflow_id),
        s.epoch,
        _sid(s.step_id),
        validation.identifier("child_workflow_id", s.child_workflow_id),
        validation.identifier("workflow_name", s.workflow_name),
        payload_in("the child's input", s.input, max_bytes),
    )


def _send(s: wpb.Send, max_bytes: int) -> Send:
    return Send(
        _wid(s.workflow_id),
        s.epoch,
        _sid(s.step_id),
        validation.identifier("destination_id", s.destination_id),
        validation.identifier("topic", s.topic, optional=True),
        payload_in("message", s.message, max_bytes),
        validation.identifier("idempotency_key", s.idempotency_key, optional=True) or None,
    )


def _set_event(s: wpb.SetEvent, max_bytes: int) -> SetEvent:
    return SetEvent(
        _wid(s.workflow_id),
        s.epoch,
        _sid(s.step_id),
        validation.identifier("event key", s.key),
        payload_in("event value", s.value, max_bytes),
    )


def _suspend(s: wpb.Suspend, max_bytes: int) -> Suspend:
    return Suspend(_wid(s.workflow_id), s.epoch, tuple(_sid(i) for i in s.waiting_on))


def _register_again(r: wpb.Register, max_bytes: int) -> WorkerEvent:
    raise InvalidArgument("Register may only be the first event of a stream")


# One converter per kind of WorkerEvent; kinds missing here (from a newer SDK) are ignored,
# as the protocol promises.
_FROM_WORKER: dict[str, Callable[[Any, int], WorkerEvent]] = {
    "step_result": _step_result,
    "step_start": _step_start,
    "workflow_result": _workflow_result,
    "start_workflow": start_request,
    "heartbeat": lambda h, _: Heartbeat(h.sequence),
    "release": lambda r, _: Release(_wid(r.workflow_id), r.epoch),
    "drain": lambda d, _: Drain(),
    "register": _register_again,
    "wait": _wait,
    "send": _send,
    "set_event": _set_event,
    "idle": lambda i, _: Idle(_wid(i.workflow_id), i.epoch),
    "suspend": _suspend,
    "start_child": _start_child,
}


def worker_events(
    events: list[wpb.WorkerEvent] | wpb.WorkerFrame, max_bytes: int
) -> tuple[list[WorkerEvent], list[Rejected]]:
    """Converts a frame's events; malformed ones become Rejected answers instead."""
    out: list[WorkerEvent] = []
    rejected: list[Rejected] = []
    for ev in events.events if isinstance(events, wpb.WorkerFrame) else events:
        kind = ev.WhichOneof("kind")
        convert = _FROM_WORKER.get(kind or "")
        if convert is None:
            continue
        body = getattr(ev, kind or "")
        try:
            out.append(convert(body, max_bytes))
        except InvalidArgument as exc:
            rejected.append(
                Rejected(
                    getattr(body, "workflow_id", ""),
                    getattr(body, "epoch", 0),
                    getattr(body, "step_id", ""),
                    Code.INVALID_ARGUMENT,
                    str(exc),
                )
            )
    return out, rejected


def _step_ack(target: wpb.CoordinatorEvent, a: StepAck) -> None:
    ack = target.step_ack
    ack.workflow_id, ack.epoch, ack.step_id = a.workflow_id, a.epoch, a.step_id


def _assignment(target: wpb.CoordinatorEvent, a: Assignment) -> None:
    out = target.assignment
    out.workflow_id, out.workflow_name, out.epoch = a.workflow_id, a.name, a.epoch
    out.input.data, out.input.encoding = a.input.data, a.input.encoding
    out.recovery_attempt, out.traceparent = a.recovery_attempt, a.traceparent
    for s in a.steps:
        out.steps.add(
            step_id=s.step_id,
            step_name=s.name,
            status=STEP_TO_PB[s.status],
            output=payload_out(s.output),
            error=error_out(s.error),
            attempts=s.attempts,
            kind=STEP_KIND_TO_PB[s.kind],
            timed_out=s.timed_out,
        )


def _workflow_ack(target: wpb.CoordinatorEvent, a: WorkflowAck) -> None:
    ack = target.workflow_ack
    ack.workflow_id, ack.epoch, ack.status = a.workflow_id, a.epoch, WF_TO_PB[a.status]


def _heartbeat_ack(target: wpb.CoordinatorEvent, a: HeartbeatAck) -> None:
    target.heartbeat_ack.sequence = a.sequence


def _start_result(target: wpb.CoordinatorEvent, ev: StartResult) -> None:
    r = target.start_result
    r.request_id = ev.request_id
    r.created = ev.created
    if ev.workflow is not None:
        r.workflow.CopyFrom(workflow_info(ev.workflow))
    else:
        assert ev.error is not None
        r.error.code, r.error.message = wire_number(ev.error.code), str(ev.error)


def _abandon(target: wpb.CoordinatorEvent, ev: Abandon) -> None:
    a = target.abandon
    a.workflow_id, a.epoch, a.reason, a.message = (
        ev.workflow_id,
        ev.epoch,
        _ABANDON_TO_PB[ev.reason],
        ev.message,
    )


def _rejected(target: wpb.CoordinatorEvent, ev: Rejected) -> None:
    r = target.rejected
    r.workflow_id, r.epoch, r.step_id = ev.workflow_id, ev.epoch, ev.step_id
    r.status.code, r.status.message = wire_number(ev.code), ev.message


def _registered(target: wpb.CoordinatorEvent, ev: Registered) -> None:
    r = target.registered
    r.session_id, r.lease_ms, r.heartbeat_interval_ms = ev.session_id, ev.lease_ms, ev.heartbeat_interval_ms
    r.protocol_version = ev.protocol_version
    r.limits.CopyFrom(limits_out(ev.limits))
    for ref in ev.reattached:
        r.reattached.add(workflow_id=ref.workflow_id, epoch=ref.epoch)


def _step_done(target: wpb.CoordinatorEvent, ev: StepDone) -> None:
    d = target.step_done
    d.workflow_id, d.epoch, d.step_id, d.timed_out = ev.workflow_id, ev.epoch, ev.step_id, ev.timed_out
    if ev.output is not None:
        d.output.data, d.output.encoding = ev.output.data, ev.output.encoding
    elif (error := error_out(ev.error)) is not None:
        d.error.CopyFrom(error)


# One converter per kind of CoordinatorEvent, filling its field of the oneof.
_TO_WORKER: dict[type[Any], Callable[[wpb.CoordinatorEvent, Any], None]] = {
    StepAck: _step_ack,
    Assignment: _assignment,
    WorkflowAck: _workflow_ack,
    HeartbeatAck: _heartbeat_ack,
    StartResult: _start_result,
    Abandon: _abandon,
    Rejected: _rejected,
    Registered: _registered,
    StepDone: _step_done,
}


def coordinator_frame(events: list[CoordinatorEvent]) -> wpb.CoordinatorFrame:
    frame = wpb.CoordinatorFrame()
    add = frame.events.add
    for ev in events:
        _TO_WORKER[type(ev)](add(), ev)
    return frame
