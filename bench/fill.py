"""Bulk-filling both systems' tables with finished workflows, in SQL (for workload f).

Rows are made with ``INSERT ... SELECT generate_series`` in chunks, shaped like the rows
each system writes itself: random UUID workflow IDs (what both generate), ten no-op steps
per workflow, small JSON (Stepline) or pickled (DBOS) values. Only columns that exist
are written, so a column added later with a default does not break the fill.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any

log = logging.getLogger("bench")

Connection = Any  # asyncpg.Connection; asyncpg ships no type information.

CHUNK_WORKFLOWS = 50_000

_STEPLINE_WORKFLOW = {
    "workflow_id": "gen_random_uuid()::text",
    "name": "'bench.filler'",
    "status": "'SUCCEEDED'",
    "input": "convert_to('{\"args\":[10],\"kwargs\":{}}', 'UTF8')",
    "input_encoding": "'json'",
    "output": "convert_to('10', 'UTF8')",
    "output_encoding": "'json'",
    "epoch": "1",
    "created_at": "now()",
    "updated_at": "now()",
    "started_at": "now()",
    "completed_at": "now()",
}
_STEPLINE_STEP = {
    "workflow_seq": "w.seq",
    "step_id": "s::text",
    "name": "'noop'",
    "status": "'SUCCEEDED'",
    "output": "convert_to(s::text, 'UTF8')",
    "output_encoding": "'json'",
    "attempts": "1",
    "worker_id": "'bench-filler'",
    "epoch": "1",
    "started_at": "now()",
    "completed_at": "now()",
}

# Pickled 7, and pickled {"args": (10,), "kwargs": {}}, as DBOS stores them (base64).
_DBOS_VALUE = "'gARLBy4='"
_DBOS_INPUTS = "'gASVGwAAAAAAAAB9lCiMBGFyZ3OUSwqFlIwGa3dhcmdzlH2UdS4='"
_DBOS_WORKFLOW = {
    "workflow_uuid": "id",
    "status": "'SUCCESS'",
    "name": "'bench.filler'",
    "executor_id": "'bench-filler'",
    "created_at": "ms",
    "updated_at": "ms",
    "completed_at": "ms",
    "application_version": "'bench-filler'",
    "application_name": "'stepline-bench'",
    "serialization": "'py_pickle'",
    "recovery_attempts": "1",
    "priority": "0",
}
_DBOS_INPUT = {"workflow_uuid": "id", "inputs": _DBOS_INPUTS}
_DBOS_OUTPUT = {"workflow_uuid": "id", "output": _DBOS_VALUE}
_DBOS_STEP = {
    "workflow_uuid": "id",
    "function_id": "s",
    "function_name": "'noop'",
    "output": _DBOS_VALUE,
    "started_at_epoch_ms": "ms",
    "completed_at_epoch_ms": "ms",
    "serialization": "'py_pickle'",
    "application_name": "'stepline-bench'",
}


async def _columns(conn: Connection, schema: str, table: str) -> set[str]:
    rows = await conn.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2",
        schema,
        table,
    )
    return {r[0] for r in rows}


async def _shape(conn: Connection, schema: str, table: str, wanted: Mapping[str, str]) -> tuple[str, str]:
    """The column list and the matching SELECT list for the columns ``table`` has."""
    present = await _columns(conn, schema, table)
    if not present:
        raise RuntimeError(f"table {schema}.{table} does not exist")
    names = [c for c in wanted if c in present]
    return ", ".join(names), ", ".join(wanted[c] for c in names)


async def fill_stepline(conn: Connection, steps: int, steps_per_workflow: int = 10) -> None:
    """Adds ``steps`` recorded steps (in finished workflows) to Stepline's tables."""
    wf_cols, wf_values = await _shape(conn, "public", "workflows", _STEPLINE_WORKFLOW)
    st_cols, st_values = await _shape(conn, "public", "steps", _STEPLINE_STEP)
    sql = f"""
        WITH w AS (
            INSERT INTO workflows ({wf_cols}) SELECT {wf_values} FROM generate_series(1, $1::int)
            RETURNING seq
        )
        INSERT INTO steps ({st_cols})
        SELECT {st_values} FROM w CROSS JOIN generate_series(1, $2::int) AS s
    """
    await _chunks(conn, sql, steps, steps_per_workflow, "stepline")


async def fill_dbos(conn: Connection, steps: int, steps_per_workflow: int = 10, schema: str = "dbos") -> None:
    """Adds ``steps`` recorded steps (in finished workflows) to DBOS's system tables."""
    parts = []
    for table, wanted in (
        ("workflow_status", _DBOS_WORKFLOW),
        ("workflow_input", _DBOS_INPUT),
        ("workflow_output", _DBOS_OUTPUT),
    ):
        if await _columns(conn, schema, table):  # the input/output tables are recent
            cols, values = await _shape(conn, schema, table, wanted)
            parts.append(f"{table} AS (INSERT INTO {schema}.{table} ({cols}) SELECT {values} FROM w)")
    st_cols, st_values = await _shape(conn, schema, "operation_outputs", _DBOS_STEP)
    sql = f"""
        WITH w AS (
            SELECT gen_random_uuid()::text AS id, (extract(epoch FROM now()) * 1000)::bigint AS ms
            FROM generate_series(1, $1::int)
        ), {", ".join(parts)}
        INSERT INTO {schema}.operation_outputs ({st_cols})
        SELECT {st_values} FROM w CROSS JOIN generate_series(1, $2::int) AS s
    """
    await _chunks(conn, sql, steps, steps_per_workflow, "dbos")


async def _chunks(conn: Connection, sql: str, steps: int, per_workflow: int, what: str) -> None:
    workflows = max(1, steps // per_workflow)
    started = time.monotonic()
    done = 0
    while done < workflows:
        n = min(CHUNK_WORKFLOWS, workflows - done)
        await conn.execute(sql, n, per_workflow)
        done += n
        log.info(
            "fill %s: %d/%d steps (%.0f s)", what, done * per_workflow, steps, time.monotonic() - started
        )


async def settle(conn: Connection, tables: list[str]) -> None:
    """VACUUM ANALYZE the filled tables and checkpoint, so that neither lands in a measurement."""
    for table in tables:
        await conn.execute(f"VACUUM (ANALYZE) {table}")
    with contextlib.suppress(Exception):  # needs superuser or pg_checkpoint on a given server
        await conn.execute("CHECKPOINT")
