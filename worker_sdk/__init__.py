"""Stepline's Python SDK: durable workflows made of steps, run by workers, recorded centrally.

    from worker_sdk import Client, Worker, step, workflow
    from worker_sdk import sleep, sleep_until, send, recv, set_event, get_event   # in workflows

The public API is what ``__all__`` lists; everything in modules with a leading underscore
may change without notice.
"""

from worker_sdk._children import ChildHandle, await_workflow, start_child
from worker_sdk._client import Client, WorkflowHandle
from worker_sdk._context import StepContext, current_step, workflow_id
from worker_sdk._decorators import Step, Workflow, step, workflow
from worker_sdk._deterministic import as_completed, now, patched, random, uuid4, wait, watch_asyncio
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
from worker_sdk._operations import get_event, recv, send, set_event, sleep, sleep_until
from worker_sdk._retry import RetryPolicy
from worker_sdk._transport import TLS
from worker_sdk._version import __version__
from worker_sdk._worker import Worker
from worker_sdk.errors import (
    AuthenticationError,
    CoordinatorUnavailableError,
    InvalidArgumentError,
    NonDeterminismError,
    NotInWorkerError,
    NotInWorkflowError,
    PayloadTooLargeError,
    PermissionDeniedError,
    SerializationError,
    StepFailedError,
    SteplineError,
    WorkflowCancelledError,
    WorkflowConflictError,
    WorkflowFailedError,
    WorkflowFinishedError,
    WorkflowNotFoundError,
    WorkflowTimedOutError,
)

__all__ = [
    "TLS",
    "AuthenticationError",
    "ChildHandle",
    "Client",
    "CoordinatorUnavailableError",
    "ErrorInfo",
    "InvalidArgumentError",
    "NonDeterminismError",
    "NotInWorkerError",
    "NotInWorkflowError",
    "Payload",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RetryPolicy",
    "SerializationError",
    "Step",
    "StepContext",
    "StepFailedError",
    "StepInfo",
    "StepKind",
    "StepStatus",
    "SteplineError",
    "Worker",
    "WorkerInfo",
    "Workflow",
    "WorkflowCancelledError",
    "WorkflowConflictError",
    "WorkflowCount",
    "WorkflowFailedError",
    "WorkflowFinishedError",
    "WorkflowHandle",
    "WorkflowInfo",
    "WorkflowNotFoundError",
    "WorkflowStatus",
    "WorkflowTimedOutError",
    "__version__",
    "as_completed",
    "await_workflow",
    "current_step",
    "get_event",
    "now",
    "patched",
    "random",
    "recv",
    "send",
    "set_event",
    "sleep",
    "sleep_until",
    "start_child",
    "step",
    "uuid4",
    "wait",
    "workflow",
    "workflow_id",
]

watch_asyncio()
