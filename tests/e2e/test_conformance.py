"""The conformance suite (conformance/) for every SDK: each scenario its worker declares,
in each mode, through a live coordinator that the scenarios may kill and restart."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from conformance import runner
from tests.e2e import typescript
from tests.e2e.conftest import ClusterFactory
from tests.e2e.golang import GO_MODULE
from tests.e2e.processes import ROOT

SCENARIOS = {s.name: s for s in runner.load()}
PYTHON = runner.WorkerCommand(
    "python", (sys.executable, "-m", "conformance.python_worker"), ROOT, {"PYTHONPATH": str(ROOT)}
)
LANGUAGES = ("python", "go", "typescript")
CASES = [
    pytest.param(language, name, mode, id=f"{language}-{name}-{mode}")
    for language in LANGUAGES
    for name, scenario in SCENARIOS.items()
    for mode in runner.modes(scenario)
]


@pytest.fixture(scope="session")
def workers() -> Iterator[dict[str, runner.WorkerCommand]]:
    """Every SDK's interpreter worker, built once per session."""
    out = Path(tempfile.mkdtemp(prefix="stepline-conformance-"))
    go = ["go", "build", "-o", str(out / "go-conformance"), "./conformance"]
    built = subprocess.run(go, cwd=GO_MODULE, capture_output=True, text=True, check=False)
    assert built.returncode == 0, built.stdout + built.stderr
    typescript.build()
    ts = runner.WorkerCommand(
        "typescript", ("node", str(typescript.TS / "dist/conformance/worker.js")), typescript.TS
    )
    yield {
        "python": PYTHON,
        "go": runner.WorkerCommand("go", (str(out / "go-conformance"),), GO_MODULE),
        "typescript": ts,
    }
    shutil.rmtree(out, ignore_errors=True)


@pytest.mark.parametrize(("language", "scenario", "mode"), CASES)
async def test_conformance(
    cluster: ClusterFactory,
    tmp_path: Path,
    workers: dict[str, runner.WorkerCommand],
    language: str,
    scenario: str,
    mode: str,
) -> None:
    c = await cluster(lease_ms="500")
    outcome = await runner.run(
        SCENARIOS[scenario],
        mode,
        workers[language],
        client=c.client,
        address=c.address,
        directory=tmp_path,
        coordinator=c,
    )
    assert not outcome.skipped, str(outcome)
    assert outcome.passed, str(outcome)


async def test_a_worker_that_calls_steps_in_the_wrong_order_fails_with_the_scenario_and_step_named(
    cluster: ClusterFactory, tmp_path: Path
) -> None:
    c = await cluster()
    broken = runner.WorkerCommand(
        "python", PYTHON.argv, PYTHON.cwd, {**PYTHON.env, "CONFORMANCE_BROKEN": "reorder"}
    )
    outcome = await runner.run(
        SCENARIOS["fresh-run"], "normal", broken, client=c.client, address=c.address, directory=tmp_path
    )
    assert not outcome.passed
    report = str(outcome)
    assert report.startswith("fresh-run [normal]: FAILED"), report
    assert "step '1': recorded ('1', 'b', 'SUCCEEDED'), expected ('1', 'a', 'SUCCEEDED')" in report, report
