"""The worker's session with the coordinator: one stream at a time, kept open.

It registers (with what the worker still holds and everything not yet acknowledged),
reconnects with jittered backoff when the stream breaks, sends a heartbeat every
``heartbeat_interval_ms``, and keeps the lease deadline: how long this worker may start
step bodies without hearing from the coordinator. Everything queued in one event-loop
turn leaves as one frame (split only to stay within the coordinator's message limit).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

import grpc

from worker_sdk import _transport, errors
from worker_sdk._messages import (
    Heartbeat,
    HeartbeatAck,
    Incoming,
    Limits,
    Outgoing,
    Register,
    Registered,
    StepResult,
    StepStart,
)

log = logging.getLogger("worker_sdk")

# Errors on which reconnecting cannot help while nothing changes on the coordinator side.
_FATAL_CODES = (
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
)


class Session:
    """Keeps a registered stream to the coordinator and everything that depends on it."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        api_key: str | None,
        worker_id: str,
        address: str,
        opening: Callable[[], tuple[Register, list[Outgoing]]],
        handle: Callable[[list[Incoming]], None],
    ) -> None:
        self._channel = channel
        self._api_key = api_key
        self.worker_id = worker_id
        self._address = address
        # What to send first on every stream: Register, then everything to resend.
        self._opening = opening
        self._handle = handle
        self.limits: Limits | None = None
        self.registered = asyncio.Event()
        self.fatal: errors.SteplineError | None = None
        # Set when the worker drains: no step body may start any more.
        self.draining = False
        self._outbox: list[Outgoing] = []
        self._wake = asyncio.Event()
        self._lease = 3.0
        self._heartbeat_every = 1.0
        self._lease_deadline = 0.0
        self._lease_renewed = asyncio.Event()
        self._heartbeats_sent: dict[int, float] = {}
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._maintain(), name=f"stepline-worker-{self.worker_id}")

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def send(self, event: Outgoing) -> None:
        """Queues an event; what is queued in one event-loop turn leaves as one frame."""
        if not self._outbox:
            self._wake.set()
        self._outbox.append(event)

    # --- the lease ----------------------------------------------------------------------

    def lease_current(self) -> bool:
        """Whether a step body may start right now (no await on the common path)."""
        return not self.draining and time.monotonic() < self._lease_deadline

    async def lease_held(self) -> None:
        """Returns at once while the lease is current; otherwise waits until it is renewed.

        The deadline counts from when the last acknowledged heartbeat was *sent*, so it
        never runs past the coordinator's own view of the lease: a worker cut off from the
        coordinator stops starting step bodies before its work can be handed to another.
        """
        while self.draining or time.monotonic() >= self._lease_deadline:
            self._lease_renewed.clear()
            await self._lease_renewed.wait()

    def _renew_lease(self, sent_at: float) -> None:
        deadline = sent_at + self._lease
        if deadline > self._lease_deadline:
            self._lease_deadline = deadline
            self._lease_renewed.set()

    def heartbeat_acked(self, ev: HeartbeatAck) -> None:
        sent_at = self._heartbeats_sent.pop(ev.sequence, None)
        if sent_at is not None:
            self._renew_lease(sent_at)
        for stale in [s for s in self._heartbeats_sent if s < ev.sequence]:
            del self._heartbeats_sent[stale]

    # --- the stream ---------------------------------------------------------------------

    async def _maintain(self) -> None:
        """Keeps a session open, reconnecting with jittered backoff."""
        delay = 0.05
        while not self._stopping:
            stream = _transport.WorkerStream(self._channel, self._api_key)
            if self.limits is not None:
                stream.max_message_bytes = self.limits.max_message_bytes
            try:
                if await self._session(stream):
                    delay = 0.05
            except grpc.aio.AioRpcError as exc:
                error = _transport.translate(exc)
                if exc.code() in _FATAL_CODES and not self.registered.is_set():
                    self.fatal = error
                    self.registered.set()
                    return
                log.warning("worker %s: stream to %s ended: %s", self.worker_id, self._address, error)
            finally:
                stream.cancel()
            if self._stopping:
                return
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 2.0)

    async def _session(self, stream: _transport.WorkerStream) -> bool:
        """One stream, from Register to its end. Returns whether it registered."""
        register, resend = self._opening()
        # Everything not yet acknowledged goes right after Register: the coordinator
        # re-attaches what is still ours and then takes these results, and refuses
        # (fenced by epoch) those of executions that were reassigned meanwhile.
        sent_at = time.monotonic()
        await stream.send([register, *resend])
        first = await stream.receive()
        if not first or not isinstance(first[0], Registered):
            return False
        registered = first[0]
        self._lease = registered.lease_ms / 1000
        self._heartbeat_every = registered.heartbeat_interval_ms / 1000
        self.limits = registered.limits
        stream.max_message_bytes = registered.limits.max_message_bytes
        self._renew_lease(sent_at)
        self.registered.set()
        log.info("worker %s registered (session %s)", self.worker_id, registered.session_id[:8])
        writer = asyncio.create_task(self._write(stream))
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            self._handle(first[1:])
            while (events := await stream.receive()) is not None:
                self._handle(events)
        finally:
            writer.cancel()
            heartbeat.cancel()
            await asyncio.gather(writer, heartbeat, return_exceptions=True)
        return True

    async def _write(self, stream: _transport.WorkerStream) -> None:
        while True:
            while not self._outbox:
                self._wake.clear()
                await self._wake.wait()
            events, self._outbox = self._outbox, []
            await stream.send(_without_covered_starts(events))

    async def _heartbeat(self) -> None:
        sequence = 0
        while True:
            await asyncio.sleep(self._heartbeat_every)
            sequence += 1
            self._heartbeats_sent[sequence] = time.monotonic()
            self.send(Heartbeat(sequence))


def _without_covered_starts(events: list[Outgoing]) -> list[Outgoing]:
    """Drops the StepStart of a step whose result leaves in the same frame: the result says
    all the start would have, and the coordinator writes the step once instead of twice."""
    finished = {(e.workflow_id, e.step_id) for e in events if type(e) is StepResult}
    if not finished:
        return events
    return [e for e in events if type(e) is not StepStart or (e.workflow_id, e.step_id) not in finished]
