"""Translation between stepline.v1 messages and the coordinator's records.

Everything arriving here is validated before it becomes a record: identifiers, payload
sizes and encodings. A bad client request raises InvalidArgument; a bad event on a worker
stream becomes a Rejected answer for that event alone.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from coordinator import validation
from coordinator.errors import Code, CoordinatorError, InvalidArgument
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
MAX_PAGE_SIZE = 1000
MAX_BATCH_STARTS = 1000
MAX_AWAITED = 10_000

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
    if len(req.requests) > MAX_BATCH_STARTS:
        raise InvalidArgument(f"{len(req.requests)} starts in one call; the limit is {MAX_BATCH_STARTS}")
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
    if len(req.workflow_ids) > MAX_AWAITED:
        raise InvalidArgument(f"{len(req.workflow_ids)} workflows in one wait; the limit is {MAX_AWAITED}")
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


# --- worker stream ----------------------------------------------------------------------


def registration(frame: wpb.WorkerFrame) -> tuple[Registration, list[wpb.WorkerEvent]]:
    """The Register event that must open a stream, and the events after it in its frame."""
    if not frame.events or frame.events[0].WhichOneof("kind") != "register":
        raise InvalidArgument("the first event on a worker stream must be Register")
    r = frame.events[0].register
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


def worker_events(
    events: list[wpb.WorkerEvent] | wpb.WorkerFrame, max_bytes: int
) -> tuple[list[WorkerEvent], list[Rejected]]:
    """Converts a frame's events; malformed ones become Rejected answers instead."""
    out: list[WorkerEvent] = []
    rejected: list[Rejected] = []
    for ev in events.events if isinstance(events, wpb.WorkerFrame) else events:
        kind = ev.WhichOneof("kind")
        try:
            if kind == "step_result":
                out.append(_step_result(ev.step_result, max_bytes))
            elif kind == "step_start":
                s = ev.step_start
                out.append(
                    StepStart(_wid(s.workflow_id), s.epoch, _sid(s.step_id), _name(s.step_name), s.attempt)
                )
            elif kind == "workflow_result":
                out.append(_workflow_result(ev.workflow_result, max_bytes))
            elif kind == "start_workflow":
                w = ev.start_workflow
                req = StartRequest(
                    validation.identifier("workflow_name", w.workflow_name),
                    validation.identifier("workflow_id", w.workflow_id, optional=True),
                    payload_in("input", w.input, max_bytes),
                    w.request_id or "-",
                )
                out.append(req)
            elif kind == "heartbeat":
                out.append(Heartbeat(ev.heartbeat.sequence))
            elif kind == "release":
                out.append(Release(_wid(ev.release.workflow_id), ev.release.epoch))
            elif kind == "drain":
                out.append(Drain())
            elif kind == "register":
                raise InvalidArgument("Register may only be the first event of a stream")
            # Unknown kinds (a newer SDK) are ignored, as the protocol promises.
        except InvalidArgument as exc:
            rejected.append(_rejection(ev, kind, str(exc)))
    return out, rejected


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


def _workflow_result(w: wpb.WorkflowResult, max_bytes: int) -> WorkflowResult:
    has_output = w.WhichOneof("outcome") == "output"
    return WorkflowResult(
        _wid(w.workflow_id),
        w.epoch,
        payload_in("workflow output", w.output, max_bytes) if has_output else None,
        None if has_output else error_in(w.error, max_bytes),
    )


def _rejection(ev: wpb.WorkerEvent, kind: str | None, message: str) -> Rejected:
    body = getattr(ev, kind) if kind else None
    return Rejected(
        getattr(body, "workflow_id", ""),
        getattr(body, "epoch", 0),
        getattr(body, "step_id", ""),
        Code.INVALID_ARGUMENT,
        message,
    )


def coordinator_frame(events: list[CoordinatorEvent]) -> wpb.CoordinatorFrame:
    frame = wpb.CoordinatorFrame()
    add = frame.events.add
    for ev in events:
        kind = type(ev)
        if kind is StepAck:
            a: StepAck = ev  # type: ignore[assignment]
            ack = add().step_ack
            ack.workflow_id, ack.epoch, ack.step_id = a.workflow_id, a.epoch, a.step_id
        elif kind is Assignment:
            add().assignment.CopyFrom(_assignment(ev))  # type: ignore[arg-type]
        else:
            _other_event(add(), ev)
    return frame


def _assignment(a: Assignment) -> wpb.Assignment:
    out = wpb.Assignment(
        workflow_id=a.workflow_id,
        workflow_name=a.name,
        epoch=a.epoch,
        input=_payload_out(a.input),
        recovery_attempt=a.recovery_attempt,
    )
    for s in a.steps:
        out.steps.add(
            step_id=s.step_id,
            step_name=s.name,
            status=_STEP_TO_PB[s.status],
            output=_payload_out(s.output),
            error=_error_out(s.error),
            attempts=s.attempts,
        )
    return out


def _other_event(target: wpb.CoordinatorEvent, ev: CoordinatorEvent) -> None:
    if isinstance(ev, WorkflowAck):
        target.workflow_ack.CopyFrom(
            wpb.WorkflowAck(workflow_id=ev.workflow_id, epoch=ev.epoch, status=_WF_TO_PB[ev.status])
        )
    elif isinstance(ev, HeartbeatAck):
        target.heartbeat_ack.sequence = ev.sequence
    elif isinstance(ev, StartResult):
        r = target.start_result
        r.request_id = ev.request_id
        r.created = ev.created
        if ev.workflow is not None:
            r.workflow.CopyFrom(workflow_info(ev.workflow))
        else:
            assert ev.error is not None
            r.error.CopyFrom(pb.ErrorStatus(code=wire_number(ev.error.code), message=str(ev.error)))
    elif isinstance(ev, Abandon):
        target.abandon.CopyFrom(
            wpb.Abandon(
                workflow_id=ev.workflow_id,
                epoch=ev.epoch,
                reason=_ABANDON_TO_PB[ev.reason],
                message=ev.message,
            )
        )
    elif isinstance(ev, Rejected):
        target.rejected.CopyFrom(
            wpb.Rejected(
                workflow_id=ev.workflow_id,
                epoch=ev.epoch,
                step_id=ev.step_id,
                status=pb.ErrorStatus(code=wire_number(ev.code), message=ev.message),
            )
        )
    elif isinstance(ev, Registered):
        target.registered.CopyFrom(
            wpb.Registered(
                session_id=ev.session_id,
                lease_ms=ev.lease_ms,
                heartbeat_interval_ms=ev.heartbeat_interval_ms,
                max_payload_bytes=ev.max_payload_bytes,
                protocol_version=ev.protocol_version,
                reattached=[
                    wpb.ExecutionRef(workflow_id=r.workflow_id, epoch=r.epoch) for r in ev.reattached
                ],
            )
        )
    else:  # pragma: no cover - every CoordinatorEvent kind is handled above
        raise TypeError(f"cannot send {type(ev).__name__}")
