"""The Worker: what it serves, its lifecycle, and direct (in-process) workflow calls.

The stream to the coordinator is ``_session.py``'s; the executions and the coordinator's
answers about them are ``_dispatch.py``'s. The worker holds nothing recovery needs.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import secrets
import signal
import socket
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import grpc

from worker_sdk import _serde, _transport, errors
from worker_sdk._build import derive_version
from worker_sdk._context import WORKER, install_task_factory
from worker_sdk._decorators import Workflow
from worker_sdk._definitions import WorkflowDefinition
from worker_sdk._dispatch import Dispatch
from worker_sdk._execution import Abandoned
from worker_sdk._messages import Drain, StartResult, StartWorkflow
from worker_sdk._models import ErrorInfo, WorkflowStatus
from worker_sdk._session import Session

log = logging.getLogger("worker_sdk")


class Worker:
    """Runs the given workflows for the coordinator at ``address``.

    ``async with Worker(...)`` connects, registers and serves assignments until the block
    ends; inside it, calling a workflow function runs it durably in this process.

    ``capacity`` bounds the workflows running at once; one waiting on durable waits only
    (sleep, recv, get_event) does not count. After ``suspend_after`` seconds of such
    waiting it is suspended: given back to the coordinator, which keeps it in PostgreSQL
    and hands it out again (to any worker) when a wait ends. None keeps waiting workflows
    in memory for ever; 0 suspends them at once.
    """

    def __init__(
        self,
        address: str = "127.0.0.1:7420",
        *,
        workflows: Iterable[Workflow[Any, Any]],
        worker_id: str | None = None,
        capacity: int = 100,
        api_key: str | None = None,
        connect_timeout: float = 30.0,
        shutdown_grace: float = 10.0,
        suspend_after: float | None = 5.0,
        version: str | None = None,
        tls: _transport.TLS | None = None,
    ) -> None:
        self._definitions: dict[str, WorkflowDefinition] = {}
        for w in workflows:
            if not isinstance(w, Workflow):
                raise TypeError(f"{w!r} is not a @workflow function")
            if w.name in self._definitions and self._definitions[w.name] is not w.definition:
                raise ValueError(f"two workflows are named {w.name!r}")
            self._definitions[w.name] = w.definition
        if not self._definitions:
            raise ValueError("a Worker needs at least one workflow")
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        if suspend_after is not None and suspend_after < 0:
            raise ValueError("suspend_after must not be negative")
        self.address = address
        self.worker_id = (
            worker_id
            or os.environ.get("STEPLINE_WORKER_ID")
            or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        )
        self.capacity = capacity
        #: The build ID its runs are recorded under: ``version``, else STEPLINE_WORKER_VERSION,
        #: else one derived from the source of the modules defining its workflows.
        self.version = (
            version
            if version is not None
            else os.environ.get("STEPLINE_WORKER_VERSION") or derive_version(self._definitions.values())
        )
        self._api_key = _transport.api_key_or_env(api_key)
        self._tls = tls if tls is not None else _transport.TLS.from_env()
        self._connect_timeout = connect_timeout
        self.shutdown_grace = shutdown_grace
        self._dispatch = Dispatch(self, self._definitions, capacity, suspend_after)
        self._session: Session | None = None
        self._stopping = False
        self._channel: grpc.aio.Channel | None = None
        self._calls: _transport.ClientCalls | None = None
        self._uninstall: Callable[[], None] = _nothing
        self._token: contextvars.Token[Worker | None] | None = None

    def __repr__(self) -> str:
        return f"<Worker {self.worker_id} at {self.address}>"

    @property
    def running(self) -> int:
        """How many workflow executions run in this worker now."""
        return len(self._dispatch.tasks)

    @property
    def max_payload_bytes(self) -> int | None:
        """The coordinator's payload limit, once registered."""
        return self._dispatch.max_payload_bytes

    # --- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Worker:
        await self.start()
        self._token = WORKER.set(self)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._token is not None:
            WORKER.reset(self._token)
            self._token = None
        await self.stop()

    async def start(self) -> None:
        """Connects and registers; raises if the coordinator refuses or cannot be reached."""
        self._uninstall = install_task_factory(asyncio.get_running_loop())
        self._channel = _transport.channel(self.address, self._tls)
        self._calls = _transport.ClientCalls(self._channel, self._api_key)
        self._session = Session(
            self._channel,
            self._api_key,
            self.worker_id,
            self.address,
            self._dispatch.opening,
            self._dispatch.handle,
        )
        self._dispatch.session = self._session
        self._session.start()
        try:
            await asyncio.wait_for(self._session.registered.wait(), self._connect_timeout)
        except TimeoutError:
            await self.stop()
            raise errors.CoordinatorUnavailableError(
                f"could not register with the coordinator at {self.address} within {self._connect_timeout} s"
            ) from None
        if self._session.fatal is not None:
            await self.stop()
            raise self._session.fatal

    async def stop(self, grace: float | None = None) -> None:
        """Shuts down gracefully, then disconnects.

        The worker takes no more work and starts no more step bodies; step bodies already
        running get up to ``grace`` seconds (default ``shutdown_grace``) to finish and have
        their results made durable. Then the stream closes and the coordinator hands the
        executions to other workers at once, where they resume from their last recorded
        step.
        """
        if self._stopping:
            return
        session = self._session
        if session is not None:
            session.draining = True
            if session.registered.is_set() and session.fatal is None:
                session.send(Drain())
                grace = self.shutdown_grace if grace is None else grace
                try:
                    await asyncio.wait_for(self._dispatch.settle(), grace)
                except TimeoutError:
                    log.warning(
                        "worker %s: in-flight steps did not finish within %.1f s", self.worker_id, grace
                    )
        self._stopping = True
        if session is not None:
            await session.stop()
        await self._dispatch.cancel_all()
        if self._channel is not None:
            await self._channel.close()
        self._uninstall()

    async def serve_forever(self) -> None:
        """Serves assignments until SIGTERM or SIGINT (or cancellation).

        Leave the ``async with`` block afterwards and the worker shuts down gracefully.
        """
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        handled = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, stop.set)
                handled.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass  # not the main thread, or no signal support: run until cancelled
        try:
            await stop.wait()
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)

    # --- direct calls -----------------------------------------------------------------

    async def run_workflow(
        self, defn: WorkflowDefinition, args: tuple[Any, ...], kwargs: dict[str, Any], workflow_id: str | None
    ) -> Any:
        """Runs a workflow in this process, recorded centrally; returns or raises its outcome."""
        if self._definitions.get(defn.name) is not defn:
            raise errors.SteplineError(f"workflow {defn.name!r} is not one this Worker was given")
        data = _serde.encode_input(
            args, kwargs, f"the input of workflow {defn.name!r}", self.max_payload_bytes
        )
        request = StartWorkflow(uuid.uuid4().hex, defn.name, workflow_id or "", data)
        future: asyncio.Future[StartResult] = asyncio.get_running_loop().create_future()
        self._dispatch.starts[request.request_id] = (request, future)
        self._dispatch.send(request)
        result = await future
        if result.workflow is None:
            raise _transport.translate_code(result.error_code, result.error_message)
        info = result.workflow
        execution = self._dispatch.executions.get(info.workflow_id)
        if execution is not None:
            try:
                status, output, error = await asyncio.shield(execution.outcome)
            except Abandoned:
                pass  # taken over by another worker: its result arrives through the coordinator
            else:
                return _unwrap(
                    info.workflow_id, status, _serde.decode(output) if output is not None else None, error
                )
        while not info.status.done:
            assert self._calls is not None
            info, _ = await self._calls.await_workflow(info.workflow_id, 30.0)
        return _unwrap(info.workflow_id, info.status, info.output, info.error)


def _nothing() -> None:
    pass


def _unwrap(workflow_id: str, status: WorkflowStatus, output: Any, error: ErrorInfo | None) -> Any:
    """A direct call's outcome: the value, or the workflow's own error re-raised."""
    if status is WorkflowStatus.SUCCEEDED:
        return output
    if status in (WorkflowStatus.FAILED, WorkflowStatus.TIMED_OUT) and error is not None:
        raise _serde.rebuild(error)
    raise errors.WorkflowFailedError(
        workflow_id, error.type if error else status.value, error.message if error else status.value
    )
