"""CPU time and memory of processes, read from /proc (Linux only).

CPU time is ``utime + stime`` from ``/proc/<pid>/stat``; memory is ``VmRSS`` from
``/proc/<pid>/status``. A process that exits between two readings loses what it used
since the first; one that starts in between counts from zero.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces: split after it.
    return text[text.rfind(")") + 2 :].split()


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU seconds used by ``pid`` so far, or None if it is gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    # Fields 14 and 15 of stat (utime, stime); 0 here is field 3.
    return (int(fields[11]) + int(fields[12])) / _TICKS


def rss_bytes(pid: int) -> int | None:
    """Resident memory of ``pid``, or None if it is gone."""
    with contextlib.suppress(OSError, ValueError), open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return None


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def children(parent: int) -> list[int]:
    """Direct children of ``parent``."""
    found = []
    for pid in _all_pids():
        fields = _stat_fields(pid)
        if fields is not None and int(fields[1]) == parent:
            found.append(pid)
    return found


def pids_named(name: str) -> list[int]:
    """Processes whose command name is ``name``."""
    found = []
    for pid in _all_pids():
        with contextlib.suppress(OSError), open(f"/proc/{pid}/comm") as f:
            if f.read().strip() == name:
                found.append(pid)
    return found


PidSource = Callable[[], Iterable[int]]


@dataclass
class CpuMeter:
    """CPU seconds used by groups of processes between ``start()`` and ``stop()``."""

    groups: Mapping[str, PidSource]
    _before: dict[str, dict[int, float]] | None = None

    def _read(self) -> dict[str, dict[int, float]]:
        readings: dict[str, dict[int, float]] = {}
        for group, source in self.groups.items():
            readings[group] = {}
            for pid in source():
                seconds = cpu_seconds(pid)
                if seconds is not None:
                    readings[group][pid] = seconds
        return readings

    def start(self) -> None:
        self._before = self._read()

    def stop(self) -> dict[str, float]:
        """CPU seconds per group since ``start()``."""
        assert self._before is not None, "start() first"
        after = self._read()
        used = {}
        for group, pids in after.items():
            before = self._before.get(group, {})
            used[group] = sum(max(0.0, s - before.get(pid, 0.0)) for pid, s in pids.items())
        return used
