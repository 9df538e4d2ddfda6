"""``stepline workflows list|show|count|cancel|resume|fork``: inspect and control
workflows on a running coordinator, as a client (the SDK only; no database). Exit codes
as in ``cli_client``."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from coordinator import cli_client
from coordinator.steps_tree import render_steps

_BY = ("name", "version", "status")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="workflows_command", required=True)
    listing = commands.add_parser("list", help="list workflows, newest first")
    listing.add_argument("--status", action="append", help="only this status (repeatable)")
    listing.add_argument("--name", help="only workflows of this name")
    listing.add_argument("--version", help="only runs recorded under this worker version")
    listing.add_argument(
        "--since", type=cli_client.parse_age, help="only those created this recently: 30m, 1d"
    )
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    listing.add_argument("--json", action="store_true", help="one JSON object per workflow")
    show = commands.add_parser("show", help="one workflow: status, input, outcome, its steps as a tree")
    show.add_argument("workflow_id")
    show.add_argument("--json", action="store_true", help="the workflow and its steps as one JSON object")
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
    for sub in (listing, show, count, cancel, resume, fork):
        cli_client.add_client_arguments(sub)


def run(args: argparse.Namespace) -> int:
    return cli_client.run(args, f"workflows {args.workflows_command}", _COMMANDS[args.workflows_command])


def _statuses(names: list[str] | None) -> list[Any]:
    from worker_sdk import WorkflowStatus

    known = {s.name for s in WorkflowStatus}
    unknown = [n for n in names or () if n.upper() not in known]
    if unknown:
        raise ValueError(f"unknown status {unknown[0]}; choose from {', '.join(sorted(known))}")
    return [WorkflowStatus[n.upper()] for n in names or ()]


async def _list(client: Any, args: argparse.Namespace) -> None:
    since = datetime.now(UTC) - args.since if args.since is not None else None
    page, _ = await client.list_workflows(
        name=args.name,
        status=_statuses(args.status),
        version=args.version,
        created_after=since,
        limit=args.limit,
        descending=True,
    )
    if args.json:
        for w in page:
            print(json.dumps(_workflow_doc(w)))
        return
    rows = [
        [
            w.workflow_id,
            w.workflow_name,
            w.status.name,
            _text(w.version),
            _when(w.created_at),
            w.owner_worker_id or "-",
        ]
        for w in page
    ]
    cli_client.table(["workflow id", "name", "status", "version", "created", "worker"], rows)


async def _show(client: Any, args: argparse.Namespace) -> None:
    info = await client.get_workflow(args.workflow_id)
    steps = await client.list_steps(args.workflow_id)
    if args.json:
        print(json.dumps({**_workflow_doc(info), "steps": [_step_doc(s) for s in steps]}))
        return
    fields = [
        ("workflow", f"{info.workflow_id} ({info.workflow_name})"),
        ("status", info.status.name + (" (suspended)" if info.suspended else "")),
        ("version", _text(info.version)),
        (
            "worker",
            f"{info.owner_worker_id or '-'} (epoch {info.epoch}, {info.recovery_attempts} recoveries)",
        ),
        ("created", _when(info.created_at)),
        ("completed", _when(info.completed_at)),
        ("input", json.dumps(info.input)),
    ]
    if info.parent_workflow_id:
        fields.append(("parent", f"{info.parent_workflow_id} (step {info.parent_step_id})"))
    if info.error is not None:
        fields.append(("error", f"{info.error.type}: {info.error.message}"))
    elif info.status.name == "SUCCEEDED":
        fields.append(("output", json.dumps(info.output)))
    for label, value in fields:
        print(f"{label + ':':<11}{value}")
    print(f"steps:     {len(steps)}")
    for line in render_steps(steps):
        print("  " + line)


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value is not None else "-"


def _workflow_doc(w: Any) -> dict[str, Any]:
    return {
        "workflow_id": w.workflow_id,
        "name": w.workflow_name,
        "status": w.status.name,
        "version": w.version,
        "worker": w.owner_worker_id,
        "epoch": w.epoch,
        "created_at": w.created_at.isoformat() if w.created_at else None,
        "completed_at": w.completed_at.isoformat() if w.completed_at else None,
        "input": w.input,
        "output": w.output,
        "error": {"type": w.error.type, "message": w.error.message} if w.error else None,
    }


def _step_doc(s: Any) -> dict[str, Any]:
    return {
        "step_id": s.step_id,
        "name": s.step_name,
        "kind": s.kind.name,
        "status": s.status.name,
        "attempts": s.attempts,
        "worker": s.worker_id,
        "epoch": s.epoch,
        "started_at": s.started_at.isoformat() if s.started_at else None,
        "completed_at": s.completed_at.isoformat() if s.completed_at else None,
        "output": s.output,
        "error": {"type": s.error.type, "message": s.error.message} if s.error else None,
    }


async def _count(client: Any, args: argparse.Namespace) -> None:
    by = [b.strip() for b in args.by.split(",") if b.strip()]
    unknown = [b for b in by if b not in _BY]
    if unknown:
        raise ValueError(f"cannot count by {', '.join(unknown)}; choose from {', '.join(_BY)}")
    statuses = _statuses(args.status)
    counts = await client.count_workflows(by, status=statuses, name=args.name)
    if args.json:
        for c in counts:
            group = {b: _cell(c, b) for b in by}
            print(json.dumps({**group, "count": c.count}))
        return
    cli_client.table([*by, "count"], [[_text(_cell(c, b)) for b in by] + [str(c.count)] for c in counts])


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


_COMMANDS: dict[str, cli_client.Command] = {
    "list": _list,
    "show": _show,
    "count": _count,
    "cancel": _cancel,
    "resume": _resume,
    "fork": _fork,
}
