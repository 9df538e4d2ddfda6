"""``python -m bench``: Stepline and DBOS Transact side by side on one PostgreSQL.

    python -m bench                 # the full benchmark; writes bench/RESULTS.md
    python -m bench --quick         # tiny sizes (CI smoke), well under a minute
    python -m bench --only a,b,d    # some workloads: a b c d e f rss g h i j k (all by default)
    python -m bench --only g,h,i    # the durable waits: (g) send → recv wake-up, (h) 10k
                                    # sleeping workflows, (i) 100k suspended
    python -m bench --skip-dbos     # Stepline alone (DBOS is the `bench` extra)
    python -m bench --skip-stepline # DBOS alone (e.g. --only g,h,i --skip-stepline --quick)
    python -m bench --with-10m      # (f) also at 10M recorded steps (takes minutes)
    python -m bench --profile       # also py-spy the coordinator and worker during (b) runs
    python -m bench --dbos-threads 32   # bound DBOS's thread pool (default: unbounded)
    python -m bench --database-url postgresql://...   # instead of an embedded PostgreSQL
    python -m bench --languages python  # (a) and (b) with the Python worker only (default:
                                    # also with every other worker language that builds here,
                                    # e.g. TypeScript: bench/languages.py)

Logs of every process, the marks files and profiles go to bench/out/run-<time>/.
"""

from __future__ import annotations

import os

# This process forks children (workers, DBOS apps, py-spy) while its gRPC Client is busy;
# gRPC's fork handlers are for fork without exec and break in-flight calls. Set before
# grpc is imported.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import functools
import logging
import shlex
import sys
from pathlib import Path

from bench import dbos_side, languages, machine, profiling, report
from bench.postgres import Postgres
from bench.processes import ROOT
from bench.stepline_side import Stepline
from bench.system import System
from bench.workloads import DEFAULT, FULL, ORDER, QUICK, TEN_MILLION, Bench

log = logging.getLogger("bench")

RESULTS = ROOT / "bench" / "RESULTS.md"
OUT = ROOT / "bench" / "out"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for CI")
    parser.add_argument(
        "--only",
        default=",".join(DEFAULT),
        help=f"workloads to run, of {','.join(ORDER)} (default: {','.join(DEFAULT)})",
    )
    parser.add_argument("--skip-dbos", action="store_true", help="run Stepline only")
    parser.add_argument("--skip-stepline", action="store_true", help="run DBOS only")
    parser.add_argument("--with-10m", action="store_true", help="(f) also with 10M recorded steps")
    parser.add_argument("--profile", action="store_true", help="py-spy Stepline's processes during (b)")
    parser.add_argument(
        "--dbos-threads",
        type=int,
        default=None,
        help="DBOS max_executor_threads (default: DBOS's, unbounded)",
    )
    parser.add_argument("--database-url", default=None, help="PostgreSQL to use (default: embedded)")
    parser.add_argument("--results", type=Path, default=None, help="where to write the results (markdown)")
    parser.add_argument(
        "--languages",
        default=None,
        help=f"worker languages to run (a) and (b) with on Stepline, of {','.join(languages.LANGUAGES)}; "
        "Python always runs (default: every one whose worker builds here)",
    )
    args = parser.parse_args(argv)
    try:
        args.languages, args.languages_explicit = languages.parse(args.languages)
    except ValueError as exc:
        parser.error(str(exc))
    only = {w.strip() for w in args.only.split(",") if w.strip()}
    unknown = only - set(ORDER)
    if unknown:
        parser.error(f"unknown workloads {', '.join(sorted(unknown))}; choose from {', '.join(ORDER)}")
    args.only = only
    if args.skip_dbos and args.skip_stepline:
        parser.error("--skip-dbos and --skip-stepline leave nothing to run")
    if args.results is None:
        if args.quick:
            args.results = OUT / "RESULTS-quick.md"
        elif not set(DEFAULT) <= only or args.skip_stepline:
            args.results = OUT / "RESULTS-partial.md"
        else:
            args.results = RESULTS
    return args


async def run(args: argparse.Namespace) -> int:
    sizes = QUICK if args.quick else FULL
    if args.with_10m:
        extra = 10 * sizes.fill_levels[0] if args.quick else TEN_MILLION
        sizes = dataclasses.replace(sizes, fill_levels=(*sizes.fill_levels, extra))
    started = datetime.datetime.now(datetime.UTC)
    out_dir = OUT / f"run-{started:%Y%m%d-%H%M%S}"
    out_dir.mkdir(parents=True, exist_ok=True)
    load_before = machine.load_average()
    commit = machine.git_commit()
    results = report.Results()
    with_dbos = not args.skip_dbos
    if with_dbos and not dbos_side.available():
        log.warning("dbos is not installed (pip install -e '.[bench]'): running Stepline only")
        with_dbos = False
    if not with_dbos:
        if args.skip_stepline:
            log.error("--skip-stepline, and DBOS is not installed: nothing to run")
            return 2
        results.details.append("DBOS was not run (--skip-dbos, or the dbos package is not installed).")
    if args.skip_stepline:
        results.details.append("Stepline was not run (--skip-stepline).")

    worker_languages: list[languages.WorkerLanguage] = []
    if not args.skip_stepline and args.only & {"a", "b"}:
        try:
            worker_languages, left_out = languages.prepare(args.languages, explicit=args.languages_explicit)
        except languages.Unavailable as exc:
            log.error("%s", exc)
            return 2
        results.details += left_out

    pg = await Postgres.start(args.database_url)
    systems: list[System] = []
    stepline: Stepline | None = None
    try:
        log.info("PostgreSQL at %s; output in %s", pg.admin_url, out_dir)
        if with_dbos:
            systems.append(await dbos_side.Dbos.start(pg, out_dir, args.dbos_threads))
            if args.dbos_threads is not None:
                results.details.append(f"DBOS ran with max_executor_threads={args.dbos_threads}.")
        if not args.skip_stepline:
            stepline = await Stepline.start(pg, out_dir)
            systems.append(stepline)
        bench = Bench(systems, sizes, pg, out_dir, results, worker_languages)
        if args.profile and stepline is not None:
            bench.profile = functools.partial(
                _profile, stepline, sizes.throughput_workflows, sizes.throughput_steps, out_dir, results
            )
        await bench.run(args.only)
        failed = bench.failed
        described = await pg.describe()
    finally:
        for system in reversed(systems):
            with contextlib.suppress(Exception):
                await system.close()
        await pg.stop()

    text = report.markdown(
        results,
        machine=machine.describe(described, commit),
        command=shlex.join(["python", "-m", "bench", *sys.argv[1:]]),
        started=started,
        load_before=load_before,
        load_after=machine.load_average(),
    )
    print()
    print(report.table(results))
    print()
    print(report.RATIO_LEGEND)
    for line in results.details:
        print(f"  {line}")
    for section in results.profiles:
        print()
        print(section)
    report.write(args.results, text)
    print(f"\nwritten to {args.results}; logs in {out_dir}")
    if failed:
        print(f"workloads that failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


async def _profile(
    stepline: Stepline, workflows: int, steps: int, out_dir: Path, results: report.Results
) -> None:
    """py-spy on the coordinator and the worker during four extra runs of workload (b)."""
    try:
        results.profiles += await profiling.profile(stepline, workflows, steps, 4, out_dir)
    except Exception as exc:  # a failed profile must not lose the benchmark's figures
        log.exception("profiling failed")
        results.profiles.append(f"profiling failed: {type(exc).__name__}: {exc}")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="bench %(asctime)s %(message)s", datefmt="%H:%M:%S")
    args = parse(sys.argv[1:])
    try:
        sys.exit(asyncio.run(run(args)))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
