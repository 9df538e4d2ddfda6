"""Records the coordinator works on; proto messages stay in ``convert.py``.

Stored state (``WorkflowRecord``, ``StepRecord``, ...) is frozen. The events that flow per
step are plain slotted dataclasses, left unchanged by convention: a frozen dataclass takes
five times as long to build, and several are made per step.

Workflow and step state (``WorkflowRecord``, ``StepRecord``), the events a worker sends
(``StepStart``, ``StepResult``, ``WorkflowResult``, ``StartRequest``, ``Wait``, ``Send``,
...) and the events the coordinator sends back (``Assignment``, ``StepAck``,
``StepDone``, ``WorkflowAck``, ``Abandon``, ``Rejected``, ...).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from coordinator.errors import Code, CoordinatorError
from coordinator.limits import Limits


class WorkflowStatus(enum.Enum):
    """Mirrors stepline.v1.WorkflowStatus; the value is what PostgreSQL stores."""

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
        """Whether this is a final status (one of FINAL)."""
        return self in FINAL


#: Statuses of workflows that have not finished; an unowned one is ready for a worker.
UNFINISHED = frozenset({WorkflowStatus.ENQUEUED, WorkflowStatus.RUNNING})
#: The final statuses: nothing is written about the execution any more.
FINAL = frozenset(WorkflowStatus) - UNFINISHED


class StepStatus(enum.Enum):
    """Mirrors stepline.v1.StepStatus; the value is what PostgreSQL stores."""

    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    WAITING = "WAITING"


class StepKind(enum.Enum):
    """Mirrors stepline.v1.StepKind; the value is what PostgreSQL stores."""

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
        """The name the coordinator records a durable operation under ("stepline.sleep")."""
        return "stepline." + self.value


#: The kinds a workflow waits on (answered with StepDone when the wait ends).
WAIT_KINDS = frozenset({StepKind.SLEEP, StepKind.RECV, StepKind.GET_EVENT, StepKind.AWAIT_WORKFLOW})


class AbandonReason(enum.Enum):
    STALE_EPOCH = 1
    FINISHED = 2
    CANCELLED = 3
    TIMED_OUT = 4


@dataclass(frozen=True, slots=True)
class Payload:
    data: bytes
    encoding: str


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    type: str
    message: str
    traceback: str = ""
    details: Payload | None = None


@dataclass(frozen=True, slots=True)
class WorkflowRecord:
    workflow_id: str
    name: str
    status: WorkflowStatus
    input: Payload | None
    output: Payload | None
    error: ErrorInfo | None
    owner_id: str | None
    epoch: int
    recovery_attempts: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    seq: int
    deadline_at: datetime | None = None
    suspended: bool = False
    parent_id: str | None = None
    parent_step_id: str | None = None
    # The version of the worker code that runs it (Register.version); None until a worker
    # takes it.
    version: str | None = None
    # The trace its executions continue (W3C traceparent; "" for none).
    traceparent: str = ""

    @property
    def ready(self) -> bool:
        """Unfinished, owned by no worker and not suspended: waiting to be handed out (see
        store/conditions.py)."""
        return self.owner_id is None and not self.suspended and self.status in UNFINISHED


@dataclass(frozen=True, slots=True)
class StepRecord:
    step_id: str
    name: str
    status: StepStatus
    output: Payload | None
    error: ErrorInfo | None
    attempts: int
    worker_id: str
    epoch: int
    started_at: datetime
    completed_at: datetime | None
    kind: StepKind = StepKind.STEP
    timed_out: bool = False
    wake_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class WorkflowFilter:
    name: str | None = None
    statuses: tuple[WorkflowStatus, ...] = ()
    created_after: datetime | None = None
    created_before: datetime | None = None
    after_seq: int | None = None
    limit: int = 100
    descending: bool = False
    include_payloads: bool = False
    # Only runs recorded under this version; None: any.
    version: str | None = None


@dataclass(frozen=True, slots=True)
class WorkflowCount:
    """One group of a count: the fields grouped by are set (version None also means the
    group of runs no worker took yet)."""

    count: int
    name: str | None = None
    version: str | None = None
    status: WorkflowStatus | None = None


# --- worker -> coordinator ------------------------------------------------------------


@dataclass(slots=True)
class ExecutionRef:
    workflow_id: str
    epoch: int


@dataclass(slots=True)
class Registration:
    worker_id: str
    workflow_names: frozenset[str]
    capacity: int
    language: str
    sdk_version: str
    protocol_version: int
    held: tuple[ExecutionRef, ...]
    # The build ID of its workflow code, and the names whose runs it takes whatever
    # version recorded them.
    version: str = ""
    auto_upgrade: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Claimant:
    """The worker a claim is for: its ID, its version and the names it auto-upgrades."""

    worker_id: str
    version: str = ""
    auto_upgrade: frozenset[str] = frozenset()

    def takes(self, name: str, version: str | None) -> bool:
        """Whether it may run a workflow of ``name`` recorded under ``version`` (the
        condition the claims apply in SQL). No run is recorded under the empty version:
        an unversioned worker takes the unpinned runs and pins none."""
        return version is None or version == self.version or name in self.auto_upgrade


@dataclass(slots=True)
class StartRequest:
    """A request to record a workflow, from a client or (``request_id`` set) a worker."""

    name: str
    workflow_id: str
    input: Payload
    request_id: str = ""
    # Seconds after recording, and an absolute time: the earlier ends it TIMED_OUT.
    timeout: float | None = None
    deadline: datetime | None = None
    # The caller's W3C trace context ("" for none).
    traceparent: str = ""


@dataclass(slots=True)
class StepStart:
    workflow_id: str
    epoch: int
    step_id: str
    name: str
    attempt: int


@dataclass(slots=True)
class StepResult:
    workflow_id: str
    epoch: int
    step_id: str
    name: str
    attempt: int
    output: Payload | None
    error: ErrorInfo | None


@dataclass(slots=True)
class WorkflowResult:
    workflow_id: str
    epoch: int
    output: Payload | None
    error: ErrorInfo | None


@dataclass(slots=True)
class Heartbeat:
    sequence: int


@dataclass(slots=True)
class Release:
    workflow_id: str
    epoch: int


@dataclass(slots=True)
class Drain:
    pass


@dataclass(slots=True)
class Wait:
    """A durable wait begins: a SLEEP (``seconds`` from now, or ``until``), a RECV on
    ``topic``, a GET_EVENT of ``target``'s ``topic`` (the key), or an AWAIT_WORKFLOW of
    ``target``; ``timeout`` in seconds."""

    workflow_id: str
    epoch: int
    step_id: str
    kind: StepKind
    seconds: float | None = None
    until: datetime | None = None
    topic: str = ""
    target: str = ""
    timeout: float | None = None
    # When the coordinator received it (time.monotonic()); 0 if unknown. ``seconds`` and
    # ``timeout`` count from then, not from when a busy coordinator got to writing it.
    received: float = 0.0


@dataclass(slots=True)
class StartChild:
    """A workflow starts ``child_id``, a workflow ``name``, as its child."""

    workflow_id: str
    epoch: int
    step_id: str
    child_id: str
    name: str
    input: Payload


@dataclass(slots=True)
class Send:
    """A message for ``destination``: from a workflow (``step_id`` set) or a client."""

    workflow_id: str
    epoch: int
    step_id: str
    destination: str
    topic: str
    message: Payload
    idempotency_key: str | None


@dataclass(slots=True)
class SetEvent:
    workflow_id: str
    epoch: int
    step_id: str
    key: str
    value: Payload


@dataclass(slots=True)
class Idle:
    workflow_id: str
    epoch: int


@dataclass(slots=True)
class Suspend:
    workflow_id: str
    epoch: int
    waiting_on: tuple[str, ...]


# --- coordinator -> worker ------------------------------------------------------------


@dataclass(slots=True)
class Registered:
    session_id: str
    lease_ms: int
    heartbeat_interval_ms: int
    protocol_version: int
    reattached: tuple[ExecutionRef, ...]
    limits: Limits


@dataclass(slots=True)
class HeartbeatAck:
    sequence: int


@dataclass(slots=True)
class Assignment:
    workflow_id: str
    name: str
    epoch: int
    input: Payload
    steps: tuple[StepRecord, ...]
    recovery_attempt: int
    traceparent: str = ""


@dataclass(slots=True)
class StartResult:
    request_id: str
    workflow: WorkflowRecord | None
    created: bool
    error: CoordinatorError | None = None


@dataclass(slots=True)
class StepAck:
    workflow_id: str
    epoch: int
    step_id: str


@dataclass(slots=True)
class WorkflowAck:
    workflow_id: str
    epoch: int
    status: WorkflowStatus


@dataclass(slots=True)
class Abandon:
    workflow_id: str
    epoch: int
    reason: AbandonReason
    message: str


@dataclass(slots=True)
class StepDone:
    """A durable operation ended; its outcome is committed."""

    workflow_id: str
    epoch: int
    step_id: str
    output: Payload | None
    error: ErrorInfo | None
    timed_out: bool


@dataclass(slots=True)
class Rejected:
    workflow_id: str
    epoch: int
    step_id: str
    code: Code
    message: str


WorkerEvent = (
    StepStart
    | StepResult
    | WorkflowResult
    | StartRequest
    | Heartbeat
    | Release
    | Drain
    | Wait
    | Send
    | SetEvent
    | Idle
    | Suspend
    | StartChild
)
CoordinatorEvent = (
    Registered
    | HeartbeatAck
    | Assignment
    | StartResult
    | StepAck
    | WorkflowAck
    | Abandon
    | Rejected
    | StepDone
)
