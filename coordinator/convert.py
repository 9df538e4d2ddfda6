"""Translation between stepline.v1 messages and the coordinator's records.

Everything arriving here is validated before it becomes a record: identifiers, payload
sizes and encodings; a bad client request raises InvalidArgument. The worker stream's
events are ``frames.py``'s.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime, timedelta

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from stepline.v1 import client_pb2 as cpb
from stepline.v1 import common_pb2 as pb
from stepline.v1 import worker_pb2 as wpb

from coordinator import validation
from coordinator.errors import CoordinatorError, InvalidArgument
from coordinator.limits import MAX_AWAITED_PER_CALL, MAX_PAGE_SIZE, MAX_STARTS_PER_CALL, Limits
from coordinator.models import (
    ErrorInfo,
    Payload,
    Send,
    StartRequest,
    StepKind,
    StepRecord,
    StepStatus,
    WorkflowCount,
    WorkflowFilter,
    WorkflowRecord,
    WorkflowStatus,
)
from coordinator.status import wire_number
from coordinator.store.leases import WorkerRow

WF_TO_PB = {s: getattr(pb, "WORKFLOW_STATUS_" + s.value) for s in WorkflowStatus}
_WF_FROM_PB = {v: k for k, v in WF_TO_PB.items()}
STEP_TO_PB = {s: getattr(pb, "STEP_STATUS_" + s.value) for s in StepStatus}
STEP_KIND_TO_PB = {k: pb.StepKind.Value("STEP_KIND_" + k.name) for k in StepKind}
# The worker protocol versions this coordinator speaks: those the contract defines.
PROTOCOL_VERSIONS = frozenset(v for v in pb.ProtocolVersion.values() if v)

# --- shared -----------------------------------------------------------------------------


def ts(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    # Timestamp.FromDatetime is pure Python and slow; this is the same for aware datetimes.
    return Timestamp(seconds=int(value.timestamp()), nanos=value.microsecond * 1000)


def payload_in(what: str, p: pb.Payload, max_bytes: int) -> Payload:
    if not p.data and not p.encoding:
        return Payload(b"null", "json")  # an absent payload is JSON null
    return validation.payload(what, p.data, p.encoding, max_bytes)


def payload_out(p: Payload | None) -> pb.Payload | None:
    return None if p is None else pb.Payload(data=p.data, encoding=p.encoding)


def error_in(e: pb.ErrorInfo, max_bytes: int) -> ErrorInfo:
    if not e.type:
        raise InvalidArgument("error.type must not be empty")
    details = payload_in("error details", e.details, max_bytes) if e.HasField("details") else None
    for text, what in ((e.message, "message"), (e.traceback, "traceback")):
        if len(text.encode()) > max_bytes:
            raise InvalidArgument(f"error {what} is longer than {max_bytes} bytes")
    return ErrorInfo(e.type, e.message, e.traceback, details)


def error_out(e: ErrorInfo | None) -> pb.ErrorInfo | None:
    if e is None:
        return None
    return pb.ErrorInfo(type=e.type, message=e.message, traceback=e.traceback, details=payload_out(e.details))


def workflow_info(r: WorkflowRecord) -> pb.WorkflowInfo:
    return pb.WorkflowInfo(
        workflow_id=r.workflow_id,
        workflow_name=r.name,
        status=WF_TO_PB[r.status],
        input=payload_out(r.input),
        output=payload_out(r.output),
        error=error_out(r.error),
        owner_worker_id=r.owner_id or "",
        epoch=r.epoch,
        recovery_attempts=r.recovery_attempts,
        created_at=ts(r.created_at),
        updated_at=ts(r.updated_at),
        started_at=ts(r.started_at),
        completed_at=ts(r.completed_at),
        deadline=ts(r.deadline_at),
        suspended=r.suspended,
        parent_workflow_id=r.parent_id or "",
        parent_step_id=r.parent_step_id or "",
        version=r.version,
    )


def step_info(s: StepRecord) -> pb.StepInfo:
    return pb.StepInfo(
        step_id=s.step_id,
        step_name=s.name,
        status=STEP_TO_PB[s.status],
        output=payload_out(s.output),
        error=error_out(s.error),
        attempts=s.attempts,
        worker_id=s.worker_id,
        epoch=s.epoch,
        started_at=ts(s.started_at),
        completed_at=ts(s.completed_at),
        kind=STEP_KIND_TO_PB[s.kind],
        timed_out=s.timed_out,
        wake_at=ts(s.wake_at),
    )


# --- client requests --------------------------------------------------------------------


def start_request(req: cpb.StartWorkflowRequest | wpb.StartWorkflow, max_bytes: int) -> StartRequest:
    """A start from a client, or (with its request_id) from a worker."""
    return StartRequest(
        name=validation.identifier("workflow_name", req.workflow_name),
        workflow_id=validation.identifier("workflow_id", req.workflow_id, optional=True),
        input=payload_in("input", req.input, max_bytes),
        request_id=(req.request_id or "-") if isinstance(req, wpb.StartWorkflow) else "",
        timeout=duration_in("timeout", req.timeout) if req.HasField("timeout") else None,
        deadline=req.deadline.ToDatetime(tzinfo=UTC) if req.HasField("deadline") else None,
        traceparent=_traceparent(req.traceparent) if isinstance(req, cpb.StartWorkflowRequest) else "",
    )


_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")


def _traceparent(value: str) -> str:
    """A W3C traceparent as sent, or "" for a malformed one (ignored, as the W3C spec says a
    receiver does: the workflow is then untraced by the caller, nothing else changes)."""
    return value if _TRACEPARENT.fullmatch(value) else ""


# The longest wait, timeout or sleep accepted (a hundred years): beyond it is a mistake.
MAX_SECONDS = 100 * 365 * 86400


def duration_in(what: str, d: Duration) -> float:
    """A Duration as seconds; negative or absurdly long ones are INVALID_ARGUMENT."""
    seconds = d.seconds + d.nanos / 1e9
    if seconds < 0:
        raise InvalidArgument(f"{what} must not be negative")
    if seconds > MAX_SECONDS:
        raise InvalidArgument(f"{what} of {seconds:.0f} s is longer than a hundred years")
    return seconds


def send_request(req: cpb.SendRequest, max_bytes: int) -> Send:
    return Send(
        workflow_id="",
        epoch=0,
        step_id="",
        destination=validation.identifier("workflow_id", req.workflow_id),
        topic=validation.identifier("topic", req.topic, optional=True),
        message=payload_in("message", req.message, max_bytes),
        idempotency_key=validation.identifier("idempotency_key", req.idempotency_key, optional=True) or None,
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
        version=optional_version(req),
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


def optional_version(
    req: cpb.ListWorkflowsRequest | cpb.ResumeWorkflowRequest | cpb.ForkWorkflowRequest,
) -> str | None:
    """The request's version when it sets one (it may be empty: the empty version)."""
    if not req.HasField("version"):
        return None
    return validation.identifier("version", req.version, optional=True)


_COUNT_FIELDS = {
    cpb.WORKFLOW_FIELD_NAME: "name",
    cpb.WORKFLOW_FIELD_VERSION: "version",
    cpb.WORKFLOW_FIELD_STATUS: "status",
}


def count_request(req: cpb.CountWorkflowsRequest) -> tuple[list[str], list[WorkflowStatus], str | None]:
    """What a CountWorkflows asks: the fields to group by, the statuses, the name."""
    by: list[str] = []
    for field in req.group_by:
        if field not in _COUNT_FIELDS:
            raise InvalidArgument(f"unknown group_by field {field}")
        if _COUNT_FIELDS[field] in by:
            raise InvalidArgument(f"group_by names {_COUNT_FIELDS[field]} twice")
        by.append(_COUNT_FIELDS[field])
    statuses = []
    for s in req.statuses:
        if s not in _WF_FROM_PB:
            raise InvalidArgument(f"unknown workflow status {s}")
        statuses.append(_WF_FROM_PB[s])
    name = validation.identifier("workflow_name", req.workflow_name, optional=True) or None
    return by, statuses, name


def workflow_count(c: WorkflowCount) -> cpb.WorkflowCount:
    return cpb.WorkflowCount(
        workflow_name=c.name or "",
        version=c.version,
        status=WF_TO_PB[c.status] if c.status is not None else pb.WORKFLOW_STATUS_UNSPECIFIED,
        count=c.count,
    )


def worker_info(w: WorkerRow) -> cpb.WorkerInfo:
    info = cpb.WorkerInfo(
        worker_id=w.worker_id,
        coordinator_id=w.coordinator_id,
        local=w.local,
        language=w.language,
        sdk_version=w.sdk_version,
        version=w.version,
        capacity=w.capacity,
        workflow_names=list(w.workflow_names),
        in_flight=w.in_flight,
        connected_at=ts(w.connected_at),
    )
    info.heartbeat_age.FromTimedelta(timedelta(seconds=w.heartbeat_age))
    return info
