"""The benchmark harness runs end to end at its smallest sizes (``python -m bench --quick``).

Only that it finishes and prints its table is checked: its figures are never asserted.
DBOS is benchmarked beside Stepline when the ``bench`` extra is installed; (a) and (b) are
run with a TypeScript and a Go worker too where Node.js and npm, and Go, are (the harness builds them).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys

import pytest

from tests.e2e.processes import ROOT

pytestmark = pytest.mark.e2e


def test_quick_benchmark_runs_and_prints_the_table() -> None:
    args = [sys.executable, "-m", "bench", "--quick"]
    if importlib.util.find_spec("dbos") is None:
        args.append("--skip-dbos")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GRPC_VERBOSITY": "ERROR"}
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr[-4000:]}"
    assert "| workload | DBOS | Stepline | ratio | target |" in done.stdout
    if shutil.which("node") and shutil.which("npm"):
        assert "(a) step in a 10-step workflow, median — TypeScript worker" in done.stdout
        assert "steps at once: steps/s — TypeScript worker" in done.stdout
    if shutil.which("go"):
        assert "(a) step in a 10-step workflow, median — Go worker" in done.stdout
        assert "steps at once: steps/s — Go worker" in done.stdout
