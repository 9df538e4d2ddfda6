"""Drives a worker implementation through the scenarios in conformance/scenarios, against a
live coordinator, and compares what the coordinator recorded with what each expects.

The spec is conformance/README.md. A worker is a command (a process serving the
interpreter workflow); the coordinator is given by address, with an optional control to
kill and restart it for the scenarios that need that.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from worker_sdk import Client, StepKind, StepStatus, WorkflowFailedError, WorkflowStatus

SCENARIOS = Path(__file__).parent / "scenarios"
WORKFLOW = "conformance.interpreter"
READY = "conformance ready "
MODES = ("normal", "suspend")
TIMEOUT = 30.0


@dataclass(frozen=True)
class Scenario:
    name: str
    features: frozenset[str]
    about: str
    program: dict[str, Any]
    actions: tuple[dict[str, Any], ...]
    expect: dict[str, Any]

    @property
    def waits(self) -> bool:
        return "waits" in self.features


def load(directory: Path = SCENARIOS) -> list[Scenario]:
    """Every scenario file, by name."""
    found = []
    for path in sorted(directory.glob("*.json")):
        doc = json.loads(path.read_text())
        found.append(
            Scenario(
                name=doc["name"],
                features=frozenset(doc["features"]),
                about=doc.get("about", ""),
                program=doc["program"],
                actions=tuple(doc.get("actions", ())),
                expect=doc["expect"],
            )
        )
    return found


@dataclass(frozen=True)
class WorkerCommand:
    """How to start a worker implementation: a command line, run in ``cwd``."""

    language: str
    argv: tuple[str, ...]
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)


class CoordinatorControl(Protocol):
    async def kill_coordinator(self) -> None: ...
    async def start_coordinator(self) -> None: ...


@dataclass
class Outcome:
    scenario: str
    mode: str
    problems: list[str]
    skipped: str = ""

    @property
    def passed(self) -> bool:
        return not self.problems and not self.skipped

    def __str__(self) -> str:
        head = f"{self.scenario} [{self.mode}]"
        if self.skipped:
            return f"{head}: skipped ({self.skipped})"
        if not self.problems:
            return f"{head}: passed"
        return f"{head}: FAILED\n" + "\n".join(f"  - {p}" for p in self.problems)


class WorkerProcess:
    """One running worker process of the implementation under test."""

    def __init__(self, proc: asyncio.subprocess.Process, worker_id: str, features: frozenset[str]) -> None:
        self.proc = proc
        self.worker_id = worker_id
        self.features = features

    @classmethod
    async def start(cls, command: WorkerCommand, env: dict[str, str], log: Path) -> WorkerProcess:
        with log.open("ab") as err:
            proc = await asyncio.create_subprocess_exec(
                *command.argv,
                cwd=command.cwd,
                env={**os.environ, **command.env, **env},
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
            )
        assert proc.stdout is not None
        try:
            while True:
                line = (await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)).decode()
                if not line:
                    raise RuntimeError(f"the {command.language} worker exited before it was ready; see {log}")
                if line.startswith(READY):
                    worker_id, _, rest = line[len(READY) :].strip().partition(" ")
                    features = rest.removeprefix("features=")
                    return cls(proc, worker_id, frozenset(f for f in features.split(",") if f))
        except BaseException:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    def freeze(self, frozen: bool) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGSTOP if frozen else signal.SIGCONT)


class Run:
    """One scenario in one mode: the worker processes, the workflow, the checks."""

    def __init__(
        self,
        scenario: Scenario,
        mode: str,
        command: WorkerCommand,
        client: Client,
        address: str,
        directory: Path,
        coordinator: CoordinatorControl | None,
    ) -> None:
        self.scenario = scenario
        self.mode = mode
        self.command = command
        self.client = client
        self.address = address
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.coordinator = coordinator
        self.workflow_id = f"{scenario.name}-{mode}-{uuid.uuid4().hex[:8]}"
        self.effects = directory / "effects.tsv"
        self.workers: list[WorkerProcess] = []

    async def start_worker(self, rename: str = "") -> WorkerProcess:
        n = len(self.workers)
        env = {
            "STEPLINE_ADDRESS": self.address,
            "CONFORMANCE_EFFECTS": str(self.effects),
            "CONFORMANCE_DIR": str(self.dir),
            "CONFORMANCE_WORKER": f"{self.command.language}-{n}",
            "CONFORMANCE_RENAME": rename,
        }
        if self.mode == "suspend":
            env["CONFORMANCE_SUSPEND_AFTER_MS"] = "0"
        worker = await WorkerProcess.start(self.command, env, self.dir / f"worker-{n}.log")
        self.workers.append(worker)
        return worker

    def ran(self) -> list[tuple[str, str, str, str]]:
        """The effect lines: (workflow ID, step ID, step name, worker)."""
        if not self.effects.exists():
            return []
        lines = [line.split("\t") for line in self.effects.read_text().splitlines() if line]
        return [(w[0], w[1], w[2], w[3]) for w in lines if w[0] == self.workflow_id]

    async def _until(self, check: Callable[[], Awaitable[bool]], what: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        while not await check():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {TIMEOUT:.0f} s waiting for {what}")
            await asyncio.sleep(0.01)

    async def act(self, action: dict[str, Any]) -> None:
        (kind, arg), *_ = action.items()
        if kind == "await_blocked":
            name, count = (arg, 1) if isinstance(arg, str) else (arg["name"], arg.get("count", 1))

            async def blocked() -> bool:
                return sum(1 for r in self.ran() if r[2] == name) >= count

            async def recorded() -> bool:
                # A StepStart is not acknowledged and may trail the body a moment: what
                # follows (a kill) must find the step recorded, whatever the SDK.
                return any(s.step_name == name for s in await self.client.list_steps(self.workflow_id))

            await self._until(blocked, f"step {name!r} to run (x{count})")
            await self._until(recorded, f"step {name!r} to be recorded")
        elif kind == "release":
            (self.dir / f"release-{self.workflow_id}-{arg}").touch()
        elif kind == "kill_worker":
            await self.workers[arg.get("index", -1) if isinstance(arg, dict) else -1].kill()
        elif kind in ("freeze_worker", "thaw_worker"):
            self.workers[arg.get("index", -1) if isinstance(arg, dict) else -1].freeze(
                kind == "freeze_worker"
            )
        elif kind == "start_worker":
            await self.start_worker(rename=(arg or {}).get("rename", ""))
        elif kind == "await_waiting":
            await self._until(lambda: self._waiting(arg), f"a recv on topic {arg!r} waiting")
        elif kind == "send":
            await self.client.send(self.workflow_id, arg["message"], topic=arg.get("topic"))
        elif kind in ("kill_coordinator", "start_coordinator"):
            if self.coordinator is None:
                raise RuntimeError(f"{kind}: this runner was given no coordinator control")
            await getattr(self.coordinator, kind)()
        else:
            raise ValueError(f"unknown action {kind!r}")

    async def _waiting(self, topic: str) -> bool:
        steps = await self.client.list_steps(self.workflow_id)
        return any(s.kind is StepKind.RECV and s.status is StepStatus.WAITING for s in steps)

    async def outcome(self) -> Outcome:
        problems: list[str] = []
        first = await self.start_worker()
        missing = self.scenario.features - first.features
        if missing:
            return Outcome(self.scenario.name, self.mode, [], skipped=f"needs {', '.join(sorted(missing))}")
        handle = await self.client.start_workflow(
            WORKFLOW, self.scenario.program, workflow_id=self.workflow_id
        )
        for action in self.scenario.actions:
            await self.act(action)
        output: Any = None
        try:
            output = await handle.result(timeout=TIMEOUT)
        except WorkflowFailedError:
            pass
        except TimeoutError:
            problems.append(f"the workflow did not finish within {TIMEOUT:.0f} s")
            return Outcome(self.scenario.name, self.mode, problems)
        problems += await self.check(output)
        return Outcome(self.scenario.name, self.mode, problems)

    async def check(self, output: Any) -> list[str]:
        expect = self.scenario.expect
        problems: list[str] = []
        info = await self.client.get_workflow(self.workflow_id)
        status = WorkflowStatus[expect.get("status", "SUCCEEDED")]
        if info.status is not status:
            error = f" ({info.error.type}: {info.error.message})" if info.error else ""
            problems.append(f"status {info.status.name}{error}, expected {status.name}")
        if "output" in expect and output != expect["output"]:
            problems.append(f"output {output!r}, expected {expect['output']!r}")
        if "error_contains" in expect:
            message = f"{info.error.type}: {info.error.message}" if info.error else ""
            if expect["error_contains"] not in message:
                problems.append(f"error {message!r} does not contain {expect['error_contains']!r}")
        recorded = [
            (s.step_id, s.step_name, s.status.name) for s in await self.client.list_steps(self.workflow_id)
        ]
        problems += compare_steps(recorded, [tuple(s) for s in expect.get("steps", ())])
        if "effects" in expect:
            counted = Counter(r[2] for r in self.ran())
            for name, times in expect["effects"].items():
                if counted[name] != times:
                    problems.append(f"step {name!r} body ran {counted[name]} times, expected {times}")
        return problems

    async def close(self) -> None:
        for worker in self.workers:
            worker.freeze(False)
            await worker.kill()


def compare_steps(recorded: Sequence[tuple[str, ...]], expected: Sequence[tuple[str, ...]]) -> list[str]:
    """Problems naming each step ID whose record differs from the expected one, is missing
    or is extra. (IDs and names are what replay depends on; the order in which concurrent
    scopes record their steps is not, so records are matched by ID.)"""
    got = {r[0]: tuple(r) for r in recorded}
    want = {e[0]: tuple(e) for e in expected}
    problems = []
    for step_id, record in want.items():
        if step_id not in got:
            problems.append(f"step {step_id!r}: not recorded, expected {record}")
        elif got[step_id] != record:
            problems.append(f"step {step_id!r}: recorded {got[step_id]}, expected {record}")
    problems += [f"step {i!r}: recorded {r}, not expected" for i, r in got.items() if i not in want]
    return problems


def modes(scenario: Scenario) -> tuple[str, ...]:
    """The modes worth running: suspension changes nothing for a scenario without waits."""
    return MODES if scenario.waits else ("normal",)


async def run(
    scenario: Scenario,
    mode: str,
    command: WorkerCommand,
    *,
    client: Client,
    address: str,
    directory: Path,
    coordinator: CoordinatorControl | None = None,
) -> Outcome:
    """Runs one scenario in one mode against a fresh worker of ``command``."""
    r = Run(scenario, mode, command, client, address, directory, coordinator)
    try:
        return await r.outcome()
    except Exception as exc:
        return Outcome(scenario.name, mode, [f"{type(exc).__name__}: {exc}"])
    finally:
        await r.close()
