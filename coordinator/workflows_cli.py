"""``stepline workflows count|cancel|resume|fork``: control and inspect workflows on a
running coordinator, as a client (the SDK only; no database).

Exit codes: 0 done, 1 refused (no such workflow, not resumable, ...), 2 the coordinator
could not be reached or asked.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

_BY = ("name", "version", "status")


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of every command that talks to a running coordinator."""
    parser.add_argument(
        "--address", default=os.environ.get("STEPLINE_ADDRESS", "127.0.0.1:7420"), help="the coordinator"
    )
    parser.add_argument("--api-key", default=os.environ.get("STEPLINE_API_KEY"), help="its API key")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="workflows_command", required=True)
    count = commands.add_parser("count", help="count workflows (by default the open ones) per group")
    count.add_argument(
        "--by", default="version", help=f"comma-separated fields to group by, of {', '.join(_BY)}"
    )
    count.add_argument("--status", action="append", help="only this status (repeatable); default: open")
    count.add_argument("--name", help="only workflows of this name")
    count.add_argument("--json", action="store_true", help="one JSON object per group")
    cancel = commands.add_parser("cancel", help="cancel a workflow and its unfinished descendants")
    cancel.add_argument("workflow_id")
    cancel.add_argument("--reason", default="cancelled from the command line")
    resume = commands.add_parser("resume", help="run a failed, cancelled, timed-out or paused workflow again")
    resume.add_argument("workflow_id")
    resume.add_argument("--version", help="hand it to workers of this version from now on")
    fork = commands.add_parser("fork", help="start a new run that reuses the steps before --from-step")
    fork.add_argument("workflow_id")
    fork.add_argument("--from-step", required=True, help="the first step ID to run again")
    fork.add_argument("--new-id", help="the new run's workflow ID")
    fork.add_argument("--version", help="hand the new run to workers of this version")
    for sub in (count, cancel, resume, fork):
        add_client_arguments(sub)


def run(args: argparse.Namespace) -> int:
    command: Callable[[Any, argparse.Namespace], Awaitable[None]] = _COMMANDS[args.workflows_command]
    return asyncio.run(_with_client(args, command))


async def _with_client(
    args: argparse.Namespace, command: Callable[[Any, argparse.Namespace], Awaitable[None]]
) -> int:
    from worker_sdk import Client, errors

    client = Client(args.address, api_key=args.api_key)
    try:
        await command(client, args)
    except (errors.CoordinatorUnavailableError, errors.AuthenticationError, ValueError) as exc:
        print(f"stepline workflows {args.workflows_command}: {exc}", file=sys.stderr)
        return 2
    except errors.SteplineError as exc:
        print(f"stepline workflows {args.workflows_command}: {exc}", file=sys.stderr)
        return 1
    finally:
        await client.close()
    return 0


async def _count(client: Any, args: argparse.Namespace) -> None:
    from worker_sdk import WorkflowStatus

    by = [b.strip() for b in args.by.split(",") if b.strip()]
    unknown = [b for b in by if b not in _BY]
    if unknown:
        raise ValueError(f"cannot count by {', '.join(unknown)}; choose from {', '.join(_BY)}")
    try:
        statuses = [WorkflowStatus[s.upper()] for s in args.status or ()]
    except KeyError as exc:
        raise ValueError(f"unknown status {exc.args[0]}") from None
    counts = await client.count_workflows(by, status=statuses, name=args.name)
    if args.json:
        for c in counts:
            group = {b: _cell(c, b) for b in by}
            print(json.dumps({**group, "count": c.count}))
        return
    header = [b.upper() for b in by] + ["COUNT"]
    table = [[_text(_cell(c, b)) for b in by] + [str(c.count)] for c in counts]
    widths = [max(len(row[i]) for row in [header, *table]) for i in range(len(header))]
    for row in [header, *table]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _cell(count: Any, field: str) -> str | None:
    value = getattr(count, field)
    if value is None:
        return None
    return str(value.name if field == "status" else value)


def _text(value: str | None) -> str:
    return "(not taken yet)" if value is None else (value or '""')


async def _cancel(client: Any, args: argparse.Namespace) -> None:
    cancelled = await client.cancel(args.workflow_id, args.reason)
    print(
        f"cancelled {len(cancelled)}: {' '.join(cancelled)}"
        if cancelled
        else "nothing to cancel: it had finished"
    )


async def _resume(client: Any, args: argparse.Namespace) -> None:
    handle = await client.resume(args.workflow_id, version=args.version)
    print(f"resumed {handle.workflow_id}")


async def _fork(client: Any, args: argparse.Namespace) -> None:
    handle = await client.fork(
        args.workflow_id, args.from_step, new_workflow_id=args.new_id, version=args.version
    )
    print(f"forked {args.workflow_id} as {handle.workflow_id}")


_COMMANDS: dict[str, Callable[[Any, argparse.Namespace], Awaitable[None]]] = {
    "count": _count,
    "cancel": _cancel,
    "resume": _resume,
    "fork": _fork,
}
