"""``stepline workers list``: the connected workers on every coordinator of the database."""

from __future__ import annotations

import argparse
import json
from typing import Any

from coordinator import cli_client


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="workers_command", required=True)
    listing = commands.add_parser("list", help="connected workers: language, version, capacity, load")
    listing.add_argument("--json", action="store_true", help="one JSON object per worker")
    cli_client.add_client_arguments(listing)


def run(args: argparse.Namespace) -> int:
    return cli_client.run(args, "workers list", _list)


async def _list(client: Any, args: argparse.Namespace) -> None:
    workers = await client.list_workers()
    if args.json:
        for w in workers:
            print(
                json.dumps(
                    {
                        "worker_id": w.worker_id,
                        "coordinator_id": w.coordinator_id,
                        "local": w.local,
                        "language": w.language,
                        "sdk_version": w.sdk_version,
                        "version": w.version,
                        "capacity": w.capacity,
                        "in_flight": w.in_flight,
                        "workflow_names": list(w.workflow_names),
                        "heartbeat_age_s": round(w.heartbeat_age, 3),
                    }
                )
            )
        return
    rows = [
        [
            w.worker_id,
            f"{w.language} {w.sdk_version}".strip(),
            w.version or '""',
            f"{w.in_flight}/{w.capacity}",
            cli_client.age(w.heartbeat_age) + ("" if w.local else " (lease)"),
            ",".join(w.workflow_names),
        ]
        for w in workers
    ]
    cli_client.table(["worker id", "language", "version", "in flight", "heard", "serves"], rows)
