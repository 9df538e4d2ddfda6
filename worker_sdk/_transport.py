"""Everything gRPC: channels, the worker stream, unary client calls, and the one place
where gRPC errors become SteplineErrors (conversion of messages is ``_convert.py``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import grpc
from stepline.v1 import client_pb2 as cpb
from stepline.v1 import client_pb2_grpc as cpb_grpc
from stepline.v1 import worker_pb2_grpc as wpb_grpc

from worker_sdk import errors
from worker_sdk._convert import (
    coordinator_events,
    count_field_to_pb,
    limits_in,
    status_to_pb,
    step_info,
    worker_frames,
    worker_info,
    workflow_count,
    workflow_info,
)
from worker_sdk._messages import Incoming, Limits, Outgoing
from worker_sdk._models import Payload, StepInfo, WorkerInfo, WorkflowCount, WorkflowInfo, WorkflowStatus


class Start(NamedTuple):
    """One workflow to start: its name, ID ("" for a generated one), input and time limits."""

    name: str
    workflow_id: str
    input: bytes
    timeout: float | None = None
    deadline: datetime | None = None
    traceparent: str = ""


# --- channels and errors ------------------------------------------------------------------


def api_key_or_env(api_key: str | None) -> str | None:
    return api_key if api_key is not None else os.environ.get("STEPLINE_API_KEY") or None


def metadata(api_key: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {api_key}"),) if api_key else ()


@dataclass(frozen=True)
class TLS:
    """How to reach a coordinator that serves TLS: the CA that signed its certificate (None:
    the system's roots), and for mutual TLS this side's certificate chain and key. Each is
    PEM, given as bytes or as a file path."""

    ca: bytes | str | Path | None = None
    cert: bytes | str | Path | None = None
    key: bytes | str | Path | None = None

    @classmethod
    def from_env(cls) -> TLS | None:
        """From STEPLINE_TLS_CA / STEPLINE_TLS_CERT / STEPLINE_TLS_KEY (file paths); None when
        none is set."""
        ca, cert, key = (os.environ.get(f"STEPLINE_TLS_{n}") or None for n in ("CA", "CERT", "KEY"))
        return cls(ca, cert, key) if ca or cert or key else None

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(_pem(self.ca), _pem(self.key), _pem(self.cert))


def _pem(value: bytes | str | Path | None) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return Path(value).read_bytes()


_OPTIONS: list[tuple[str, int]] = [
    # The coordinator's own limit applies (Limits.max_message_bytes); this side
    # takes whatever it sends.
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
    # Fast reconnects: the worker has its own backoff with jitter.
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
]


def channel(address: str, tls: TLS | None = None) -> grpc.aio.Channel:
    if tls is not None:
        return grpc.aio.secure_channel(address, tls.credentials(), options=_OPTIONS)
    return grpc.aio.insecure_channel(address, options=_OPTIONS)


_TRANSLATION: dict[grpc.StatusCode, type[errors.SteplineError]] = {
    grpc.StatusCode.NOT_FOUND: errors.WorkflowNotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: errors.WorkflowConflictError,
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgumentError,
    grpc.StatusCode.UNAUTHENTICATED: errors.AuthenticationError,
    grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDeniedError,
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


# --- calls --------------------------------------------------------------------------------


class WorkerStream:
    """One Connect call: frames of events out and in."""

    def __init__(self, ch: grpc.aio.Channel, api_key: str | None) -> None:
        stub = wpb_grpc.WorkerServiceStub(ch)
        self._call = stub.Connect(metadata=metadata(api_key))
        # Until Registered says otherwise: the first frame is Register and what to resend.
        self.max_message_bytes = 4 << 20

    async def send(self, events: Sequence[Outgoing]) -> None:
        for frame in worker_frames(events, self.max_message_bytes):
            await self._call.write(frame)

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

    async def start_workflows(
        self, starts: Sequence[Start]
    ) -> list[tuple[WorkflowInfo, bool] | errors.SteplineError]:
        """Many starts in one call; an outcome for each."""
        request = cpb.StartWorkflowsRequest()
        for s in starts:
            one = request.requests.add(workflow_name=s.name, workflow_id=s.workflow_id)
            one.input.data, one.input.encoding = s.input, "json"
            one.traceparent = s.traceparent
            if s.timeout is not None:
                one.timeout.FromTimedelta(timedelta(seconds=s.timeout))
            if s.deadline is not None:
                one.deadline.FromDatetime(s.deadline)
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
        version: str | None,
    ) -> tuple[list[WorkflowInfo], str]:
        request = cpb.ListWorkflowsRequest(
            workflow_name=name or "",
            statuses=[status_to_pb(s) for s in statuses],
            page_size=page_size,
            page_token=page_token,
            descending=descending,
            include_payloads=include_payloads,
            version=version,
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

    async def send(self, workflow_id: str, topic: str, message: bytes, idempotency_key: str) -> bool:
        """Sends a message to a workflow; returns whether it was a duplicate."""
        request = cpb.SendRequest(workflow_id=workflow_id, topic=topic, idempotency_key=idempotency_key)
        request.message.data, request.message.encoding = message, "json"
        try:
            r = await self._stub.Send(request, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
                raise errors.WorkflowFinishedError(exc.details() or "") from None
            raise translate(exc) from None
        return r.duplicate

    async def get_event(self, workflow_id: str, key: str, timeout: float) -> Payload | None:
        """The event's value once set (waiting up to ``timeout`` s), or None."""
        request = cpb.GetEventRequest(workflow_id=workflow_id, key=key, timeout_ms=int(timeout * 1000))
        try:
            r = await self._stub.GetEvent(request, metadata=self._metadata, timeout=timeout + 10)
        except grpc.aio.AioRpcError as exc:
            raise translate(exc) from None
        return Payload(r.value.data, r.value.encoding or "json") if r.found else None

    async def cancel(self, workflow_id: str, reason: str) -> list[str]:
        """Cancels a workflow and its unfinished descendants; returns the IDs cancelled."""
        request = cpb.CancelWorkflowRequest(workflow_id=workflow_id, reason=reason)
        try:
            r = await self._stub.CancelWorkflow(request, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            raise translate(exc) from None
        return list(r.cancelled)

    async def resume(self, workflow_id: str, version: str | None) -> WorkflowInfo:
        try:
            r = await self._stub.ResumeWorkflow(
                cpb.ResumeWorkflowRequest(workflow_id=workflow_id, version=version), metadata=self._metadata
            )
        except grpc.aio.AioRpcError as exc:
            raise translate(exc) from None
        return workflow_info(r.workflow)

    async def fork(self, workflow_id: str, from_step: str, new_id: str, version: str | None) -> WorkflowInfo:
        request = cpb.ForkWorkflowRequest(
            workflow_id=workflow_id, from_step=from_step, new_workflow_id=new_id, version=version
        )
        try:
            r = await self._stub.ForkWorkflow(request, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            raise translate(exc) from None
        return workflow_info(r.workflow)

    async def count_workflows(
        self, by: Sequence[str], statuses: Sequence[WorkflowStatus], name: str | None
    ) -> list[WorkflowCount]:
        request = cpb.CountWorkflowsRequest(
            group_by=[count_field_to_pb(b) for b in by],
            statuses=[status_to_pb(s) for s in statuses],
            workflow_name=name or "",
        )
        try:
            r = await self._stub.CountWorkflows(request, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            raise translate(exc) from None
        return [workflow_count(c, by) for c in r.counts]

    async def list_workers(self) -> list[WorkerInfo]:
        try:
            r = await self._stub.ListWorkers(cpb.ListWorkersRequest(), metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            raise translate(exc) from None
        return [worker_info(w) for w in r.workers]

    async def limits(self) -> Limits:
        """The coordinator's limits (GetServerInfo)."""
        try:
            r = await self._stub.GetServerInfo(cpb.GetServerInfoRequest(), metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            raise translate(exc) from None
        return limits_in(r.limits)

    async def list_steps(self, workflow_id: str) -> list[StepInfo]:
        try:
            r = await self._stub.ListSteps(
                cpb.ListStepsRequest(workflow_id=workflow_id), metadata=self._metadata
            )
        except grpc.aio.AioRpcError as exc:
            raise translate(exc) from None
        return [step_info(s) for s in r.steps]
