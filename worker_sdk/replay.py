"""Replay check: does new workflow code still replay the histories the coordinator holds?

``check`` fetches recorded workflows and replays each in this process against the given
workflow functions, without running a step body or asking the coordinator for anything:
recorded steps return their records, and the replay stops at the first step the history
does not have (the frontier). A workflow is compatible when its replay reaches the
frontier, or the end, having called exactly the recorded steps; it diverges at the first
step whose recorded name differs from the one the code calls now, or that the code no
longer calls. ``stepline replay-check`` is the command line around it.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from worker_sdk import _serde, errors
from worker_sdk._client import Client
from worker_sdk._context import install_task_factory
from worker_sdk._decorators import Workflow
from worker_sdk._execution import Execution
from worker_sdk._messages import Assignment, Outgoing, RecordedStep, StepStart, WorkflowResult
from worker_sdk._models import Payload, StepInfo, WorkflowInfo


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the replay of one recorded workflow found."""

    workflow_id: str
    workflow_name: str
    compatible: bool
    # Where it diverged: the step ID, the name recorded there, and what the code calls
    # now (None: the code no longer calls it).
    step_id: str | None = None
    recorded: str | None = None
    called: str | None = None

    def __str__(self) -> str:
        if self.compatible:
            return f"compatible  {self.workflow_id} ({self.workflow_name})"
        now = repr(self.called) if self.called is not None else "nothing"
        return (
            f"DIVERGES    {self.workflow_id} ({self.workflow_name}) at step {self.step_id}: "
            f"recorded {self.recorded!r}, the code now calls {now}"
        )


class _Seen(dict[str, RecordedStep]):
    """The recorded steps, noting which ones the replay asked for."""

    def __init__(self, steps: Iterable[tuple[str, RecordedStep]]) -> None:
        super().__init__(steps)
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)


class _ReplayLink:
    """Stands in for a worker: anything that would reach the coordinator (a step body
    about to run, an operation not recorded) is the frontier, where the replay stops."""

    max_payload_bytes: int | None = None
    suspend_after: float | None = None

    def __init__(self) -> None:
        self.execution: Execution | None = None
        self.frontier = False

    def send(self, event: Outgoing) -> None:
        if isinstance(event, WorkflowResult):
            return
        if not isinstance(event, StepStart):  # an operation the history does not hold
            self._stop()

    def lease_current(self) -> bool:
        return False  # asked just before a step body would run: never, here

    async def lease_held(self) -> None:
        self._stop()
        raise asyncio.CancelledError

    def _stop(self) -> None:
        self.frontier = True
        if self.execution is not None:
            self.execution.abandon("replay check: the history ends here")

    def body_started(self) -> None: ...
    def body_finished(self) -> None: ...
    def progressed(self) -> None: ...
    def suspended(self, execution: Execution) -> None: ...


async def replay(workflow: Workflow[Any, Any], info: WorkflowInfo, steps: Sequence[StepInfo]) -> Verdict:
    """Replays one recorded workflow against ``workflow``'s code."""
    recorded = [_recorded(s) for s in steps]
    data = _serde.encode(info.input if info.input is not None else {"args": [], "kwargs": {}}, "input")
    assignment = Assignment(info.workflow_id, info.workflow_name, 2, Payload(data), tuple(recorded), 0)
    loop = asyncio.get_running_loop()
    uninstall = install_task_factory(loop)
    link = _ReplayLink()
    execution = Execution(assignment, workflow.definition, link)
    seen = _Seen((s.step_id, s) for s in recorded)
    execution.recorded = seen
    link.execution = execution
    try:
        execution.task = loop.create_task(execution.run(), context=contextvars.Context())
        await asyncio.gather(execution.task, return_exceptions=True)
    finally:
        uninstall()
    diverges = functools.partial(Verdict, info.workflow_id, info.workflow_name, False)
    fatal = execution.fatal
    if isinstance(fatal, errors.NonDeterminismError):
        return diverges(fatal.step_id, fatal.recorded_name, fatal.called_name)
    if link.frontier and info.status.value in ("SUCCEEDED", "FAILED"):
        # The run's code had returned or raised; new code that does more is another path.
        return diverges("(after the last)", None, "a step the run never made")
    if not link.frontier:
        missed = [s for s in recorded if s.step_id not in seen.asked]
        if missed:
            return diverges(missed[0].step_id, missed[0].step_name, None)
    return Verdict(info.workflow_id, info.workflow_name, True)


def _recorded(s: StepInfo) -> RecordedStep:
    output = Payload(_serde.encode(s.output, "a recorded output")) if s.error is None else None
    return RecordedStep(s.step_id, s.step_name, s.status, output, s.error, s.attempts, s.kind, s.timed_out)


async def check(
    client: Client,
    workflows: Sequence[Workflow[Any, Any]],
    *,
    name: str | None = None,
    since: datetime | None = None,
    limit: int | None = None,
) -> tuple[list[Verdict], list[WorkflowInfo]]:
    """Replays the recorded workflows (newest first; of ``name`` only, created after
    ``since``, at most ``limit``) whose names ``workflows`` serve. Returns the verdicts,
    and the workflows skipped because no function here serves their name."""
    by_name = {w.name: w for w in workflows}
    verdicts: list[Verdict] = []
    skipped: list[WorkflowInfo] = []
    filters: dict[str, Any] = {"include_payloads": True, "descending": True}
    if name is not None:
        filters["name"] = name
    if since is not None:
        filters["created_after"] = since
    async for info in client.iter_workflows(**filters):
        if limit is not None and len(verdicts) + len(skipped) >= limit:
            break
        workflow = by_name.get(info.workflow_name)
        if workflow is None:
            skipped.append(info)
            continue
        verdicts.append(await replay(workflow, info, await client.list_steps(info.workflow_id)))
    return verdicts, skipped
