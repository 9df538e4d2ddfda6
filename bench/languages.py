"""The worker languages the benchmark can serve its workflows in: name -> how to build and
start its bench worker.

Python's worker (``bench/stepline_worker.py``) serves every workload. The others serve
``bench.sequential`` and ``bench.chain`` (workloads (a) and (b)), which are then run a
second time with that worker in the Python one's place, on the same coordinator. Every
bench worker reads ``STEPLINE_ADDRESS`` and ``BENCH_CAPACITY`` and prints
``worker ready <id>`` once registered; SIGTERM stops it.

A language is added with an entry in ``LANGUAGES``: a label for its rows, the command that
starts its worker, where it runs, and a ``build`` that makes that command runnable (or
raises ``Unavailable`` saying why it cannot be here).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from bench.processes import ROOT

log = logging.getLogger("bench")

PYTHON = "python"


class Unavailable(Exception):
    """A language's bench worker cannot be built or run on this machine."""


@dataclass(frozen=True)
class WorkerLanguage:
    name: str  # what --languages takes
    label: str  # in row names: "... — TypeScript worker"
    cwd: Path
    command: Callable[[], list[str]]  # argv of its bench worker
    build: Callable[[], None]  # makes ``command`` runnable; raises Unavailable

    def row(self, workload: str) -> str:
        """The row of ``workload`` for this language (Python's rows keep their names)."""
        return workload if self.name == PYTHON else f"{workload} — {self.label} worker"


def _newest(paths: Iterable[Path]) -> float:
    return max((p.stat().st_mtime for p in paths if p.exists()), default=0.0)


def _run(args: list[str], cwd: Path) -> None:
    try:
        done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unavailable(f"{' '.join(args)}: {exc}") from exc
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-20:]
        raise Unavailable(f"{' '.join(args)} failed in {cwd}:\n" + "\n".join(tail))


# --- TypeScript: sdks/typescript/bench/worker.ts -> dist/bench/worker.js -------------------

TS = ROOT / "sdks" / "typescript"
TS_WORKER = TS / "dist" / "bench" / "worker.js"


def _build_typescript() -> None:
    """``npm ci`` when node_modules is missing or older than package-lock.json (as
    tests/e2e/typescript.py does), then ``npm run build`` unless dist/bench/worker.js is
    newer than every source it is compiled from."""
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        raise Unavailable("node and npm are not on PATH")
    lock = TS / "package-lock.json"
    stamp = TS / "node_modules" / ".package-lock.json"
    if not stamp.exists() or stamp.stat().st_mtime < lock.stat().st_mtime:
        log.info("TypeScript worker: npm ci in %s", TS)
        _run([npm, "ci", "--no-audit", "--no-fund"], TS)
    sources = [
        *(TS / "src").rglob("*.ts"),
        *(TS / "bench").rglob("*.ts"),
        TS / "tsconfig.json",
        TS / "package.json",
        stamp,
    ]
    if not TS_WORKER.exists() or TS_WORKER.stat().st_mtime < _newest(sources):
        log.info("TypeScript worker: npm run build in %s", TS)
        _run([npm, "run", "build"], TS)
    if not TS_WORKER.exists():
        raise Unavailable(f"npm run build did not write {TS_WORKER}")


# --- Go: sdks/go/bench/main.go -> sdks/go/bin/bench-worker ---------------------------------

GO = ROOT / "sdks" / "go"
GO_WORKER = GO / "bin" / "bench-worker"


def _build_go() -> None:
    """``go build`` of sdks/go/bench unless the binary is newer than every Go source."""
    go = shutil.which("go")
    if go is None:
        raise Unavailable("go is not on PATH")
    if not GO_WORKER.exists() or GO_WORKER.stat().st_mtime < _newest([*GO.rglob("*.go"), GO / "go.sum"]):
        log.info("Go worker: go build in %s", GO)
        _run([go, "build", "-o", str(GO_WORKER), "./bench"], GO)


LANGUAGES: dict[str, WorkerLanguage] = {
    PYTHON: WorkerLanguage(
        name=PYTHON,
        label="Python",
        cwd=ROOT,
        command=lambda: [sys.executable, "-m", "bench.stepline_worker"],
        build=lambda: None,
    ),
    "typescript": WorkerLanguage(
        name="typescript",
        label="TypeScript",
        cwd=TS,
        command=lambda: ["node", str(TS_WORKER)],
        build=_build_typescript,
    ),
    "go": WorkerLanguage(
        name="go",
        label="Go",
        cwd=GO,
        command=lambda: [str(GO_WORKER)],
        build=_build_go,
    ),
}


def parse(value: str | None) -> tuple[list[str], bool]:
    """The names in a --languages value (Python first, always: it serves every workload),
    and whether they were asked for explicitly. Raises ValueError on an unknown name."""
    if value is None:
        return list(LANGUAGES), False
    names = [n.strip().lower() for n in value.split(",") if n.strip()]
    unknown = sorted(set(names) - set(LANGUAGES))
    if unknown:
        raise ValueError(f"unknown languages {', '.join(unknown)}; choose from {', '.join(LANGUAGES)}")
    return [PYTHON, *(n for n in LANGUAGES if n in names and n != PYTHON)], True


def prepare(names: list[str], *, explicit: bool) -> tuple[list[WorkerLanguage], list[str]]:
    """Builds the languages' workers; returns those ready and a line for each left out.

    A language asked for by name that cannot be built raises Unavailable; by default it
    is left out with the reason (in the results' details)."""
    ready: list[WorkerLanguage] = []
    skipped: list[str] = []
    for name in names:
        language = LANGUAGES[name]
        try:
            language.build()
        except Unavailable as exc:
            if explicit:
                raise Unavailable(f"{language.label} worker (--languages {name}): {exc}") from exc
            log.warning("%s worker left out: %s", language.label, exc)
            skipped.append(f"{language.label} worker not run: {str(exc).splitlines()[0]}")
        else:
            ready.append(language)
    return ready, skipped
