"""One workflow in three codes, for the e2e tests of worker versions (effects: flows.py).

CODE picks the code: "1" (the first release), "2" (a compatible change: only what runs
after the recv differs), "broken" (step 1 is another step: replaying a "1" history
diverges there). The version each worker registers comes from STEPLINE_WORKER_VERSION,
and AUTO_UPGRADE=1 marks the workflow auto-upgrading.
"""

from __future__ import annotations

import os
from typing import Any

from tests.e2e.programs.flows import effect
from worker_sdk import Workflow, recv, step, workflow

CODE = os.environ.get("CODE", "1")


@step()
async def prepare(n: int) -> int:
    effect(f"prepare {n}")
    return n


@step()
async def prepare_differently(n: int) -> int:
    effect(f"prepare differently {n}")
    return n


@step()
async def finish(release: str, value: str) -> str:
    effect(f"finish {release}")
    return f"{release}:{value}"


@workflow(name="e2e.versioned", auto_upgrade=os.environ.get("AUTO_UPGRADE") == "1")
async def versioned(n: int) -> str:
    x = await (prepare_differently(n) if CODE == "broken" else prepare(n))
    go = await recv("go")
    return await finish("v1" if CODE == "1" else "v2", f"{x}{go}")


VERSIONS: list[Workflow[Any, Any]] = [versioned]
