"""Recording new workflows, in batches, and handing each to a worker in the same write.

A start picks its worker before the insert when one serving the name has room (and no
older workflow of that name is waiting), so a new workflow is recorded RUNNING with its
owner and epoch 1 in one write, and its Assignment goes out right after the commit.
Otherwise it is recorded ENQUEUED and the dispatcher takes over.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from coordinator import tracing
from coordinator.batcher import Batcher
from coordinator.dispatch import Dispatcher, load_history
from coordinator.errors import AlreadyExists, CoordinatorError
from coordinator.models import StartRequest, StartResult, StepRecord, WorkflowRecord
from coordinator.ownership import Ownership
from coordinator.sessions import Session, Sessions
from coordinator.stats import Stats
from coordinator.store import workflows
from coordinator.store.database import Database
from coordinator.timers import Timers


@dataclass(slots=True)
class PendingStart:
    request: StartRequest
    # Set for an in-process start: the worker that asked runs the workflow.
    session: Session | None
    # Set for a client start.
    future: asyncio.Future[tuple[WorkflowRecord, bool]] | None


class Starter:
    def __init__(
        self,
        db: Database,
        sessions: Sessions,
        ownership: Ownership,
        dispatcher: Dispatcher,
        max_recovery_attempts: int,
        timers: Timers,
        *,
        stats: Stats | None = None,
    ) -> None:
        self._db = db
        self._stats = stats if stats is not None else Stats()
        self._sessions = sessions
        self._ownership = ownership
        self._dispatcher = dispatcher
        self._max_recovery_attempts = max_recovery_attempts
        # Deadlines are recorded with their workflows; this coordinator fires them (another
        # one, should this one die, finds them in its next resync).
        self._timers = timers
        self.batcher: Batcher[PendingStart] = Batcher(
            "starts", self._flush, self._fail, max_batch=1000, stats=self._stats.batcher("starts")
        )

    async def start(self, request: StartRequest) -> tuple[WorkflowRecord, bool]:
        """Records a workflow for a client; returns it and whether this call created it."""
        [outcome] = await self.start_many([request])
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def start_many(
        self, requests: list[StartRequest]
    ) -> list[tuple[WorkflowRecord, bool] | BaseException]:
        """Records workflows for a client, in the same batch; one outcome per request."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[tuple[WorkflowRecord, bool]]] = []
        for request in requests:
            future: asyncio.Future[tuple[WorkflowRecord, bool]] = loop.create_future()
            futures.append(future)
            self.batcher.add(PendingStart(_with_id(request), None, future))
        return await asyncio.gather(*futures, return_exceptions=True)

    def start_local(self, session: Session, request: StartRequest) -> None:
        """Records a workflow that ``session``'s worker runs itself; answers on its stream."""
        self.batcher.add(PendingStart(_with_id(request), session, None))

    def _pick(self, name: str, planned: Counter[Session]) -> Session | None:
        if self._dispatcher.has_backlog(name):
            return None  # older workflows of this name wait; do not overtake them
        best: Session | None = None
        best_room = 0
        for s in self._sessions:
            room = self._ownership.free_slots(s) - planned[s]
            if name in s.names and room > best_room:
                best, best_room = s, room
        return best

    async def _flush(self, items: list[PendingStart]) -> None:
        now = datetime.now(UTC)
        first: dict[str, PendingStart] = {}
        for item in items:
            first.setdefault(item.request.workflow_id, item)
        planned: Counter[Session] = Counter()
        owners: dict[str, Session] = {}
        new = []
        # A start whose caller traces gets a span of ours; its context is the workflow's.
        spans = contextlib.AsyncExitStack()
        for workflow_id, item in first.items():
            trace_context = item.request.traceparent
            if trace_context:
                trace_context = spans.enter_context(
                    tracing.start_span(
                        f"stepline.start {item.request.name}", trace_context, workflow_id=workflow_id
                    )
                )
            owner = item.session if item.session is not None else self._pick(item.request.name, planned)
            if owner is not None:
                planned[owner] += 1
                owners[workflow_id] = owner
            new.append(
                workflows.NewWorkflow(
                    workflow_id,
                    item.request.name,
                    item.request.input,
                    owner.worker_id if owner else None,
                    now,
                    _deadline(item.request, now),
                    (owner.version or None) if owner else None,
                    trace_context,
                )
            )
        claims: dict[Session, list[str]] = defaultdict(list)
        # No transaction around these: the insert is one statement, and what follows only
        # reads committed rows or claims (each claim a statement of its own).
        async with spans, self._db.connection() as conn:
            inserted = {r.workflow_id: r for r in await workflows.insert(conn, new)}
            self._stats.workflows_started += len(inserted)
            missing = [i for i in first if i not in inserted]
            existing = await workflows.get_many(conn, missing) if missing else {}
            # An in-process start of a workflow that exists but waits for a worker: this
            # worker takes it (under a new epoch, with its history).
            for workflow_id in missing:
                item, found = first[workflow_id], existing[workflow_id]
                if item.session is not None and found.name == item.request.name and found.ready:
                    claims[item.session].append(workflow_id)
            claimed: dict[Session, list[WorkflowRecord]] = {}
            history: dict[int, list[StepRecord]] = {}
            for session, ids in claims.items():
                claimed[session] = await workflows.claim_ids(
                    conn, ids, session.claimant, self._max_recovery_attempts
                )
                history.update(await load_history(conn, claimed[session]))
        for session, records in claimed.items():
            for r in records:
                existing[r.workflow_id] = r
            await self._dispatcher.deliver(session, records, history)
        deadlines = [r.deadline_at for r in inserted.values() if r.deadline_at is not None]
        if deadlines:
            self._timers.schedule(min(deadlines))
        await self._deliver_new(inserted, owners)
        for item in items:
            workflow_id = item.request.workflow_id
            created = workflow_id in inserted and first[workflow_id] is item
            record = inserted.get(workflow_id) or existing[workflow_id]
            if record.name != item.request.name:
                self._answer(
                    item,
                    AlreadyExists(
                        f"workflow ID {workflow_id!r} already belongs to workflow {record.name!r}, "
                        f"not {item.request.name!r}"
                    ),
                )
            else:
                self._answer(item, (record, created))

    async def _deliver_new(self, inserted: dict[str, WorkflowRecord], owners: dict[str, Session]) -> None:
        unowned = [r.name for i, r in inserted.items() if i not in owners]
        by_owner: dict[Session, list[WorkflowRecord]] = defaultdict(list)
        for workflow_id, session in owners.items():
            if workflow_id in inserted:
                by_owner[session].append(inserted[workflow_id])
        for session, records in by_owner.items():
            await self._dispatcher.deliver(session, records, {})
        if unowned:
            self._dispatcher.announce(unowned)

    def _answer(self, item: PendingStart, outcome: tuple[WorkflowRecord, bool] | CoordinatorError) -> None:
        if item.future is not None:
            if not item.future.done():
                if isinstance(outcome, CoordinatorError):
                    item.future.set_exception(outcome)
                else:
                    item.future.set_result(outcome)
        elif item.session is not None:
            if isinstance(outcome, CoordinatorError):
                item.session.send(StartResult(item.request.request_id, None, False, outcome))
            else:
                item.session.send(StartResult(item.request.request_id, outcome[0], outcome[1]))

    def _fail(self, items: list[PendingStart], error: CoordinatorError) -> None:
        for item in items:
            self._answer(item, error)


def _with_id(request: StartRequest) -> StartRequest:
    if request.workflow_id:
        return request
    return dataclasses.replace(request, workflow_id=new_workflow_id())


def _deadline(request: StartRequest, now: datetime) -> datetime | None:
    """When the workflow times out: the earlier of its timeout (from now) and its deadline."""
    candidates = [request.deadline] if request.deadline is not None else []
    if request.timeout is not None:
        candidates.append(now + timedelta(seconds=request.timeout))
    return min(candidates, default=None)


def new_workflow_id() -> str:
    """A time-ordered UUID (version 7, RFC 9562): milliseconds since the epoch, then random.

    IDs the coordinator makes up grow with time, so new rows land at the right edge of the
    workflows primary key instead of on random pages of it: the pages the hot path touches
    stay few and cached however large the table grows.
    """
    value = (time.time_ns() // 1_000_000) << 80 | secrets.randbits(80)
    value = value & ~(0xF << 76) | 0x7 << 76  # version 7
    value = value & ~(0x3 << 62) | 0x2 << 62  # RFC 9562 variant
    return str(uuid.UUID(int=value))
