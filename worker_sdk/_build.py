"""The default version (build ID) of a worker: derived from its workflow code.

A workflow run is handed only to workers of the version that first ran it (see
docs/protocol.md, "Versions"), so the default must change whenever code a replay depends
on may have changed: it hashes the source files of the modules that define the worker's
workflows (what calls the steps, in which order), with the workflow names. Step bodies
in other modules may change freely; the calls do not move. Like DBOS's application
version, a deploy of changed code gets a new version, and runs of the old one wait for a
worker of the old code, or for a fork, or for an auto-upgrade (``@workflow(auto_upgrade=True)``).
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Iterable
from pathlib import Path

from worker_sdk._definitions import WorkflowDefinition


def derive_version(definitions: Iterable[WorkflowDefinition]) -> str:
    """``"py-"`` and 16 hex digits of a SHA-256 over the workflow names and the source of
    the modules that define them (the function's own source where no file is found)."""
    digest = hashlib.sha256()
    sources: dict[str, bytes] = {}
    for d in sorted(definitions, key=lambda d: d.name):
        digest.update(d.name.encode() + b"\0")
        fn = inspect.unwrap(d.fn)
        path = inspect.getsourcefile(fn)
        if path is not None and Path(path).is_file():
            sources.setdefault(path, Path(path).read_bytes())
        else:
            sources.setdefault(f"<{d.name}>", _source_of(fn))
    for _, text in sorted(sources.items(), key=lambda kv: hashlib.sha256(kv[1]).digest()):
        # By content, not by path: the same code checked out elsewhere has the same version.
        digest.update(hashlib.sha256(text).digest())
    return "py-" + digest.hexdigest()[:16]


def _source_of(fn: object) -> bytes:
    try:
        return inspect.getsource(fn).encode()  # type: ignore[arg-type]
    except (OSError, TypeError):
        return repr(fn).encode()
