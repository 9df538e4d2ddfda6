"""The stream's events as the SDK sees them (``_transport`` converts them to protobuf)."""

from __future__ import annotations

from dataclasses import dataclass

from worker_sdk._models import ErrorInfo, Payload, StepStatus, WorkflowInfo, WorkflowStatus

# --- worker -> coordinator ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Register:
    worker_id: str
    workflow_names: tuple[str, ...]
    capacity: int
    held: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class Heartbeat:
    sequence: int


@dataclass(frozen=True, slots=True)
class StartWorkflow:
    request_id: str
    workflow_name: str
    workflow_id: str
    input: bytes


@dataclass(frozen=True, slots=True)
class StepStart:
    workflow_id: str
    epoch: int
    step_id: str
    step_name: str
    attempt: int


@dataclass(frozen=True, slots=True)
class StepResult:
    workflow_id: str
    epoch: int
    step_id: str
    step_name: str
    attempt: int
    output: bytes | None
    error: ErrorInfo | None


@dataclass(frozen=True, slots=True)
class WorkflowResult:
    workflow_id: str
    epoch: int
    output: bytes | None
    error: ErrorInfo | None


@dataclass(frozen=True, slots=True)
class Release:
    workflow_id: str
    epoch: int


@dataclass(frozen=True, slots=True)
class Drain:
    pass


Outgoing = Register | Heartbeat | StartWorkflow | StepStart | StepResult | WorkflowResult | Release | Drain

# --- coordinator -> worker ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Registered:
    session_id: str
    lease_ms: int
    heartbeat_interval_ms: int
    max_payload_bytes: int
    reattached: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class HeartbeatAck:
    sequence: int


@dataclass(frozen=True, slots=True)
class RecordedStep:
    step_id: str
    step_name: str
    status: StepStatus
    output: Payload | None
    error: ErrorInfo | None
    attempts: int


@dataclass(frozen=True, slots=True)
class Assignment:
    workflow_id: str
    workflow_name: str
    epoch: int
    input: Payload
    steps: tuple[RecordedStep, ...]
    recovery_attempt: int


@dataclass(frozen=True, slots=True)
class StartResult:
    request_id: str
    workflow: WorkflowInfo | None
    created: bool
    error_code: int
    error_message: str


@dataclass(frozen=True, slots=True)
class StepAck:
    workflow_id: str
    epoch: int
    step_id: str


@dataclass(frozen=True, slots=True)
class WorkflowAck:
    workflow_id: str
    epoch: int
    status: WorkflowStatus


@dataclass(frozen=True, slots=True)
class Abandon:
    workflow_id: str
    epoch: int
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Rejected:
    workflow_id: str
    epoch: int
    step_id: str
    code: int
    message: str


Incoming = Registered | HeartbeatAck | Assignment | StartResult | StepAck | WorkflowAck | Abandon | Rejected
