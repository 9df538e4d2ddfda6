"""One execution of one workflow on this worker: replay, step calls, durable operations,
waiting, and the final result.

A step call looks up its ID in the history sent with the assignment. A recorded outcome is
returned (or its error re-raised) at once, without a round trip; a recorded ID under
another name is a non-determinism error. Otherwise the body runs, its outcome is sent,
and the call returns only when the coordinator has acknowledged that the outcome is
durable. Durable operations (``_operations.py``: sleep, recv, send, ...) are carried out
by the coordinator and return when its StepDone arrives.

An execution blocked on nothing but durable waits is *idle*: it tells the coordinator
(which then does not count it against the worker's capacity), and after ``suspend_after``
seconds of idleness gives itself back (Suspend) and stops; the coordinator hands it out
again when one of its waits ends, and the replay returns to the wait at once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from worker_sdk import _serde, _tracing, errors
from worker_sdk._context import SCOPE, STEP, STEP_CODES, Scope, StepContext
from worker_sdk._definitions import StepDefinition, WorkflowDefinition
from worker_sdk._messages import (
    Assignment,
    Idle,
    Operation,
    Outgoing,
    RecordedStep,
    StepDone,
    StepResult,
    StepStart,
    Suspend,
    Wait,
    WorkflowResult,
)
from worker_sdk._models import ErrorInfo, StepStatus, WorkflowStatus

log = logging.getLogger("worker_sdk")


class Link(Protocol):
    """What an execution needs from its worker."""

    @property
    def max_payload_bytes(self) -> int | None:
        """The coordinator's payload limit, once known."""

    @property
    def suspend_after(self) -> float | None:
        """Seconds an execution may wait in memory before it is suspended; None: never."""

    def send(self, event: Outgoing) -> None:
        """Queues an event for the coordinator."""

    def lease_current(self) -> bool:
        """Whether this worker may start a step body right now."""

    async def lease_held(self) -> None:
        """Returns when this worker may start step bodies (its lease is current)."""

    def body_started(self) -> None:
        """A step body is about to run."""

    def body_finished(self) -> None:
        """A step body has returned or raised."""

    def progressed(self) -> None:
        """An acknowledgement arrived (shutdown waits for them)."""

    def suspended(self, execution: Execution) -> None:
        """The execution gave itself back while waiting: forget it."""


class Abandoned(errors.SteplineError):
    """The execution was taken away from this worker; its result comes from elsewhere."""


class Suspended(Abandoned):
    """The execution was given back while it waited; it goes on wherever it is handed out."""


# (status, output payload, error) as acknowledged by the coordinator.
Outcome = tuple[WorkflowStatus, bytes | None, ErrorInfo | None]


class Execution:
    def __init__(self, assignment: Assignment, definition: WorkflowDefinition, link: Link) -> None:
        self.workflow_id = assignment.workflow_id
        self.epoch = assignment.epoch
        self.assignment = assignment
        self.definition = definition
        self.link = link
        self.recorded: dict[str, RecordedStep] = {s.step_id: s for s in assignment.steps}
        self.fatal: errors.SteplineError | None = None
        # Abandoned or suspended: nothing more of it may run or be reported.
        self.stopped = False
        self.task: asyncio.Task[None] | None = None
        # Step results sent and not yet acknowledged, to resend after a reconnect.
        self.unacked: dict[str, StepResult] = {}
        self.result: WorkflowResult | None = None
        self._acks: dict[str, asyncio.Future[None]] = {}
        # Durable operations sent and not yet done (to resend), and which of them are waits.
        self._calls: dict[str, tuple[Operation, asyncio.Future[StepDone]]] = {}
        self._waits: set[str] = set()
        self._bodies = 0
        # Cancelled: stops once no step body runs (at the next durable call at the latest).
        self._cancelled: Abandoned | None = None
        self._idle = False
        self._suspend_timer: asyncio.TimerHandle | None = None
        self.outcome: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()

    def __repr__(self) -> str:
        return f"<Execution {self.workflow_id} epoch={self.epoch}>"

    @property
    def abandoned(self) -> bool:
        return self.stopped

    # --- driven by the worker -----------------------------------------------------------

    async def run(self) -> None:
        """The execution's task: runs the workflow function and reports how it ended."""
        SCOPE.set(Scope(self))
        output: bytes | None = None
        error: ErrorInfo | None = None
        try:
            args, kwargs = _serde.decode_input(self.assignment.input.data, self.assignment.input.encoding)
            with _tracing.workflow_span(
                self.definition.name,
                self.assignment.traceparent,
                workflow_id=self.workflow_id,
                epoch=self.epoch,
                recovery_attempt=self.assignment.recovery_attempt,
            ):
                value = await self.definition.fn(*args, **kwargs)
            if self.fatal is not None:
                raise self.fatal
            output = _serde.encode(
                value, f"the result of workflow {self.definition.name!r}", self.link.max_payload_bytes
            )
        except asyncio.CancelledError:
            if self.stopped:
                return
            raise
        except Exception as exc:
            if self.stopped:
                return  # whatever its code did while being stopped is nobody's business
            error = _serde.error_info(self.fatal if self.fatal is not None else exc)
            if self.fatal is None and not isinstance(exc, errors.SteplineError):
                log.info("workflow %s failed: %s: %s", self.workflow_id, type(exc).__name__, exc)
        finally:
            self._cancel_suspend()
        self.result = WorkflowResult(self.workflow_id, self.epoch, output, error)
        self.link.send(self.result)

    def step_acked(self, step_id: str) -> None:
        self.unacked.pop(step_id, None)
        future = self._acks.pop(step_id, None)
        if future is not None and not future.done():
            future.set_result(None)
        self.link.progressed()

    def step_done(self, ev: StepDone) -> None:
        call = self._calls.get(ev.step_id)
        if call is not None and not call[1].done():
            call[1].set_result(ev)
        self.link.progressed()

    @property
    def settled(self) -> bool:
        """Nothing of this execution waits for the coordinator's acknowledgement (open
        waits aside: they last as long as they last)."""
        pending = len(self._calls) - len(self._waits)
        return not self.unacked and not pending and (self.result is None or self.outcome.done())

    def workflow_acked(self, status: WorkflowStatus) -> None:
        if self.result is not None and not self.outcome.done():
            self.outcome.set_result((status, self.result.output, self.result.error))

    def rejected(self, step_id: str, message: str) -> None:
        """The coordinator refused an event of this execution; nothing of it was written."""
        problem = errors.SteplineError(f"the coordinator refused {step_id or 'the result'}: {message}")
        if step_id:
            self.unacked.pop(step_id, None)
            if self.fatal is None:
                self.fatal = problem
            for future in (self._acks.pop(step_id, None), self._calls.get(step_id, (None, None))[1]):
                if future is not None and not future.done():
                    future.set_exception(problem)
        elif self.result is not None and self.result.output is not None:
            # The output was refused: record the refusal as the workflow's error instead.
            self.result = WorkflowResult(self.workflow_id, self.epoch, None, _serde.error_info(problem))
            self.link.send(self.result)
        else:
            log.error("workflow %s: result refused: %s", self.workflow_id, message)

    def cancel(self, reason: str) -> None:
        """The workflow was cancelled: a step body running now may finish (nothing it
        reports is recorded), and the execution stops then, or at its next durable call."""
        if self._cancelled is None and not self.stopped:
            self._cancelled = Abandoned(reason)
            log.info("workflow %s epoch %d cancelled: %s", self.workflow_id, self.epoch, reason)
            self._stop_if_cancelled()

    def _stop_if_cancelled(self) -> None:
        if self._cancelled is not None and self._bodies == 0:
            self._stop(self._cancelled)

    def abandon(self, reason: str) -> None:
        """Stops this execution at once: another epoch owns the workflow now."""
        self._stop(Abandoned(reason))
        log.info("workflow %s epoch %d abandoned: %s", self.workflow_id, self.epoch, reason)

    def pending_events(self) -> list[Outgoing]:
        """What to resend after a reconnect: unacknowledged results, operations not yet
        done (the coordinator answers a repeat with its recorded outcome), and Idle."""
        events: list[Outgoing] = list(self.unacked.values())
        events.extend(op for op, _ in self._calls.values())
        if self._idle:
            events.append(Idle(self.workflow_id, self.epoch))
        if self.result is not None:
            events.append(self.result)
        return events

    # --- used by step calls and durable operations ----------------------------------------

    def nondeterminism(self, step_id: str, recorded: str, called: str) -> errors.NonDeterminismError:
        exc = errors.NonDeterminismError(self.workflow_id, step_id, recorded, called)
        if self.fatal is None:
            self.fatal = exc
        return exc

    def check_running(self) -> None:
        """Raises if nothing more may run: a recorded fatal error, or the execution stopped."""
        if self.stopped or self._cancelled is not None:
            raise asyncio.CancelledError
        if self.fatal is not None:
            raise self.fatal

    async def record(
        self, step_id: str, name: str, attempt: int, output: bytes | None, error: ErrorInfo | None
    ) -> None:
        """Sends a step's outcome; returns once the coordinator has made it durable."""
        event = StepResult(self.workflow_id, self.epoch, step_id, name, attempt, output, error)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._acks[step_id] = future
        self.unacked[step_id] = event
        self.link.send(event)
        try:
            await future
        finally:
            self._update_idle()

    async def call(self, operation: Operation) -> StepDone:
        """Asks the coordinator to carry out an operation; returns its outcome once durable."""
        future: asyncio.Future[StepDone] = asyncio.get_running_loop().create_future()
        step_id = operation.step_id
        self._calls[step_id] = (operation, future)
        if isinstance(operation, Wait):
            self._waits.add(step_id)
        self.link.send(operation)
        self._update_idle()
        try:
            return await future
        finally:
            self._calls.pop(step_id, None)
            self._waits.discard(step_id)
            self._update_idle()

    def body_started(self) -> None:
        self._bodies += 1
        self.link.body_started()
        self._update_idle()

    def body_finished(self) -> None:
        self._bodies -= 1
        self.link.body_finished()
        self._stop_if_cancelled()

    async def back_off(self, seconds: float) -> None:
        """Waits between two attempts of a step; the execution is busy meanwhile, not idle."""
        self._bodies += 1
        self._update_idle()
        try:
            await asyncio.sleep(seconds)
        finally:
            self._bodies -= 1
            self._stop_if_cancelled()

    # --- idleness and suspension ----------------------------------------------------------

    def _update_idle(self) -> None:
        """Idle: blocked on open waits only (no step body, result or operation in flight)."""
        if not self._waits and not self._idle:
            return  # the common case, on every step: nothing to wait on, nothing to undo
        idle = (
            bool(self._waits)
            and not self.stopped
            and self.result is None
            and self._bodies == 0
            and not self.unacked
            and len(self._calls) == len(self._waits)
        )
        if idle == self._idle:
            return
        self._idle = idle
        if not idle:
            self._cancel_suspend()
            return
        self.link.send(Idle(self.workflow_id, self.epoch))
        after = self.link.suspend_after
        if after is not None:
            self._suspend_timer = asyncio.get_running_loop().call_later(after, self._suspend)

    def _cancel_suspend(self) -> None:
        if self._suspend_timer is not None:
            self._suspend_timer.cancel()
            self._suspend_timer = None

    def _suspend(self) -> None:
        self._suspend_timer = None
        if not self._idle or self.stopped:
            return
        self.link.send(Suspend(self.workflow_id, self.epoch, tuple(sorted(self._waits))))
        self._stop(Suspended("suspended while waiting"))
        self.link.suspended(self)

    def _stop(self, why: Abandoned) -> None:
        if self.stopped:
            return
        self.stopped = True
        self._cancel_suspend()
        if self.task is not None:
            self.task.cancel()
        if not self.outcome.done():
            self.outcome.set_exception(why)
            self.outcome.exception()  # retrieved: nobody may be waiting for it


async def run_step(
    ex: Execution, defn: StepDefinition, step_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """One step call inside a workflow. Its ID was taken when the workflow code called it."""
    recorded = ex.recorded.get(step_id)
    attempt = 1
    if recorded is not None:
        if recorded.step_name != defn.name:
            raise ex.nondeterminism(step_id, recorded.step_name, defn.name)
        if recorded.status is StepStatus.SUCCEEDED:
            assert recorded.output is not None
            return _serde.decode(recorded.output.data, recorded.output.encoding)
        if recorded.status is StepStatus.FAILED:
            assert recorded.error is not None
            raise _serde.rebuild(recorded.error)
        attempt = recorded.attempts + 1  # RUNNING: that attempt was interrupted
    if ex.stopped or ex.fatal is not None:
        ex.check_running()
    policy = defn.retry
    while True:
        if not ex.link.lease_current():
            await ex.link.lease_held()
            ex.check_running()
        ex.link.send(StepStart(ex.workflow_id, ex.epoch, step_id, defn.name, attempt))
        token = SCOPE.set(None)  # inside a step body, steps are plain calls
        step_token = STEP.set(StepContext(ex.workflow_id, step_id, defn.name, attempt))
        ex.body_started()
        try:
            with _tracing.step_span(defn.name, workflow_id=ex.workflow_id, step_id=step_id, attempt=attempt):
                if defn.timeout is not None:
                    value = await _timed(defn, args, kwargs, step_id, attempt)
                elif defn.is_coroutine:
                    value = await defn.fn(*args, **kwargs)
                else:
                    value = await asyncio.to_thread(defn.fn, *args, **kwargs)
            failure: Exception | None = None
        except Exception as exc:
            failure = exc
        finally:
            ex.body_finished()
            STEP.reset(step_token)
            SCOPE.reset(token)
        if failure is None:
            break
        if policy is not None and policy.retries(failure, attempt):
            log.info("step %s (%s) attempt %d failed: %r; retrying", step_id, defn.name, attempt, failure)
            await ex.back_off(policy.delay(attempt))
            attempt += 1
            continue
        await ex.record(step_id, defn.name, attempt, None, _serde.error_info(failure))
        raise failure
    try:
        data = _serde.encode(value, f"the result of step {defn.name!r}", ex.link.max_payload_bytes)
    except errors.SerializationError as exc:
        await ex.record(step_id, defn.name, attempt, None, _serde.error_info(exc))
        raise
    await ex.record(step_id, defn.name, attempt, data, None)
    # The workflow sees the value as a replay will: decoded from what was recorded.
    return _serde.decode(data)


async def _timed(
    defn: StepDefinition, args: tuple[Any, ...], kwargs: dict[str, Any], step_id: str, attempt: int
) -> Any:
    """Runs one attempt of a step body within its timeout: the attempt fails with
    TimeoutError when it runs out (a body in a thread keeps running in the background)."""
    assert defn.timeout is not None
    call = defn.fn(*args, **kwargs) if defn.is_coroutine else asyncio.to_thread(defn.fn, *args, **kwargs)
    try:
        return await asyncio.wait_for(call, defn.timeout)
    except TimeoutError:
        raise TimeoutError(
            f"step {defn.name!r} ({step_id}) attempt {attempt} timed out after {defn.timeout:g} s"
        ) from None


STEP_CODES.add(run_step.__code__)
