"""Wake-ups between coordinators on one database: PostgreSQL LISTEN/NOTIFY, as hints only.

A coordinator that commits something another coordinator may have to act on (a wait of a
workflow held there ended, suspended workflows became ready, an event was set, a
workflow finished that callers there wait for) publishes a hint, in the same transaction
where it can, so that it is delivered only if the change committed. (Timers need none: the
coordinator that records one fires it, and any other finds it in its next resync.)

Hints can be lost (a LISTEN connection that drops misses what was sent meanwhile: DBOS
lost wake-ups this way, dbos-transact-py #562), so nothing depends on them alone: after
every reconnect, and every ``sweep`` seconds, the coordinator re-checks what a lost hint
could have told it (``resync``).

Payloads are JSON: {"from": coordinator_id, "kind": ..., "items": [...]}; a coordinator
ignores its own (it acted when it committed). Functions in PostgreSQL publish some too, in
the same form: the end of awaited workflows (``migrations/0006_children.sql``) and the
wake-ups of clients' sends (``migrations/0011_sends.sql``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from coordinator.errors import CoordinatorError
from coordinator.store import database
from coordinator.store.database import Connection

log = logging.getLogger(__name__)

CHANNEL = "stepline"
# PostgreSQL refuses payloads of 8000 bytes or more.
_MAX_PAYLOAD = 7000

WAKE = "wake"  # items: [workflow_id, step_id] of waits that ended
READY = "ready"  # items: workflow names with workflows newly ready
EVENT = "event"  # items: [workflow_id, key] of events set
DONE = "done"  # items: workflow IDs that finished (timed out, or awaited elsewhere)
INTEREST = "interest"  # items: workflow IDs that callers here wait for
CANCELLED = "cancelled"  # items: workflow IDs cancelled (their executions must stop)

Handler = Callable[[list[Any]], None]


def payloads(coordinator_id: str, kind: str, items: Sequence[Any]) -> list[str]:
    """The hint as NOTIFY payloads, split to stay under PostgreSQL's size limit."""
    out: list[str] = []
    chunk: list[Any] = []
    size = 0
    for item in items:
        encoded = len(json.dumps(item))
        if chunk and size + encoded > _MAX_PAYLOAD:
            out.append(json.dumps({"from": coordinator_id, "kind": kind, "items": chunk}))
            chunk, size = [], 0
        chunk.append(item)
        size += encoded + 1
    if chunk:
        out.append(json.dumps({"from": coordinator_id, "kind": kind, "items": chunk}))
    return out


class Hints:
    def __init__(self, url: str, coordinator_id: str, sweep_seconds: float) -> None:
        self._url = url
        self.coordinator_id = coordinator_id
        self._sweep = sweep_seconds
        self._handlers: dict[str, Handler] = {}
        self._resync: list[Callable[[], Any]] = []
        self.received = 0

    def on(self, kind: str, handler: Handler) -> None:
        """Calls ``handler`` with the items of every hint of ``kind`` from another coordinator."""
        self._handlers[kind] = handler

    def on_resync(self, check: Callable[[], Any]) -> None:
        """Calls ``check`` (a function or coroutine function) after every (re)connect and
        every sweep: it re-checks whatever a lost hint could have said."""
        self._resync.append(check)

    async def publish(self, conn: Connection, kind: str, items: Iterable[Any]) -> None:
        """Sends a hint in the caller's transaction: delivered only if it commits."""
        for payload in payloads(self.coordinator_id, kind, list(items)):
            await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)

    def start(self) -> list[asyncio.Task[None]]:
        return [asyncio.create_task(self._listen(), name="hints")]

    def _received(self, payload: str) -> None:
        try:
            hint = json.loads(payload)
            if hint.get("from") == self.coordinator_id:
                return
            handler = self._handlers.get(hint.get("kind"))
            if handler is not None:
                self.received += 1
                handler(list(hint.get("items", ())))
        except Exception:
            log.exception("could not act on hint %r", payload[:200])

    async def resync(self) -> None:
        for check in self._resync:
            try:
                result = check()
                if asyncio.iscoroutine(result):
                    await result
            except CoordinatorError as exc:
                log.info("re-check after a possible lost hint failed (tried again later): %s", exc)
            except Exception:
                log.exception("re-check after a possible lost hint failed")

    async def _listen(self) -> None:
        delay = 0.05
        while True:
            try:
                listening = await database.listen(self._url, CHANNEL, self._received)
            except CoordinatorError as exc:
                log.warning("cannot LISTEN for hints (retrying): %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            delay = 0.05
            try:
                # Whatever was sent while no one listened is looked for now.
                await self.resync()
                while not listening.lost.is_set():
                    try:
                        await asyncio.wait_for(listening.lost.wait(), self._sweep)
                    except TimeoutError:
                        await listening.ping()
                        await self.resync()
            except CoordinatorError as exc:
                log.warning("LISTEN connection lost: %s", exc)
            finally:
                listening.close()
