"""The workloads (a)-(f), memory and CPU, each run on every system present, DBOS first;
the durable-wait workloads (g), (h), (i) are in ``bench/waits.py``. (a) and (b) run on
Stepline once more for each worker language besides Python (``bench/languages.py``),
reported in rows of their own ("... — TypeScript worker").

Each workload turns what the systems measured into rows of the results table and lines
of details. Sizes come in two presets: the full benchmark and ``--quick`` (for CI).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.languages import LANGUAGES, PYTHON, WorkerLanguage
from bench.machine import load_average
from bench.postgres import Postgres
from bench.report import Results, Target, count, number
from bench.resources import CpuMeter
from bench.stats import median, percentile
from bench.stepline_side import Stepline
from bench.system import Recovery, System
from bench.waits import WaitWorkloads

log = logging.getLogger("bench")

ORDER = ("a", "b", "c", "f", "d", "e", "rss", "g", "h", "i", "j", "k")
# What runs without --only. Not yet the durable waits, until Stepline's side of them runs.
DEFAULT = ORDER


@dataclass(frozen=True)
class Sizes:
    warmup_runs: int
    sequential_runs: int
    sequential_steps: int
    throughput_workflows: int
    throughput_steps: int
    throughput_repeats: int
    # Stepline's (b) takes a second and DBOS's a minute: Stepline repeats it this many times
    # as often, so that its median sees through the noise of a small machine.
    quick_system_factor: int
    fanout_steps: int
    fanout_runs: int
    takeover_runs: int
    replay_steps: int
    replay_runs: int
    fill_levels: tuple[int, ...]
    in_flight: int
    wake_messages: int  # (g) to one workflow in memory
    wake_fresh: int  # (g) workflows suspended, one message each
    sleepers: int  # (h)
    sleep_seconds: float
    suspended: int  # (i)
    # (i) where a system cannot suspend (DBOS), this many blocked in recv instead. DBOS's
    # recv re-checks the database every 60 s per waiter, and its app process here manages
    # ~150 statements a second: past what it blocks within a minute the re-checks crowd out
    # the starts (10k: 8k blocked after 2.5 min and 5 CPU minutes; 20k: not in 10 min).
    blocked_in_memory: int
    child_runs: int  # (j) parents
    child_calls: int  # (j) children per parent, one after another
    cancels: int  # (k) workflows waiting in recv, cancelled one after another


FULL = Sizes(
    warmup_runs=3,
    sequential_runs=50,
    sequential_steps=10,
    throughput_workflows=500,
    throughput_steps=10,
    throughput_repeats=3,
    quick_system_factor=3,
    fanout_steps=100,
    fanout_runs=5,
    takeover_runs=20,
    replay_steps=1000,
    replay_runs=3,
    fill_levels=(1_000_000,),
    in_flight=10_000,
    wake_messages=200,
    wake_fresh=100,
    sleepers=10_000,
    sleep_seconds=2.0,
    suspended=100_000,
    blocked_in_memory=5_000,
    child_runs=10,
    child_calls=20,
    cancels=200,
)
QUICK = Sizes(
    warmup_runs=1,
    sequential_runs=3,
    sequential_steps=10,
    throughput_workflows=20,
    throughput_steps=10,
    throughput_repeats=1,
    quick_system_factor=1,
    fanout_steps=20,
    fanout_runs=1,
    takeover_runs=1,
    replay_steps=50,
    replay_runs=1,
    fill_levels=(10_000,),
    in_flight=100,
    wake_messages=5,
    wake_fresh=3,
    sleepers=50,
    sleep_seconds=2.0,
    suspended=100,
    blocked_in_memory=100,
    child_runs=1,
    child_calls=3,
    cancels=5,
)
TEN_MILLION = 10_000_000


def _this_process() -> list[int]:
    return [os.getpid()]


class Bench(WaitWorkloads):
    def __init__(
        self,
        systems: list[System],
        sizes: Sizes,
        pg: Postgres,
        out_dir: Path,
        results: Results,
        languages: Sequence[WorkerLanguage] = (),
    ) -> None:
        self.systems = systems
        # Worker languages besides Python that (a) and (b) also run with, on Stepline.
        self.languages = [lang for lang in languages if lang.name != PYTHON]
        self.sizes = sizes
        self.pg = pg
        self.out_dir = out_dir
        self.results = results
        self._recorded_extra = 0  # steps added by fill so far
        self.failed: list[str] = []
        # Run once, before the in-flight workload (see run()).
        self.profile: Callable[[], Awaitable[None]] | None = None

    async def run(self, only: set[str]) -> None:
        """Runs the workloads in ``only``, in ORDER; the profile (if any) before "rss",
        whose thousands of sleeping workflows would be in it otherwise."""
        for name in ORDER:
            if name == "rss" and self.profile is not None:
                await self.profile()
                self.profile = None
            if name in only:
                started = time.monotonic()
                log.info("workload %s ...", name)
                self.results.details.append(f"load average when workload {name} started: {load_average()}")
                try:
                    await getattr(self, "workload_" + name)()
                except Exception as exc:  # the other workloads' figures are still worth having
                    log.exception("workload %s failed", name)
                    self.failed.append(name)
                    self.results.details.append(f"workload {name} FAILED: {type(exc).__name__}: {exc}")
                else:
                    log.info("workload %s done in %.1f s", name, time.monotonic() - started)

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
    ) -> None:
        row = self.results.row(workload, unit, lower_is_better=lower_is_better, target=target)
        if system.label == "DBOS":
            row.dbos, row.dbos_note = value, note
        else:
            row.stepline, row.stepline_note = value, note

    def _detail(self, system: System, text: str) -> None:
        self.results.details.append(f"{system.label}: {text}")

    def _set_in(
        self, language: WorkerLanguage, system: System, workload: str, unit: str, value: float, **kw: Any
    ) -> None:
        """``_set`` for a figure measured with ``language``'s worker: another row unless Python."""
        self._set(system, language.row(workload), unit, value, **kw)
        if language.name != PYTHON and any(other.label == "DBOS" for other in self.systems):
            # DBOS runs its workflows in Python here: its figure is in the Python worker's row.
            row = self.results.row(language.row(workload), unit, lower_is_better=True)
            row.dbos_note = f"not run in {language.label}"

    def _detail_in(self, language: WorkerLanguage, system: System, text: str) -> None:
        who = system.label if language.name == PYTHON else f"{system.label}, {language.label} worker"
        self.results.details.append(f"{who}: {text}")

    # --- (a) sequential steps -------------------------------------------------------------

    async def workload_a(self) -> None:
        for system in self.systems:
            await self._sequential(system, LANGUAGES[PYTHON])
            if isinstance(system, Stepline):
                for language in self.languages:
                    async with system.serving(language):
                        await self._sequential(system, language)

    async def _sequential(self, system: System, language: WorkerLanguage) -> None:
        s = self.sizes
        await self.pg.settle()
        await system.sequential(s.warmup_runs, s.sequential_steps)
        durations = [d * 1000 for d in await system.sequential(s.sequential_runs, s.sequential_steps)]
        label = f"(a) step in a {s.sequential_steps}-step workflow"
        self._set_in(
            language, system, f"{label}, median", "ms", median(durations), target=Target("<=", 0.7, "ms")
        )
        self._set_in(language, system, f"{label}, p99", "ms", percentile(durations, 99))
        self._detail_in(
            language,
            system,
            f"(a) {len(durations)} step calls in {s.sequential_runs} workflows: "
            f"min {number(min(durations))} ms, mean {number(sum(durations) / len(durations))} ms, "
            f"max {number(max(durations))} ms",
        )

    # --- (j) child workflows -----------------------------------------------------------------

    async def workload_j(self) -> None:
        s = self.sizes
        for system in self.systems:
            await self.pg.settle()
            await system.children(1, s.child_calls)  # warm-up
            durations = [d * 1000 for d in await system.children(s.child_runs, s.child_calls)]
            label = "(j) child workflow called and awaited by its parent"
            self._set(system, f"{label}, median", "ms", median(durations))
            self._set(system, f"{label}, p99", "ms", percentile(durations, 99))
            self._detail(
                system,
                f"(j) {len(durations)} child calls in {s.child_runs} parents: "
                f"min {number(min(durations))} ms, mean {number(sum(durations) / len(durations))} ms, "
                f"max {number(max(durations))} ms",
            )

    # --- (k) cancel -----------------------------------------------------------------------------

    async def workload_k(self) -> None:
        s = self.sizes
        for system in self.systems:
            await self.pg.settle()
            durations = [d * 1000 for d in await system.cancels(s.cancels, self._marks_dir())]
            label = "(k) cancel of a workflow waiting in recv, until durable"
            self._set(system, f"{label}, median", "ms", median(durations))
            self._set(system, f"{label}, p99", "ms", percentile(durations, 99))
            self._detail(
                system,
                f"(k) {len(durations)} cancels: min {number(min(durations))} ms, "
                f"mean {number(sum(durations) / len(durations))} ms, max {number(max(durations))} ms",
            )

    # --- (b) throughput, and CPU per step --------------------------------------------------

    def _repeats(self, system: System) -> int:
        """How often (b) is run on ``system`` for one figure."""
        factor = 1 if system.label == "DBOS" else self.sizes.quick_system_factor
        return self.sizes.throughput_repeats * factor

    async def _throughput(self, system: System, what: str, language: WorkerLanguage) -> float:
        """Median steps/s over the repeats of (b)."""
        s = self.sizes
        rates = []
        for _ in range(self._repeats(system)):
            seconds = await system.throughput(s.throughput_workflows, s.throughput_steps)
            rates.append(s.throughput_workflows * s.throughput_steps / seconds)
        per_repeat = ", ".join(number(r) for r in rates)
        self._detail_in(language, system, f"{what}: steps/s per repeat: {per_repeat}")
        return median(rates)

    async def workload_b(self) -> None:
        for system in self.systems:
            await self._chains(system, LANGUAGES[PYTHON])
            if isinstance(system, Stepline):
                for language in self.languages:
                    async with system.serving(language):
                        await self._chains(system, language)

    async def _chains(self, system: System, language: WorkerLanguage) -> None:
        s = self.sizes
        steps = s.throughput_workflows * s.throughput_steps
        waited = await self.pg.settle()
        self._detail_in(language, system, f"(b): waited {waited:.1f} s for PostgreSQL to be idle first")
        await system.throughput(min(50, s.throughput_workflows), s.throughput_steps)  # warm-up
        meter = CpuMeter({**system.cpu_groups(), "postgres": self.pg.pids, "harness": _this_process})
        meter.start()
        rate = await self._throughput(system, "(b)", language)
        used = meter.stop()
        label = f"(b) {s.throughput_workflows} workflows x {s.throughput_steps} steps at once"
        self._set_in(
            language,
            system,
            f"{label}: steps/s",
            "steps/s",
            rate,
            lower_is_better=False,
            target=Target(">=", 20_000, "steps/s"),
        )
        workflows = rate / s.throughput_steps
        self._set_in(language, system, f"{label}: workflows/s", "wf/s", workflows, lower_is_better=False)
        total = steps * self._repeats(system)
        roles: tuple[tuple[str, str], ...] = (
            ("coordinator", "coordinator"),
            ("worker", "worker (DBOS: the app process)"),
            ("postgres", "PostgreSQL server"),
            ("harness", "harness (Stepline: the Client's starts and awaits)"),
        )
        if language.name != PYTHON:  # the rest is the same PostgreSQL and the same Python Client
            roles = (("coordinator", "coordinator"), ("worker", "worker"))
        for role, what in roles:
            row = f"CPU per 1,000 steps in (b): {what}"
            if role in used:
                self._set_in(language, system, row, "CPU s", used[role] / total * 1000)
            else:
                self.results.row(row, "CPU s", lower_is_better=True).dbos_note = "n/a (no coordinator)"

    # --- (c) gathered steps -------------------------------------------------------------

    async def workload_c(self) -> None:
        s = self.sizes
        for system in self.systems:
            await self.pg.settle()
            await system.fanout(s.fanout_steps)  # warm-up
            runs = [await system.fanout(s.fanout_steps) * 1000 for _ in range(s.fanout_runs)]
            self._set(
                system,
                f"(c) one workflow gathering {s.fanout_steps} steps",
                "ms",
                median(runs),
                target=Target("<=", 10, "ms"),
            )
            self._detail(system, f"(c) ms per run: {', '.join(number(r) for r in runs)}")

    # --- (d) takeover after SIGKILL --------------------------------------------------------

    async def _recover(self, system: System, steps: int, runs: int, what: str) -> list[Recovery]:
        marks = self.out_dir / "marks"
        marks.mkdir(exist_ok=True)
        recoveries, failures = await system.recover(steps, runs, marks)
        for failure in failures:
            self._detail(system, f"{what}: NOT RESUMED: {failure}")
        return recoveries

    async def workload_d(self) -> None:
        s = self.sizes
        for system in self.systems:
            recoveries = await self._recover(system, 1, s.takeover_runs, "(d)")
            if not recoveries:
                continue
            resumed = [r.kill_to_resume for r in recoveries]
            note = "(restart)" if system.label == "DBOS" else ""
            if len(recoveries) < s.takeover_runs:
                lost = s.takeover_runs - len(recoveries)
                note += f" ({lost} of {s.takeover_runs} never resumed; see details)"
            label = f"(d) SIGKILL mid-workflow → resumed ({s.takeover_runs} runs)"
            self._set(system, f"{label}, p50", "s", median(resumed), target=Target("<=", 0.3, "s"), note=note)
            self._set(system, f"{label}, p95", "s", percentile(resumed, 95), note=note)
            if isinstance(system, Stepline):
                await self._frozen_takeover(system)
            started = [r.kill_to_start for r in recoveries]
            ready = [r.ready_at - r.killed_at for r in recoveries if r.ready_at is not None]
            launched = f"kill → new process launched: p50 {number(median(ready))} s; " if ready else ""
            self._detail(
                system,
                f"(d) {launched}kill → workflow code running again: p50 {number(median(started))} s, "
                f"p95 {number(percentile(started, 95))} s; kill → next step per run (s): "
                + ", ".join(f"{x:.3f}" for x in resumed),
            )

    async def _frozen_takeover(self, system: Stepline) -> None:
        """(d) for a worker that hangs (SIGSTOP) instead of dying: its lease must run out.

        Stepline only: DBOS has no lease, and nothing recovers the workflows of a process
        that is alive but stuck.
        """
        s = self.sizes
        marks = self.out_dir / "marks"
        recoveries, failures = await system.recover(1, s.takeover_runs, marks, freeze=True)
        for failure in failures:
            self._detail(system, f"(d) SIGSTOP: NOT RESUMED: {failure}")
        if recoveries:
            resumed = [r.kill_to_resume for r in recoveries]
            label = f"(d) SIGSTOP mid-workflow → resumed ({s.takeover_runs} runs)"
            self._set(system, f"{label}, p50", "s", median(resumed), target=Target("<=", 3.1, "s"))
            self._set(system, f"{label}, p95", "s", percentile(resumed, 95))

    # --- (e) replay of a long history -------------------------------------------------------

    async def workload_e(self) -> None:
        s = self.sizes
        for system in self.systems:
            recoveries = await self._recover(system, s.replay_steps, s.replay_runs, "(e)")
            if not recoveries:
                continue
            replay = [r.replay * 1000 for r in recoveries]
            note = "(restarted process)" if system.label == "DBOS" else ""
            self._set(
                system,
                f"(e) replay of {count(s.replay_steps)} recorded steps",
                "ms",
                median(replay),
                target=Target("<=", 30, "ms"),
                note=note,
            )
            total = [r.kill_to_resume for r in recoveries]
            self._detail(
                system,
                f"(e) replay ms per run: {', '.join(number(x) for x in replay)}; "
                f"kill → first unrecorded step (s): {', '.join(f'{x:.3f}' for x in total)}",
            )

    # --- (f) throughput with full tables ---------------------------------------------------

    async def _rate(self, system: System) -> float:
        s = self.sizes
        seconds = await system.throughput(s.throughput_workflows, s.throughput_steps)
        return s.throughput_workflows * s.throughput_steps / seconds

    async def workload_f(self) -> None:
        """(b) on the filled system and, alternately, on an empty twin of it (same kind of
        processes, a database of its own): the share of the empty run is the median of the
        paired ratios, so that load from elsewhere on the machine falls on both sides."""
        s = self.sizes
        twins: dict[str, System] = {}
        try:
            for system in self.systems:
                twins[system.label] = twin = await system.twin()
                await twin.throughput(min(50, s.throughput_workflows), s.throughput_steps)  # warm-up
            for level in s.fill_levels:
                add = level - self._recorded_extra
                for system in self.systems:
                    started = time.monotonic()
                    await system.fill(add)
                    self._detail(
                        system, f"(f) filling to {count(level)} steps took {time.monotonic() - started:.0f} s"
                    )
                self._recorded_extra = level
                for system in self.systems:
                    await self._filled_throughput(system, twins[system.label], level)
        finally:
            for twin in twins.values():
                await twin.close()

    async def _filled_throughput(self, system: System, twin: System, level: int) -> None:
        full_rates: list[float] = []
        shares: list[float] = []
        pairs = []
        waited = 0.0
        for _ in range(self._repeats(system)):
            # After a fill, PostgreSQL vacuums and checkpoints for a while: let it finish
            # before each half of the pair, so that neither side measures the other's aftermath.
            waited += await self.pg.settle()
            empty = await self._rate(twin)
            waited += await self.pg.settle()
            full = await self._rate(system)
            full_rates.append(full)
            shares.append(full / empty * 100)
            pairs.append(f"{number(full)} vs {number(empty)}")
        self._detail(
            system,
            f"(f) {count(level)}: steps/s filled vs empty twin, per pair: {'; '.join(pairs)} "
            f"(waited {waited:.0f} s in all for PostgreSQL to be idle first)",
        )
        label = f"(f) (b) with {count(level)} recorded steps"
        self._set(system, f"{label}: steps/s", "steps/s", median(full_rates), lower_is_better=False)
        self._set(
            system,
            f"{label}: share of an empty twin's",
            "%",
            median(shares),
            lower_is_better=False,
            target=Target(">=", 90, "%"),
        )

    # --- memory at many in-flight workflows -------------------------------------------------

    async def workload_rss(self) -> None:
        n = self.sizes.in_flight
        for system in self.systems:
            rss = await system.in_flight_rss(n)
            for role, what in (("coordinator", "coordinator"), ("worker", "worker (DBOS: the app process)")):
                row = f"RSS with {count(n)} workflows in flight: {what}"
                if role in rss:
                    self._set(system, row, "MB", rss[role] / 1e6)
                else:
                    self.results.row(row, "MB", lower_is_better=True).dbos_note = "n/a (no coordinator)"
            before = ", ".join(
                f"{role.removesuffix(' before')} {rss[role] / 1e6:.0f} MB"
                for role in rss
                if role.endswith("before")
            )
            self._detail(system, f"RSS before starting them: {before}")
