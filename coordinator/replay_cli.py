"""``stepline replay-check``: replays recorded workflows against local code (see
``worker_sdk.replay``) and exits 1 if any diverges, so that CI can gate a deploy on it.

Exit codes: 0 all compatible, 1 some diverge, 2 the check could not run (no such module,
no workflow in it, the coordinator unreachable).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from coordinator.cli_client import add_client_arguments, parse_age


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--module", required=True, help="a Python file or module with the workflow functions")
    parser.add_argument("--workflow", help="check only workflows of this name")
    parser.add_argument("--since", type=parse_age, help="only workflows created this recently: 30m, 12h, 1d")
    parser.add_argument("--limit", type=int, help="check at most this many workflows (newest first)")
    add_client_arguments(parser)


def run(args: argparse.Namespace) -> int:
    try:
        workflows = _workflows(args.module)
    except (ImportError, OSError) as exc:
        print(f"replay-check: cannot load {args.module}: {exc}", file=sys.stderr)
        return 2
    if not workflows:
        print(f"replay-check: {args.module} defines no @workflow functions", file=sys.stderr)
        return 2
    return asyncio.run(_check(args, workflows))


async def _check(args: argparse.Namespace, workflows: list[Any]) -> int:
    from worker_sdk import Client, errors
    from worker_sdk.replay import check

    since = datetime.now(UTC) - args.since if args.since is not None else None
    client = Client(args.address, api_key=args.api_key)
    try:
        verdicts, skipped = await check(client, workflows, name=args.workflow, since=since, limit=args.limit)
    except errors.SteplineError as exc:
        print(f"replay-check: {exc}", file=sys.stderr)
        return 2
    finally:
        await client.close()
    for verdict in verdicts:
        print(verdict)
    diverged = sum(not v.compatible for v in verdicts)
    names = sorted({s.workflow_name for s in skipped})
    note = f"; {len(skipped)} skipped (no code here for {', '.join(names)})" if skipped else ""
    print(f"{len(verdicts)} checked, {diverged} diverge{note}")
    return 1 if diverged else 0


def _workflows(module: str) -> list[Any]:
    from worker_sdk import Workflow

    path = Path(module)
    if path.suffix == ".py" or path.exists():
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"{module} is not a Python file")
        loaded = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = loaded
        spec.loader.exec_module(loaded)
    else:
        loaded = importlib.import_module(module)
    return [v for v in vars(loaded).values() if isinstance(v, Workflow)]
