"""Sampling profiles of Stepline's coordinator and worker with py-spy, and their summaries.

py-spy (in the ``bench`` extra) attaches to a running process by PID and samples its
Python stacks without stopping it (``--nonblocking``); idle samples (threads waiting in
epoll) are left out. A summary lists the functions with the most samples of their own
("self") and in total ("inclusive"), with the CPU microseconds per step they stand for
(the process's measured CPU time, spread over the samples).
"""

from __future__ import annotations

import asyncio
import functools
import re
import shutil
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Protocol

from bench.resources import CpuMeter

RATE = 200  # samples per second

_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
_FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def py_spy() -> str | None:
    found = shutil.which("py-spy")
    if found:
        return found
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else None


class Recording:
    """``py-spy record`` running against one process until ``stop()``."""

    def __init__(self, proc: asyncio.subprocess.Process, output: Path) -> None:
        self.proc = proc
        self.output = output

    @classmethod
    async def start(cls, pid: int, output: Path, log: Path) -> Recording:
        exe = py_spy()
        if exe is None:
            raise RuntimeError("py-spy is not installed (pip install -e '.[bench]')")
        with log.open("ab") as err:
            proc = await asyncio.create_subprocess_exec(
                exe,
                "record",
                "--pid",
                str(pid),
                "--rate",
                str(RATE),
                "--nonblocking",
                "--format",
                "raw",
                "--output",
                str(output),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=err,
            )
        return cls(proc, output)

    async def stop(self) -> None:
        """Stops sampling; py-spy writes its output on SIGINT."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


def _short(path: str) -> str:
    for marker in ("site-packages/", "/work/main/", "lib/python3."):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "lib/python3.":
                path = "stdlib/" + path.split("/", 1)[-1]
    return path


def _frame(raw: str) -> str:
    m = _FRAME.match(raw.strip())
    return f"{m['fn']} ({_short(m['file'])})" if m else raw.strip()


# A thread waiting in epoll is idle; py-spy does not always see that with --nonblocking.
_IDLE = ("EpollSelector.select (",)
# Frames on every stack (interpreter start, the event loop's own loop): not informative.
_PLUMBING = re.compile(
    r"^(<module>|_run_module_as_main|_run_code|main|run|Runner\.run|BaseEventLoop\.run_(until_complete|forever)"
    r"|BaseEventLoop\._run_once|Handle\._run|Thread\.(run|_bootstrap|_bootstrap_inner)) "
)


def _package(frame: str) -> str:
    """The top-level package (or stdlib module) a frame's file belongs to."""
    file = frame[frame.rfind("(") + 1 : -1]
    if file.startswith("stdlib/"):
        return "stdlib " + file.split("/")[1].removesuffix(".py")
    if file.startswith("<"):
        return "python"
    return file.split("/")[0].removesuffix(".py")


def summarize(raw_profile: Path, title: str, steps: int, cpu_seconds: float, top: int = 15) -> str:
    """A markdown summary of a raw py-spy profile taken while ``steps`` steps ran.

    py-spy's samples say where the time went, not how much there was: with
    ``--nonblocking`` it also counts some waiting as busy. So shares come from the
    samples and microseconds from the CPU time the process really used (``cpu_seconds``,
    from /proc), spread over the samples.
    """
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    for line in raw_profile.read_text().splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        n = int(m["count"])
        frames = [_frame(f) for f in m["stack"].split(";") if f]
        if not frames or frames[-1].startswith(_IDLE):
            continue
        total += n
        leaf = frames[-1]
        if _PLUMBING.match(leaf):
            # Nothing in Python above the entry frame: the thread is in C code (uvloop's
            # loop, grpc's poller thread), running or waiting.
            leaf = "(C code below the event loop or thread entry: uvloop, grpc; busy or waiting)"
            packages["(C below the entry frame)"] += n
        else:
            packages[_package(leaf)] += n
        own[leaf] += n
        for f in set(frames):
            if not _PLUMBING.match(f):
                inclusive[f] += n
    if total == 0:
        return f"### {title}\n\nno samples (py-spy saw no busy Python thread)\n"
    per_sample = cpu_seconds * 1e6 / total / steps  # CPU µs per step one sample stands for

    def listing(counts: Counter[str]) -> list[str]:
        return [f"| {n / total:.1%} | {n * per_sample:.1f} | `{fn}` |" for fn, n in counts.most_common(top)]

    return "\n".join(
        [
            f"### {title}",
            "",
            f"The process used {cpu_seconds:.2f} CPU s (/proc) for {steps:,} steps: "
            f"{cpu_seconds * 1e6 / steps:.0f} µs per step. py-spy took {total} busy samples at {RATE}/s.",
            "",
            "Self time by package:",
            "",
            "| share | µs/step | package |",
            "|---:|---:|---|",
            *listing(packages),
            "",
            "Self (the function itself was on top of the stack):",
            "",
            "| share | µs/step | function |",
            "|---:|---:|---|",
            *listing(own),
            "",
            "Inclusive (the function was anywhere on the stack; interpreter and event-loop frames left out):",
            "",
            "| share | µs/step | function |",
            "|---:|---:|---|",
            *listing(inclusive),
            "",
        ]
    )


class Profiled(Protocol):
    def profile_targets(self) -> dict[str, int]: ...

    async def throughput(self, workflows: int, steps: int) -> float: ...


async def profile(system: Profiled, workflows: int, steps: int, repeats: int, out_dir: Path) -> list[str]:
    """Records every target process of ``system`` during ``repeats`` throughput runs of
    ``workflows`` workflows; returns the summaries.

    Repeats rather than one bigger run: a burst of more than 1,000 concurrent unary calls
    makes the coordinator's gRPC server cancel some of them (gRPC's default
    ``grpc.server.max_pending_requests`` is 1,000)."""
    recordings = {
        role: await Recording.start(pid, out_dir / f"profile-{role}.txt", out_dir / "py-spy.log")
        for role, pid in system.profile_targets().items()
    }
    await asyncio.sleep(1.0)  # py-spy attaches
    meter = CpuMeter({role: functools.partial(list, [pid]) for role, pid in system.profile_targets().items()})
    seconds = 0.0
    meter.start()
    try:
        for _ in range(repeats):
            seconds += await system.throughput(workflows, steps)
    finally:
        used = meter.stop()
        for recording in recordings.values():
            await recording.stop()
    total = workflows * steps * repeats
    sections = [
        f"{repeats} runs of (b), {workflows:,} workflows x {steps} steps: {total:,} steps in {seconds:.2f} s "
        f"({total / seconds:,.0f} steps/s under the profiler)."
    ]
    for role, recording in recordings.items():
        if recording.output.exists():
            sections.append(summarize(recording.output, role, total, used[role]))
        else:
            sections.append(f"### {role}\n\npy-spy wrote no profile; see {out_dir / 'py-spy.log'}\n")
    return sections
