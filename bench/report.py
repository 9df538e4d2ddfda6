"""The results table (workload | DBOS | Stepline | ratio | target) and bench/RESULTS.md.

Figures are reported, never asserted: a target beside a figure says whether Stepline met
it in this run, nothing fails when it did not.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path

HEADER = "| workload | DBOS | Stepline | ratio | target |"

RATIO_LEGEND = (
    "ratio = how many times better Stepline's figure is than DBOS's (DBOS ÷ Stepline where "
    "lower is better, Stepline ÷ DBOS where higher is better); above 1 means Stepline is better."
)


@dataclass(frozen=True)
class Target:
    op: str  # "<=" or ">="
    value: float
    unit: str

    def met(self, x: float) -> bool:
        return x <= self.value if self.op == "<=" else x >= self.value

    def __str__(self) -> str:
        return f"{'≤' if self.op == '<=' else '≥'} {number(self.value)} {self.unit}"


@dataclass
class Row:
    workload: str
    unit: str
    lower_is_better: bool
    dbos: float | None = None
    stepline: float | None = None
    target: Target | None = None
    # Why a figure is missing, or how it was obtained when that differs between systems.
    dbos_note: str = ""
    stepline_note: str = ""

    def ratio(self) -> float | None:
        if self.dbos is None or self.stepline is None or min(self.dbos, self.stepline) <= 0:
            return None
        return self.dbos / self.stepline if self.lower_is_better else self.stepline / self.dbos


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    # Free-form lines: secondary figures, per-repeat values, what was skipped and why.
    details: list[str] = field(default_factory=list)
    profiles: list[str] = field(default_factory=list)

    def row(self, workload: str, unit: str, *, lower_is_better: bool, target: Target | None = None) -> Row:
        """The row named ``workload``, created on first use."""
        for r in self.rows:
            if r.workload == workload:
                return r
        r = Row(workload, unit, lower_is_better, target=target)
        self.rows.append(r)
        return r


def number(x: float) -> str:
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def count(n: int) -> str:
    """10000 -> "10k", 1000000 -> "1M"."""
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


def _cell(value: float | None, unit: str, note: str) -> str:
    if value is None:
        return note or "not run"
    text = f"{number(value)} {unit}"
    return f"{text} {note}" if note else text


# Rows are listed in this order of their first word, whatever order the workloads ran in.
_ORDER = ("(a)", "(b)", "(c)", "(d)", "(e)", "(f)", "RSS", "CPU", "(g)", "(h)", "(i)")


def _rank(row: Row) -> int:
    first = row.workload.split(" ", 1)[0]
    return _ORDER.index(first) if first in _ORDER else len(_ORDER)


def table(results: Results) -> str:
    lines = [HEADER, "|---|---:|---:|---:|---|"]
    for r in sorted(results.rows, key=_rank):
        ratio = r.ratio()
        target = ""
        if r.target is not None:
            target = str(r.target)
            if r.stepline is not None:
                target += " (met)" if r.target.met(r.stepline) else " (missed)"
        lines.append(
            "| "
            + " | ".join(
                [
                    r.workload,
                    _cell(r.dbos, r.unit, r.dbos_note),
                    _cell(r.stepline, r.unit, r.stepline_note),
                    f"{ratio:.2f}x" if ratio is not None else "",
                    target,
                ]
            )
            + " |"
        )
    return "\n".join(lines)


METHODS = """\
## How each figure is measured

Both systems run the same workflow bodies (`bench/flows.py`) around the same no-op async
step, against the same PostgreSQL server in the same run, each in its own database.
Stepline: a coordinator process, worker processes (`bench/stepline_worker.py`), and the
harness starting workflows through `Client.start_workflow`. DBOS: application processes
(`bench/dbos_app.py`) that start workflows in-process with `DBOS.start_workflow_async`,
driven by the harness over stdin. Both with their default settings.

- **(a)** A workflow of 10 sequential steps, run repeatedly (after warm-up runs): each
  step call is timed with `perf_counter` inside the workflow and the durations are the
  workflow's output. Median and p99 over all step calls.
- **(b)** 500 workflows of 10 steps started at once (Stepline: `asyncio.gather` of
  `Client.start_workflow` from the harness, one worker process; DBOS: `asyncio.gather` of
  `start_workflow_async` in the app process), timed from before the first start to the
  last result (Stepline: `handle.result()` in the harness; DBOS: `handle.get_result()`).
  Repeated (DBOS 3 times; Stepline, whose run takes a second, 9 times); the median run is
  reported. PostgreSQL is first left to go idle (no autovacuum, no query) and checkpointed.
- **(a), (b) — TypeScript worker** The same two workloads on the same coordinator and
  database, right after the Python worker's runs, with the Python worker stopped and a
  TypeScript worker (`sdks/typescript/bench/worker.ts` on Node.js, the TypeScript SDK's
  `Worker`) in its place, serving `bench.sequential` and `bench.chain` with the same
  bodies around the same no-op step `noop` (step calls timed with `performance.now()`).
  Same warm-up and repeats; CPU per step for the coordinator and the worker. DBOS is run
  in Python only, so these rows have no DBOS figure and no ratio. The languages run one
  after another, not interleaved: a change of load on the machine between them falls on
  one side only. `--languages python` leaves these rows out; the worker languages are
  listed in `bench/languages.py`.
- **(c)** One workflow gathering 100 steps with `asyncio.gather`, timed inside the
  workflow; median of several runs.
- **(d)** A workflow records one step and blocks in the second. The harness notes
  `time.time()` and SIGKILLs the process running it. Stepline: a second worker is already
  connected and takes over. DBOS: nothing takes over without its control plane, so a new
  app process with the same executor ID is started, and DBOS's launch-time recovery
  resumes the workflow: **its figure includes the process restart**. "Resumed" is when the
  blocked step's body starts again in the new process (its `time.time()` written to a
  marks file).
- **(e)** The same with 1,000 recorded steps before the blocking step. The figure is the
  replay inside the recovering process: from the moment the workflow code starts there
  (for Stepline just after the assignment, with its history, arrived) to the start of
  the first step that was not recorded. Kill-to-resume is in the details.
- **(f)** (b) again after 1M (and with `--with-10m` 10M) recorded steps were added to each
  system's tables in bulk SQL (`bench/fill.py`; then VACUUM ANALYZE and CHECKPOINT): the
  median steps/s, and its share of an empty twin's (the same processes on an empty
  database of their own), which runs (b) alternately with the filled system; the share is
  the median of the paired ratios (3 pairs for DBOS, 9 for Stepline, each after PostgreSQL
  went idle), so that load from elsewhere falls on both.
- **RSS** at 10,000 in-flight workflows, each sleeping in a step: `VmRSS` of each
  process once every workflow's step has started. DBOS has no coordinator.
- **CPU** per 1,000 steps during (b): `utime + stime` from `/proc/<pid>/stat` before and
  after, for each process; PostgreSQL is the postmaster and all its children (the whole
  server, both databases). DBOS's worker figure is its application process.
- **(g)** send → recv: `time.time()` just before the send call (Stepline: `Client.send`
  in the harness; DBOS: `DBOS.send_async` in its app process) to the moment `recv`
  returns in the workflow (a marks file). In memory: one workflow receives 200 messages,
  each sent 50 ms after it marked that it calls `recv` again (so that recv is waiting).
  Suspended (Stepline only, a worker with `suspend_after=0`): 100 fresh workflows that
  each receive once, sent one after another once all are `suspended` in its table, so
  replay never grows. DBOS cannot suspend. Median and p99. Beside them, this machine's
  floor (`bench/floor.py`): a bare committed one-row INSERT on the same PostgreSQL and a
  bare gRPC round trip to the coordinator (its health check), after the same 50 ms idle
  and back to back; a send → recv takes two gRPC hops and one commit.
- **(h)** 10,000 workflows started at once (500 at a time), each calling the durable
  sleep for 2 s (`DBOS.sleep_async`): lateness is when its code continued minus (when
  it called sleep + 2 s), both marked in the workflow. CPU as in (b), but per second,
  over the window from when all have called sleep to 0.1 s before the first is due; not
  measured when there is no such window of 0.5 s (the starts took longer than the sleep).
- **(i)** 100,000 workflows waiting in `recv` for a message that never comes, on a
  Stepline worker with `suspend_after=0`: `VmRSS` before the first start and once all
  are `suspended`; the flatness target (the issue's) is the coordinator's: a worker
  process started for the workload grows by its working set during the burst (up to its
  capacity of executions at once), whatever the count suspended. DBOS, which cannot
  suspend, with 5,000 blocked in `DBOS.recv` (each
  waiter re-checks the database every 60 s, which past that many crowds out the starts
  here), once each has recorded its timeout, as DBOS does when its recv is waiting.
- **(j)** A parent workflow calls 20 child workflows one after another (each one step)
  and times each call inside the parent, from the call to the child's result: Stepline
  `await child(i)`; DBOS `DBOS.start_workflow_async(child, i)` then `get_result()`. Ten
  parents, after one warm-up parent.
"""


def markdown(
    results: Results,
    *,
    machine: list[tuple[str, str]],
    command: str,
    started: datetime.datetime,
    load_before: str,
    load_after: str,
) -> str:
    parts = [
        "# Stepline vs DBOS Transact: benchmark results",
        "",
        f"Run {started:%Y-%m-%d %H:%M} UTC with `{command}`. Load average (1, 5, 15 min) "
        f"before: {load_before}; after: {load_after}.",
        "",
        "## Machine",
        "",
        *[f"- **{what}**: {value}" for what, value in machine],
        "",
        "## Results",
        "",
        table(results),
        "",
        RATIO_LEGEND,
        "",
        "Figures on a small shared machine are noisy: run-to-run spread of 10-30% is usual, more "
        "when other work runs at the same time. Nothing here is asserted.",
        "",
    ]
    if results.details:
        parts += ["## Details", "", *[f"- {d}" for d in results.details], ""]
    parts += [METHODS]
    if results.profiles:
        parts += ["## Profiles (Stepline, during workload b)", "", *results.profiles, ""]
    return "\n".join(parts)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
