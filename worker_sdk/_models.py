"""Public records: what the Client returns about workflows and steps."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any


class WorkflowStatus(enum.Enum):
    """Where a workflow is in its life (stepline.v1.WorkflowStatus)."""

    ENQUEUED = "ENQUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    MAX_RECOVERY_ATTEMPTS_EXCEEDED = "MAX_RECOVERY_ATTEMPTS_EXCEEDED"
    TIMED_OUT = "TIMED_OUT"
    PAUSED = "PAUSED"

    @property
    def done(self) -> bool:
        """True for the final statuses."""
        return self not in (WorkflowStatus.ENQUEUED, WorkflowStatus.RUNNING)


class StepStatus(enum.Enum):
    """Where a step is in its life (stepline.v1.StepStatus)."""

    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    WAITING = "WAITING"


class StepKind(enum.Enum):
    """What a recorded step is (stepline.v1.StepKind): a step body, or a durable operation."""

    STEP = "step"
    SLEEP = "sleep"
    RECV = "recv"
    GET_EVENT = "get_event"
    SEND = "send"
    SET_EVENT = "set_event"
    START_CHILD = "start_child"
    AWAIT_WORKFLOW = "await_workflow"

    @property
    def step_name(self) -> str:
        """The name a durable operation is recorded under ("stepline.sleep", ...)."""
        return "stepline." + self.value


@dataclass(frozen=True, slots=True)
class Payload:
    """A serialised value and its encoding ("json" or "raw")."""

    data: bytes
    encoding: str = "json"


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """A recorded failure: its type name, message, traceback and rebuild details."""

    type: str
    message: str
    traceback: str = ""
    details: Payload | None = None


@dataclass(frozen=True, slots=True)
class WorkflowInfo:
    """Everything recorded about a workflow. ``input``/``output`` are decoded values."""

    workflow_id: str
    workflow_name: str
    status: WorkflowStatus
    input: Any
    output: Any
    error: ErrorInfo | None
    owner_worker_id: str | None
    epoch: int
    recovery_attempts: int
    created_at: datetime | None
    updated_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    deadline: datetime | None = None
    suspended: bool = False
    # A child workflow's parent, and the parent's step that started it.
    parent_workflow_id: str | None = None
    parent_step_id: str | None = None
    # The worker version (build ID) it runs under; None until a worker takes it.
    version: str | None = None


@dataclass(frozen=True, slots=True)
class WorkflowCount:
    """One group of ``Client.count_workflows``: the fields it grouped by are set
    (``version`` None is also the group of runs that no worker has taken yet)."""

    count: int
    name: str | None = None
    version: str | None = None
    status: WorkflowStatus | None = None


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A connected worker (``Client.list_workers``), on any coordinator of the database."""

    worker_id: str
    coordinator_id: str
    # Connected to the coordinator that answered (its heartbeat_age is then exact).
    local: bool
    language: str
    sdk_version: str
    version: str
    capacity: int
    workflow_names: tuple[str, ...]
    in_flight: int
    connected_at: datetime | None
    # Seconds since it was last heard from (elsewhere: since its lease was last renewed).
    heartbeat_age: float


@dataclass(frozen=True, slots=True)
class StepInfo:
    """Everything recorded about one step. ``output`` is the decoded value."""

    step_id: str
    step_name: str
    status: StepStatus
    output: Any
    error: ErrorInfo | None
    attempts: int
    worker_id: str
    epoch: int
    started_at: datetime | None
    completed_at: datetime | None
    kind: StepKind = StepKind.STEP
    timed_out: bool = False
    wake_at: datetime | None = None
