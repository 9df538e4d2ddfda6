"""What every ``stepline`` command that talks to a running coordinator shares: the address
and key flags, running the command with a Client and its exit codes, and table output.

Exit codes: 0 done, 1 refused (no such workflow, not resumable, ...), 2 the coordinator
could not be reached or asked (unreachable, bad key, bad arguments).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

Command = Callable[[Any, argparse.Namespace], Awaitable[None]]


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--address", default=os.environ.get("STEPLINE_ADDRESS", "127.0.0.1:7420"), help="the coordinator"
    )
    parser.add_argument("--api-key", default=os.environ.get("STEPLINE_API_KEY"), help="its API key")


def run(args: argparse.Namespace, name: str, command: Command) -> int:
    """Runs ``command(client, args)``; ``name`` ("workflows list") prefixes error messages."""
    return asyncio.run(_with_client(args, name, command))


async def _with_client(args: argparse.Namespace, name: str, command: Command) -> int:
    from worker_sdk import Client, errors

    client = Client(args.address, api_key=args.api_key)
    try:
        await command(client, args)
    except (errors.CoordinatorUnavailableError, errors.AuthenticationError, ValueError) as exc:
        print(f"stepline {name}: {exc}", file=sys.stderr)
        return 2
    except errors.SteplineError as exc:
        print(f"stepline {name}: {exc}", file=sys.stderr)
        return 1
    finally:
        await client.close()
    return 0


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Prints rows in left-aligned columns under an upper-case header."""
    lines = [[h.upper() for h in header], *[list(r) for r in rows]]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def age(seconds: float) -> str:
    """A short duration: 850ms, 12.3s, 4m05s, 2h10m."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_age(text: str) -> timedelta:
    """``30m``, ``12h``, ``1d``: for --since."""
    found = re.fullmatch(r"(\d+)([smhd])", text.strip())
    if found is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not an age such as 30m, 12h or 1d")
    return timedelta(seconds=int(found.group(1)) * _UNITS[found.group(2)])
