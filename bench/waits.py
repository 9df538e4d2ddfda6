"""The durable-wait workloads (g), (h), (i), for class Bench (``bench/workloads.py``).

(g) send → recv wake-up latency, of a workflow waiting in memory and of one suspended;
(h) many workflows in a durable sleep: how late they wake, and the CPU spent meanwhile;
(i) memory with many suspended workflows (DBOS, which cannot suspend: blocked in recv).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench import floor
from bench.report import Target, count, number
from bench.resources import CpuMeter
from bench.stats import median, percentile
from bench.stepline_side import RECV_SETTLE, Stepline
from bench.system import MarksWatch, System

if TYPE_CHECKING:
    from bench.postgres import Postgres
    from bench.report import Results
    from bench.workloads import Sizes

log = logging.getLogger("bench")

# (h): the CPU window closes this long before the first workflow is due to wake, and is
# not measured at all when it would be shorter than the minimum.
WAKE_MARGIN = 0.1
MIN_WINDOW = 0.5
# (h) and (i): "near idle" and "flat", as figures.
IDLE_CPU = Target("<=", 0.05, "CPU s/s")
FLAT_RSS = Target("<=", 10, "MB")


class WaitWorkloads:
    """Mixed into Bench, which provides the attributes and the two methods declared here."""

    systems: list[System]
    sizes: Sizes
    pg: Postgres
    out_dir: Path
    results: Results

    if TYPE_CHECKING:

        def _set(
            self,
            system: System,
            workload: str,
            unit: str,
            value: float,
            *,
            lower_is_better: bool = True,
            target: Target | None = None,
            note: str = "",
        ) -> None: ...

        def _detail(self, system: System, text: str) -> None: ...

    def _unmeasured(self, system: System, workload: str, unit: str, why: str, target: Target | None) -> None:
        """A row left without ``system``'s figure, saying why."""
        row = self.results.row(workload, unit, lower_is_better=True, target=target)
        if system.label == "DBOS":
            row.dbos_note = why
        else:
            row.stepline_note = why

    def _marks_dir(self) -> Path:
        marks = self.out_dir / "marks"
        marks.mkdir(exist_ok=True)
        return marks

    # --- (g) send → recv ------------------------------------------------------------------

    async def workload_g(self) -> None:
        s = self.sizes
        cases = (
            ("in memory", f"an in-memory workflow ({s.wake_messages} messages)", 2.0),
            ("suspended", f"a suspended workflow ({s.wake_fresh} workflows)", 10.0),
        )
        for system in self.systems:
            await self.pg.settle()
            found = await system.wakeups(s.wake_messages, s.wake_fresh, self._marks_dir())
            for case, what, target in cases:
                label = f"(g) send → recv wake-up of {what}"
                if case not in found:
                    self._unmeasured(
                        system, f"{label}, p50", "ms", "no suspension", Target("<=", target, "ms")
                    )
                    self._unmeasured(system, f"{label}, p99", "ms", "no suspension", None)
                    continue
                ms = [x * 1000 for x in found[case]]
                self._set(system, f"{label}, p50", "ms", median(ms), target=Target("<=", target, "ms"))
                self._set(system, f"{label}, p99", "ms", percentile(ms, 99))
                self._detail(
                    system,
                    f"(g) {case}: {len(ms)} send → recv latencies: min {number(min(ms))} ms, "
                    f"mean {number(sum(ms) / len(ms))} ms, max {number(max(ms))} ms",
                )
            if isinstance(system, Stepline):
                await self._floor(system)

    async def _floor(self, system: Stepline) -> None:
        """(g)'s parts on this machine, bare, after the idle before each in-memory send."""
        n = self.sizes.wake_messages
        parts = {}
        for idle in (RECV_SETTLE, 0.0):
            insert = median(await floor.insert_after_idle(system.url, n, idle))
            rpc = median(await floor.grpc_after_idle(system.address, n, idle))
            parts[idle] = (
                f"a committed one-row INSERT {number(insert)} ms, a gRPC round trip {number(rpc)} ms"
            )
        self._detail(
            system,
            f"(g) this machine's floor, p50 of {n} each: after {RECV_SETTLE * 1000:g} ms idle (as before "
            f"each in-memory send) {parts[RECV_SETTLE]}; back to back {parts[0.0]}. A send → recv "
            "takes two gRPC hops and one commit",
        )

    # --- (h) durable sleep ----------------------------------------------------------------

    async def workload_h(self) -> None:
        for system in self.systems:
            seconds = self.sizes.sleep_seconds
            watch, cpu, why_not, waited = await self._sleepers(system, seconds)
            self._lateness_figures(system, watch, waited, seconds)
            if not cpu:
                # Not all were ever asleep at once: the starts took longer than the sleep.
                # CPU is measured in a second run whose sleep outlasts the starts.
                spread = _spread(watch)
                longer = float(math.ceil(1.5 * spread + 2 * MIN_WINDOW + seconds))
                self._detail(system, f"(h) {why_not}; CPU measured in a second run sleeping {longer:g} s")
                _, cpu, why_not, _ = await self._sleepers(system, longer)
            self._cpu_figures(system, cpu, why_not)

    async def _sleepers(
        self, system: System, seconds: float
    ) -> tuple[MarksWatch, dict[str, float], str, float]:
        """One run of ``sizes.sleepers`` workflows sleeping ``seconds``: their marks, and
        the CPU per second of every role while all were asleep (empty if never)."""
        n = self.sizes.sleepers
        waited = await self.pg.settle()
        marks = self._marks_dir() / f"{system.label.lower()}-naps-{seconds:g}.marks"
        watch = MarksWatch(marks)
        meter = CpuMeter({**system.cpu_groups(), "postgres": self.pg.pids})
        cpu: dict[str, float] = {}  # CPU s/s by role, and the window's length
        why_not = ""

        async def asleep() -> None:
            """Once all have called sleep: CPU until just before the first is due to wake."""
            nonlocal why_not
            await watch.wait("sleep", n, timeout=300, interval=0.02)
            first = min(m.at for m in watch.marks["sleep"])
            end = first + seconds - WAKE_MARGIN
            if watch.marks["woke"] or end - time.time() < MIN_WINDOW:
                why_not = (
                    f"n/a: never all asleep at once (they called sleep over {_spread(watch):.1f} s, "
                    f"longer than the {seconds:g} s sleep)"
                )
                return
            meter.start()
            started = time.monotonic()
            await asyncio.sleep(end - time.time())
            used = meter.stop()
            window = time.monotonic() - started
            cpu.update({role: seconds_used / window for role, seconds_used in used.items()})
            cpu["window"] = window

        async def woken() -> None:
            await watch.wait("woke", n, timeout=120 + seconds, interval=0.02)

        log.info("(h) %s: %d workflows sleeping %g s", system.label, n, seconds)
        await system.sleepers(n, seconds, marks, asleep, woken)
        return watch, cpu, why_not, waited

    def _lateness_figures(self, system: System, watch: MarksWatch, waited: float, seconds: float) -> None:
        n = self.sizes.sleepers
        slept: dict[str, float] = {}  # by workflow index: when it called sleep
        woke: dict[str, float] = {}  # ... and when its code continued
        for m in watch.marks["sleep"]:
            slept.setdefault(m.event.partition("-")[2], m.at)
        for m in watch.marks["woke"]:
            woke[m.event.partition("-")[2]] = m.at
        late = [(woke[i] - slept[i] - seconds) * 1000 for i in woke if i in slept]
        label = f"(h) {count(n)} workflows each sleeping {seconds:g} s: wake lateness"
        self._set(system, f"{label}, p50", "ms", median(late))
        self._set(system, f"{label}, p99", "ms", percentile(late, 99), target=Target("<=", 100, "ms"))
        self._detail(
            system,
            f"(h) lateness: min {number(min(late))} ms, max {number(max(late))} ms; "
            f"sleep called over {_spread(watch):.2f} s; "
            f"at most {_most_at_once(slept, woke)} of {n} asleep at once "
            f"(waited {waited:.1f} s for PostgreSQL to be idle first)",
        )

    def _cpu_figures(self, system: System, cpu: dict[str, float], why_not: str) -> None:
        n = self.sizes.sleepers
        label = f"(h) CPU while {count(n)} workflows sleep"
        for role, what, target in (
            ("coordinator", "coordinator", IDLE_CPU),
            ("worker", "worker (DBOS: the app process)", None),
            ("postgres", "PostgreSQL server", IDLE_CPU),
        ):
            row = f"{label}: {what}"
            if role != "postgres" and role not in system.cpu_groups():
                self._unmeasured(system, row, "CPU s/s", "n/a (no coordinator)", target)
            elif role in cpu:
                self._set(system, row, "CPU s/s", cpu[role], target=target)
            else:
                self._unmeasured(system, row, "CPU s/s", why_not, target)
        if "window" in cpu:
            self._detail(system, f"(h) CPU measured over {cpu['window']:.2f} s while all {n} were asleep")

    # --- (i) suspended workflows in memory --------------------------------------------------

    async def workload_i(self) -> None:
        s = self.sizes
        for system in self.systems:
            n = s.suspended if system.suspends else s.blocked_in_memory
            log.info("(i) %s: %d workflows waiting in recv", system.label, n)
            started = time.monotonic()
            rss = await system.suspended_rss(n)
            took = time.monotonic() - started
            note = "" if system.suspends else f"({count(n)} blocked in recv: no suspension)"
            roles = (("coordinator", "coordinator"), ("worker", "worker (DBOS: the app process)"))
            for role, what in roles:
                row = f"(i) RSS with {count(s.suspended)} suspended workflows: {what}"
                if role in rss:
                    self._set(system, row, "MB", rss[role] / 1e6, note=note)
                else:
                    self._unmeasured(system, row, "MB", "n/a (no coordinator)", None)
            for role, what in roles:
                row = f"(i) RSS growth from none to {count(s.suspended)} suspended workflows: {what}"
                if role in rss:
                    grew = (rss[role] - rss[f"{role} before"]) / 1e6
                    # The target is the coordinator's (the issue's): suspended workflows
                    # live in PostgreSQL only. A worker process started for this workload
                    # grows by its working set (up to its capacity of executions at once
                    # during the burst), which does not depend on how many are suspended.
                    target = FLAT_RSS if role == "coordinator" else None
                    self._set(system, row, "MB", grew, target=target, note=note)
                else:
                    self._unmeasured(system, row, "MB", "n/a (no coordinator)", FLAT_RSS)
            before = ", ".join(
                f"{role.removesuffix(' before')} {rss[role] / 1e6:.0f} MB"
                for role in rss
                if role.endswith("before")
            )
            self._detail(
                system, f"(i) RSS before starting them: {before}; all {n} waiting after {took:.0f} s"
            )


def _spread(watch: MarksWatch) -> float:
    """Seconds between the first and the last call of sleep."""
    at = [m.at for m in watch.marks["sleep"]]
    return max(at) - min(at) if at else 0.0


def _most_at_once(slept: dict[str, float], woke: dict[str, float]) -> int:
    """The most workflows asleep at the same moment."""
    changes = sorted([(at, 1) for at in slept.values()] + [(at, -1) for at in woke.values()])
    most = current = 0
    for _, change in changes:
        current += change
        most = max(most, current)
    return most
