"""Translation between stepline.v1 messages and the coordinator's records.

Everything arriving here is validated before it becomes a record: identifiers, payload
sizes and encodings. A bad client request raises InvalidArgument; a bad event on a worker
stream becomes a Rejected answer for that event alone. Each kind of stream event has one
converter in each direction, registered in ``_FROM_WORKER`` and ``_TO_WORKER``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from coordinator import validation
from coordinator.errors import Code, CoordinatorError, FailedPrecondition, InvalidArgument
from coordinator.limits import MAX_AWAITED_PER_CALL, MAX_PAGE_SIZE, MAX_STARTS_PER_CALL, Limits
from coordinator.models import (
    Abandon,
    AbandonReason,
    Assignment,
    CoordinatorEvent,
    Drain,
    ErrorInfo,
    ExecutionRef,
    Heartbeat,
    HeartbeatAck,
    Payload,
    Registered,
    Registration,
    Rejected,
    Release,
    StartRequest,
    StartResult,
    StepAck,
    StepRecord,
    StepResult,
    StepStart,
    StepStatus,
    WorkerEvent,
    WorkflowAck,
    WorkflowFilter,
    WorkflowRecord,
    WorkflowResult,
    WorkflowStatus,
)
from coordinator.status import wire_number
from protos.stepline.v1 import client_pb2 as cpb
from protos.stepline.v1 import common_pb2 as pb
from protos.stepline.v1 import worker_pb2 as wpb

_WF_TO_PB = {s: getattr(pb, "WORKFLOW_STATUS_" + s.value) for s in WorkflowStatus}
_WF_FROM_PB = {v: k for k, v in _WF_TO_PB.items()}
_STEP_TO_PB = {s: getattr(pb, "STEP_STATUS_" + s.value) for s in StepStatus}
_ABANDON_TO_PB = {r: wpb.AbandonReason.Value("ABANDON_REASON_" + r.name) for r in AbandonReason}
# The worker protocol versions this coordinator speaks: those the contract defines.
PROTOCOL_VERSIONS = frozenset(v for v in pb.ProtocolVersion.values() if v)

# --- shared -----------------------------------------------------------------------------


def _ts(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    # Timestamp.FromDatetime is pure Python and slow; this is the same for aware datetimes.
    return Timestamp(seconds=int(value.timestamp()), nanos=value.microsecond * 1000)


def payload_in(what: str, p: pb.Payload, max_bytes: int) -> Payload:
    if not p.data and not p.encoding:
        return Payload(b"null", "json")  # an absent payload is JSON null
    return validation.payload(what, p.data, p.encoding, max_bytes)


def _payload_out(p: Payload | None) -> pb.Payload | None:
    return None if p is None else pb.Payload(data=p.data, encoding=p.encoding)


def error_in(e: pb.ErrorInfo, max_bytes: int) -> ErrorInfo:
    if not e.type:
        raise InvalidArgument("error.type must not be empty")
    details = payload_in("error details", e.details, max_bytes) if e.HasField("details") else None
    for text, what in ((e.message, "message"), (e.traceback, "traceback")):
        if len(text.encode()) > max_bytes:
            raise InvalidArgument(f"error {what} is longer than {max_bytes} bytes")
    return ErrorInfo(e.type, e.message, e.traceback, details)


def _error_out(e: ErrorInfo | None) -> pb.ErrorInfo | None:
    if e is None:
        return None
    return pb.ErrorInfo(
        type=e.type, message=e.message, traceback=e.traceback, details=_payload_out(e.details)
    )


def workflow_info(r: WorkflowRecord) -> pb.WorkflowInfo:
    return pb.WorkflowInfo(
        workflow_id=r.workflow_id,
        workflow_name=r.name,
        status=_WF_TO_PB[r.status],
        input=_payload_out(r.input),
        output=_payload_out(r.output),
        error=_error_out(r.error),
        owner_worker_id=r.owner_id or "",
        epoch=r.epoch,
        recovery_attempts=r.recovery_attempts,
        created_at=_ts(r.created_at),
        updated_at=_ts(r.updated_at),
        started_at=_ts(r.started_at),
        completed_at=_ts(r.completed_at),
    )


def step_info(s: StepRecord) -> pb.StepInfo:
    return pb.StepInfo(
        step_id=s.step_id,
        step_name=s.name,
        status=_STEP_TO_PB[s.status],
        output=_payload_out(s.output),
        error=_error_out(s.error),
        attempts=s.attempts,
        worker_id=s.worker_id,
        epoch=s.epoch,
        started_at=_ts(s.started_at),
        completed_at=_ts(s.completed_at),
    )


# --- client requests --------------------------------------------------------------------


def start_request(req: cpb.StartWorkflowRequest, max_bytes: int) -> StartRequest:
    return StartRequest(
        name=validation.identifier("workflow_name", req.workflow_name),
        workflow_id=validation.identifier("workflow_id", req.workflow_id, optional=True),
        input=payload_in("input", req.input, max_bytes),
    )


def start_requests(req: cpb.StartWorkflowsRequest, max_bytes: int) -> list[StartRequest | InvalidArgument]:
    """The starts of a batch; a malformed one becomes its error, the others go on."""
    if len(req.requests) > MAX_STARTS_PER_CALL:
        raise InvalidArgument(f"{len(req.requests)} starts in one call; the limit is {MAX_STARTS_PER_CALL}")
    out: list[StartRequest | InvalidArgument] = []
    for r in req.requests:
        try:
            out.append(start_request(r, max_bytes))
        except InvalidArgument as exc:
            out.append(exc)
    return out


def start_outcome(outcome: tuple[WorkflowRecord, bool] | BaseException) -> cpb.StartWorkflowOutcome:
    if isinstance(outcome, CoordinatorError):
        return cpb.StartWorkflowOutcome(
            error=pb.ErrorStatus(code=wire_number(outcome.code), message=str(outcome))
        )
    if isinstance(outcome, BaseException):
        raise outcome
    record, created = outcome
    return cpb.StartWorkflowOutcome(
        started=cpb.StartWorkflowResponse(workflow=workflow_info(record), created=created)
    )


def awaited_ids(req: cpb.AwaitWorkflowsRequest) -> list[str]:
    if len(req.workflow_ids) > MAX_AWAITED_PER_CALL:
        raise InvalidArgument(
            f"{len(req.workflow_ids)} workflows in one wait; the limit is {MAX_AWAITED_PER_CALL}"
        )
    return [validation.identifier("workflow_id", i) for i in req.workflow_ids]


def workflow_filter(req: cpb.ListWorkflowsRequest) -> WorkflowFilter:
    if req.page_size > MAX_PAGE_SIZE:
        raise InvalidArgument(f"page_size {req.page_size} is over the limit of {MAX_PAGE_SIZE}")
    statuses = []
    for s in req.statuses:
        if s not in _WF_FROM_PB:
            raise InvalidArgument(f"unknown workflow status {s}")
        statuses.append(_WF_FROM_PB[s])
    return WorkflowFilter(
        name=validation.identifier("workflow_name", req.workflow_name, optional=True) or None,
        statuses=tuple(statuses),
        created_after=req.created_after.ToDatetime(tzinfo=UTC) if req.HasField("created_after") else None,
        created_before=req.created_before.ToDatetime(tzinfo=UTC) if req.HasField("created_before") else None,
        after_seq=decode_page_token(req.page_token),
        limit=req.page_size or 100,
        descending=req.descending,
        include_payloads=req.include_payloads,
    )


def encode_page_token(seq: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).decode()


def decode_page_token(token: str) -> int | None:
    if not token:
        return None
    try:
        kind, _, value = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        if kind == "seq":
            return int(value)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        pass
    raise InvalidArgument(f"page_token {token!r} is not one this service issued")


def limits_out(limits: Limits) -> pb.Limits:
    return pb.Limits(
        max_payload_bytes=limits.max_payload_bytes,
        max_message_bytes=limits.max_message_bytes,
        max_starts_per_call=limits.max_starts_per_call,
        max_awaited_per_call=limits.max_awaited_per_call,
        max_page_size=limits.max_page_size,
        max_identifier_length=limits.max_identifier_length,
    )


# --- worker stream ----------------------------------------------------------------------


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
    )
    return reg, list(frame.events[1:])


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


def _start_workflow(w: wpb.StartWorkflow, max_bytes: int) -> StartRequest:
    return StartRequest(
        validation.identifier("workflow_name", w.workflow_name),
        validation.identifier("workflow_id", w.workflow_id, optional=True),
        payload_in("input", w.input, max_bytes),
        w.request_id or "-",
    )


def _register_again(r: wpb.Register, max_bytes: int) -> WorkerEvent:
    raise InvalidArgument("Register may only be the first event of a stream")


# One converter per kind of WorkerEvent; kinds missing here (from a newer SDK) are ignored,
# as the protocol promises.
_FROM_WORKER: dict[str, Callable[[Any, int], WorkerEvent]] = {
    "step_result": _step_result,
    "step_start": _step_start,
    "workflow_result": _workflow_result,
    "start_workflow": _start_workflow,
    "heartbeat": lambda h, _: Heartbeat(h.sequence),
    "release": lambda r, _: Release(_wid(r.workflow_id), r.epoch),
    "drain": lambda d, _: Drain(),
    "register": _register_again,
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
    out.recovery_attempt = a.recovery_attempt
    for s in a.steps:
        out.steps.add(
            step_id=s.step_id,
            step_name=s.name,
            status=_STEP_TO_PB[s.status],
            output=_payload_out(s.output),
            error=_error_out(s.error),
            attempts=s.attempts,
        )


def _workflow_ack(target: wpb.CoordinatorEvent, a: WorkflowAck) -> None:
    ack = target.workflow_ack
    ack.workflow_id, ack.epoch, ack.status = a.workflow_id, a.epoch, _WF_TO_PB[a.status]


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
}


def coordinator_frame(events: list[CoordinatorEvent]) -> wpb.CoordinatorFrame:
    frame = wpb.CoordinatorFrame()
    add = frame.events.add
    for ev in events:
        _TO_WORKER[type(ev)](add(), ev)
    return frame
