"""Durable operations for workflow code: sleep, messages and events.

Each takes its step ID synchronously when the workflow code calls it, like a step (see
``_context.py``), and is recorded under that ID as a step of its own kind
("stepline.sleep", "stepline.recv", ...): on a replay a finished one returns its recorded
outcome without asking the coordinator, and one that was still waiting is asked for again
(the coordinator keeps its first wake time and timeout, so a sleep only sleeps what is
left). The coordinator carries them out and answers once the outcome is committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import datetime
from typing import Any

from worker_sdk import _serde, errors
from worker_sdk._context import SCOPE, STEP_CODES, Scope
from worker_sdk._execution import Execution
from worker_sdk._messages import Operation, Send, SetEvent, Wait, operation_kind
from worker_sdk._models import StepKind, StepStatus


def _scope(what: str, instead: str) -> Scope:
    scope = SCOPE.get()
    if scope is None:
        raise errors.NotInWorkflowError(f"{what} can only be called by workflow code; {instead}")
    return scope


def sleep(seconds: float) -> Coroutine[Any, Any, None]:
    """Sleeps durably: the wake time is recorded when the sleep first runs, so after a
    crash or a suspension only what is left is slept. Outside workflows it is asyncio.sleep."""
    if seconds < 0:
        raise ValueError("cannot sleep for a negative time")
    scope = SCOPE.get()
    if scope is None:
        return asyncio.sleep(seconds)
    op = Wait(scope.execution.workflow_id, scope.execution.epoch, scope.next_step_id(), StepKind.SLEEP)
    op.seconds = float(seconds)
    return _nothing(_operate(scope.execution, op))


def sleep_until(when: datetime) -> Coroutine[Any, Any, None]:
    """Sleeps durably until ``when`` (an aware datetime)."""
    if when.tzinfo is None:
        raise ValueError("sleep_until needs an aware datetime (with a tzinfo), such as datetime.now(UTC)")
    scope = _scope("sleep_until", "use asyncio.sleep elsewhere")
    op = Wait(scope.execution.workflow_id, scope.execution.epoch, scope.next_step_id(), StepKind.SLEEP)
    op.until = when
    return _nothing(_operate(scope.execution, op))


def recv(topic: str | None = None, timeout: float | None = None) -> Coroutine[Any, Any, Any]:
    """Takes the oldest unread message of ``topic`` sent to this workflow, waiting for one
    up to ``timeout`` seconds (None: for ever). Returns the message, or None on timeout.

    Messages sent before the recv is reached are kept for it. Each message is received
    once: it is marked read in the transaction that records it as this call's outcome.
    """
    scope = _scope("recv", "a client cannot receive a workflow's messages")
    op = Wait(scope.execution.workflow_id, scope.execution.epoch, scope.next_step_id(), StepKind.RECV)
    op.topic, op.timeout = topic or "", _timeout(timeout)
    return _value(_operate(scope.execution, op))


def send(
    workflow_id: str, message: Any, topic: str | None = None, idempotency_key: str | None = None
) -> Coroutine[Any, Any, None]:
    """Sends ``message`` to a workflow's mailbox, exactly once (a recorded operation of this
    workflow). Raises WorkflowNotFoundError or WorkflowFinishedError (recorded, so a replay
    raises them again) if there is no such workflow or it has finished."""
    scope = _scope("send", "use Client.send outside workflows")
    ex = scope.execution
    data = _serde.encode(message, f"the message to workflow {workflow_id!r}", ex.link.max_payload_bytes)
    op = Send(
        ex.workflow_id, ex.epoch, scope.next_step_id(), workflow_id, topic or "", data, idempotency_key or ""
    )
    return _nothing(_operate(ex, op))


def set_event(key: str, value: Any) -> Coroutine[Any, Any, None]:
    """Sets one of this workflow's events (the latest value wins); ``get_event`` callers,
    clients and workflows alike, see it at once."""
    scope = _scope("set_event", "only a workflow sets its events")
    ex = scope.execution
    data = _serde.encode(value, f"the value of event {key!r}", ex.link.max_payload_bytes)
    return _nothing(_operate(ex, SetEvent(ex.workflow_id, ex.epoch, scope.next_step_id(), key, data)))


def get_event(workflow_id: str, key: str, timeout: float | None = 60.0) -> Coroutine[Any, Any, Any]:
    """The value of another workflow's event, waiting up to ``timeout`` seconds (None: for
    ever) for it to be set; None if it was not. Recorded: a replay returns the same value."""
    scope = _scope("get_event", "use Client.get_event outside workflows")
    op = Wait(scope.execution.workflow_id, scope.execution.epoch, scope.next_step_id(), StepKind.GET_EVENT)
    op.target, op.topic, op.timeout = workflow_id, key, _timeout(timeout)
    return _value(_operate(scope.execution, op))


def _timeout(timeout: float | None) -> float | None:
    if timeout is not None and timeout < 0:
        raise ValueError("a timeout must not be negative")
    return timeout


async def _operate(ex: Execution, op: Operation) -> tuple[Any, bool]:
    """Runs (or replays) one operation; returns its decoded output and whether it timed out."""
    kind = operation_kind(op)
    recorded = ex.recorded.get(op.step_id)
    if recorded is not None:
        if recorded.step_name != kind.step_name:
            raise ex.nondeterminism(op.step_id, recorded.step_name, kind.step_name)
        if recorded.status is StepStatus.SUCCEEDED:
            output = recorded.output
            return (_serde.decode(output.data, output.encoding) if output else None), recorded.timed_out
        if recorded.status is StepStatus.FAILED:
            assert recorded.error is not None
            raise _serde.rebuild(recorded.error)
        # WAITING: the wait goes on; the coordinator kept its condition.
    ex.check_running()
    done = await ex.call(op)
    if done.error is not None:
        raise _serde.rebuild(done.error)
    value = _serde.decode(done.output.data, done.output.encoding) if done.output is not None else None
    return value, done.timed_out


async def _nothing(operation: Coroutine[Any, Any, tuple[Any, bool]]) -> None:
    await operation


async def _value(operation: Coroutine[Any, Any, tuple[Any, bool]]) -> Any:
    value, timed_out = await operation
    return None if timed_out else value


# Tasks that wrap one of these calls take no scope of their own (as for steps).
STEP_CODES.update({_operate.__code__, _nothing.__code__, _value.__code__})
