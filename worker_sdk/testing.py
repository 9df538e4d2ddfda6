"""An in-memory stand-in for the coordinator, for unit tests of workflow code.

``InMemoryRecorder`` runs a workflow in the current event loop with the same step IDs,
replay and non-determinism checks as a real worker, but records steps in a dict and
acknowledges them at once. Runs with the same ``workflow_id`` replay what earlier runs
recorded, and ``crash_after_steps`` stops a run the way a killed process would, so that
recovery can be tested without a coordinator::

    recorder = InMemoryRecorder()
    with pytest.raises(Crashed):
        await recorder.run(checkout, "o-1", ["a"], workflow_id="w", crash_after_steps=1)
    assert await recorder.run(checkout, "o-1", ["a"], workflow_id="w") == {...}

Durable operations work too, without waiting: ``sleep`` returns at once (recorded), and
``recv`` and ``get_event`` take what is there (``recorder.send(...)`` puts messages in a
mailbox first; workflows run by the same recorder send to each other and set events).
One that finds nothing returns None if it has a timeout, and raises if it would wait for
ever. Nothing here is durable; it exists so that tests of user code need no database.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from worker_sdk import _serde, errors
from worker_sdk._context import install_task_factory
from worker_sdk._decorators import Workflow
from worker_sdk._execution import Execution
from worker_sdk._messages import (
    Assignment,
    Idle,
    Operation,
    Outgoing,
    RecordedStep,
    Send,
    SetEvent,
    StepDone,
    StepResult,
    StepStart,
    Wait,
    WorkflowResult,
    operation_kind,
)
from worker_sdk._models import ErrorInfo, Payload, StepKind, StepStatus

__all__ = ["Crashed", "InMemoryRecorder", "RecordedRun"]


class Crashed(Exception):
    """A run was stopped by ``crash_after_steps``, like a process killed mid-workflow."""


@dataclass
class RecordedRun:
    """What the recorder holds for one workflow ID."""

    steps: dict[str, RecordedStep] = field(default_factory=dict)
    executions: int = 0
    # How many times each step body started, by step ID.
    starts: dict[str, int] = field(default_factory=dict)
    # Unread messages by topic ("" is the default topic), oldest first.
    mailbox: dict[str, list[bytes]] = field(default_factory=dict)
    # The workflow's events: the latest value of each key.
    events: dict[str, bytes] = field(default_factory=dict)


class InMemoryRecorder:
    def __init__(self) -> None:
        self.runs: dict[str, RecordedRun] = {}

    def send(self, workflow_id: str, message: Any, topic: str | None = None) -> None:
        """Puts a message in a workflow's mailbox (as Client.send would)."""
        run = self.runs.setdefault(workflow_id, RecordedRun())
        run.mailbox.setdefault(topic or "", []).append(_serde.encode(message, "a message"))

    def get_event(self, workflow_id: str, key: str) -> Any:
        """The latest value of a workflow's event, or None (as Client.get_event would)."""
        run = self.runs.get(workflow_id)
        value = run.events.get(key) if run is not None else None
        return _serde.decode(value) if value is not None else None

    async def run(
        self,
        wf: Workflow[Any, Any],
        /,
        *args: Any,
        workflow_id: str = "test-workflow",
        crash_after_steps: int | None = None,
        **kwargs: Any,
    ) -> Any:
        """Runs (or replays) ``wf``; returns its result or raises its error."""
        record = self.runs.setdefault(workflow_id, RecordedRun())
        record.executions += 1
        assignment = Assignment(
            workflow_id,
            wf.name,
            record.executions,
            Payload(_serde.encode_input(args, kwargs, "input")),
            tuple(record.steps.values()),
            record.executions - 1,
        )
        loop = asyncio.get_running_loop()
        uninstall = install_task_factory(loop)
        link = _Link(self, record, crash_after_steps)
        execution = Execution(assignment, wf.definition, link)
        link.execution = execution
        try:
            execution.task = loop.create_task(execution.run(), context=contextvars.Context())
            try:
                await execution.task
            except asyncio.CancelledError:
                if link.crashed:
                    raise Crashed(f"stopped after {crash_after_steps} recorded steps") from None
                raise
        finally:
            uninstall()
        result = execution.result
        assert result is not None
        if result.error is not None:
            raise _serde.rebuild(result.error)
        assert result.output is not None
        return _serde.decode(result.output)


class _Link:
    max_payload_bytes: int | None = 1 << 20
    suspend_after: float | None = None

    def __init__(
        self, recorder: InMemoryRecorder, record: RecordedRun, crash_after_steps: int | None
    ) -> None:
        self.recorder = recorder
        self.record = record
        self.crash_after = crash_after_steps
        self.recorded_here = 0
        self.crashed = False
        self.execution: Execution | None = None
        # One handler per kind of event a workflow sends; the result is read off the execution.
        self._handlers: dict[type[Any], Callable[[Any], None]] = {
            StepStart: self._step_start,
            StepResult: self._step_result,
            Wait: self._wait,
            Send: self._send,
            SetEvent: self._set_event,
            WorkflowResult: lambda event: None,
            Idle: lambda event: None,
        }

    def send(self, event: Outgoing) -> None:
        if self.crashed:
            return
        handler = self._handlers.get(type(event))
        if handler is None:
            raise errors.SteplineError(f"the in-memory recorder does not support {type(event).__name__}")
        handler(event)

    def _step_start(self, event: StepStart) -> None:
        r = self.record
        r.starts[event.step_id] = r.starts.get(event.step_id, 0) + 1
        r.steps[event.step_id] = RecordedStep(
            event.step_id, event.step_name, StepStatus.RUNNING, None, None, event.attempt
        )

    def _step_result(self, event: StepResult) -> None:
        status = StepStatus.FAILED if event.error is not None else StepStatus.SUCCEEDED
        output = Payload(event.output) if event.output is not None else None
        self.record.steps[event.step_id] = RecordedStep(
            event.step_id, event.step_name, status, output, event.error, event.attempt
        )
        ex = self.execution
        assert ex is not None
        if not self._crash_now():
            asyncio.get_running_loop().call_soon(ex.step_acked, event.step_id)

    def _wait(self, op: Wait) -> None:
        if op.kind is StepKind.AWAIT_WORKFLOW:
            raise errors.SteplineError(
                f"the in-memory recorder runs one workflow: it cannot wait for workflow {op.target!r} "
                "(test child workflows against a coordinator)"
            )
        output: bytes | None = None
        if op.kind is StepKind.RECV:
            unread = self.record.mailbox.get(op.topic, [])
            output = unread.pop(0) if unread else None
        elif op.kind is StepKind.GET_EVENT:
            target = self.recorder.runs.get(op.target)
            output = target.events.get(op.topic) if target is not None else None
        if op.kind is not StepKind.SLEEP and output is None and op.timeout is None:
            raise errors.SteplineError(
                f"{op.kind.step_name} at step {op.step_id} would wait for ever: the in-memory recorder "
                "has nothing for it (send the message or set the event first, or give it a timeout)"
            )
        self._done(op, output, None, timed_out=op.kind is not StepKind.SLEEP and output is None)

    def _send(self, op: Send) -> None:
        destination = self.recorder.runs.setdefault(op.destination, RecordedRun())
        destination.mailbox.setdefault(op.topic, []).append(op.message)
        self._done(op, None, None)

    def _set_event(self, op: SetEvent) -> None:
        self.record.events[op.key] = op.value
        self._done(op, None, None)

    def _done(
        self, op: Operation, output: bytes | None, error: ErrorInfo | None, *, timed_out: bool = False
    ) -> None:
        kind = operation_kind(op)
        payload = Payload(output) if output is not None else None
        status = StepStatus.FAILED if error is not None else StepStatus.SUCCEEDED
        self.record.steps[op.step_id] = RecordedStep(
            op.step_id, kind.step_name, status, payload, error, 1, kind, timed_out
        )
        ex = self.execution
        assert ex is not None
        if not self._crash_now():
            done = StepDone(op.workflow_id, op.epoch, op.step_id, payload, error, timed_out)
            asyncio.get_running_loop().call_soon(ex.step_done, done)

    def _crash_now(self) -> bool:
        """Counts a recorded step; at ``crash_after_steps`` the run stops, unanswered."""
        self.recorded_here += 1
        if self.crash_after is None or self.recorded_here < self.crash_after:
            return False
        self.crashed = True  # recorded, but the workflow never hears of it
        ex = self.execution
        assert ex is not None
        assert ex.task is not None
        ex.task.cancel()
        return True

    def lease_current(self) -> bool:
        return True

    async def lease_held(self) -> None:
        return None

    def body_started(self) -> None:
        pass

    def body_finished(self) -> None:
        pass

    def progressed(self) -> None:
        pass

    def suspended(self, execution: Execution) -> None:
        pass
