"""The SDK's errors, all under ``SteplineError``.

    SteplineError
    ├── NonDeterminismError        a replay reached a recorded step ID under another step name
    ├── WorkflowFailedError        the workflow ended FAILED (or was given up as poison)
    ├── StepFailedError            a recorded step error whose original type cannot be rebuilt
    ├── SerializationError         a value cannot be encoded as (or decoded from) its payload
    │   └── PayloadTooLargeError   an encoded value is over the coordinator's size limit
    ├── WorkflowNotFoundError      no workflow has that ID                      (NOT_FOUND)
    ├── WorkflowFinishedError      a message was sent to a workflow that has finished
    ├── WorkflowTimedOutError      a workflow's timeout or deadline passed (it is TIMED_OUT)
    ├── NotInWorkflowError         a workflow-only call (recv, set_event, ...) outside a workflow
    ├── WorkflowConflictError      the ID belongs to a workflow of another name (ALREADY_EXISTS)
    ├── InvalidArgumentError       the coordinator refused a malformed request  (INVALID_ARGUMENT)
    ├── AuthenticationError        missing or wrong API key                     (UNAUTHENTICATED)
    ├── PermissionDeniedError      the token's role may not make that call      (PERMISSION_DENIED)
    ├── CoordinatorUnavailableError the coordinator or its database cannot be reached (UNAVAILABLE)
    └── NotInWorkerError           a workflow was called directly with no Worker running

gRPC errors become these in exactly one place, ``_transport.translate``. Each error that
travels through the coordinator is recorded with ``type`` "stepline.<ClassName>".
"""

from __future__ import annotations


class SteplineError(Exception):
    """Root of every error the SDK raises on its own account."""


class NonDeterminismError(SteplineError):
    """The workflow took a different path on replay than when it was recorded.

    Raised at the step call whose ID was recorded under another name; the workflow then
    fails with this error even if its code catches it.
    """

    def __init__(self, workflow_id: str, step_id: str, recorded_name: str, called_name: str) -> None:
        self.workflow_id = workflow_id
        self.step_id = step_id
        self.recorded_name = recorded_name
        self.called_name = called_name
        super().__init__(workflow_id, step_id, recorded_name, called_name)

    def __str__(self) -> str:
        return (
            f"non-determinism in workflow {self.workflow_id!r}: step {self.step_id!r} was recorded as "
            f"{self.recorded_name!r} but the code now calls {self.called_name!r} there"
        )


class WorkflowFailedError(SteplineError):
    """A workflow ended in failure. ``__cause__`` is the rebuilt original error when possible."""

    def __init__(self, workflow_id: str, error_type: str, message: str, traceback: str = "") -> None:
        self.workflow_id = workflow_id
        self.error_type = error_type
        self.message = message
        self.traceback = traceback
        super().__init__(workflow_id, error_type, message, traceback)

    def __str__(self) -> str:
        return f"workflow {self.workflow_id!r} failed: {self.error_type}: {self.message}"


class StepFailedError(SteplineError):
    """A recorded error whose type could not be imported or rebuilt here."""

    def __init__(self, error_type: str, message: str, traceback: str = "") -> None:
        self.error_type = error_type
        self.message = message
        self.traceback = traceback
        super().__init__(error_type, message, traceback)

    def __str__(self) -> str:
        return f"{self.error_type}: {self.message}"


class SerializationError(SteplineError):
    """A value could not be encoded to, or decoded from, its payload."""


class PayloadTooLargeError(SerializationError):
    """An encoded value is larger than the coordinator accepts."""


class WorkflowNotFoundError(SteplineError):
    """No workflow has the given ID."""


class WorkflowFinishedError(SteplineError):
    """The workflow has already finished: a message sent to it would never be read."""


class WorkflowTimedOutError(SteplineError):
    """The workflow's timeout or deadline passed before it finished; it is TIMED_OUT."""


class WorkflowCancelledError(SteplineError):
    """The workflow was cancelled (Client.cancel, or its parent's cancel); it is CANCELLED."""


class NotInWorkflowError(SteplineError):
    """A call that only workflow code can make (recv, set_event, ...) was made elsewhere."""


class WorkflowConflictError(SteplineError):
    """The workflow ID is taken by a workflow with another name."""


class InvalidArgumentError(SteplineError):
    """The coordinator refused the request as malformed."""


class AuthenticationError(SteplineError):
    """The coordinator requires an API key, and the one sent is missing or wrong."""


class PermissionDeniedError(SteplineError):
    """The coordinator knows the token, but its role may not make this call."""


class CoordinatorUnavailableError(SteplineError):
    """The coordinator, or its database, cannot be reached right now."""


class NotInWorkerError(SteplineError):
    """A workflow function was called directly without a running Worker to record it."""
