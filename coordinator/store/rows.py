"""Conversions between database rows and the coordinator's records."""

from __future__ import annotations

import base64
import json
from typing import Any

from coordinator.models import (
    ErrorInfo,
    Payload,
    StepKind,
    StepRecord,
    StepStatus,
    WorkflowRecord,
    WorkflowStatus,
)


def error_to_json(error: ErrorInfo | None) -> str | None:
    if error is None:
        return None
    doc: dict[str, str] = {"type": error.type, "message": error.message, "traceback": error.traceback}
    if error.details is not None:
        doc["details"] = base64.b64encode(error.details.data).decode()
        doc["details_encoding"] = error.details.encoding
    return json.dumps(doc)


def error_from_json(text: str | None) -> ErrorInfo | None:
    if text is None:
        return None
    doc = json.loads(text)
    details = None
    if "details" in doc:
        details = Payload(base64.b64decode(doc["details"]), doc.get("details_encoding", "json"))
    return ErrorInfo(doc["type"], doc["message"], doc.get("traceback", ""), details)


def _payload(data: bytes | None, encoding: str | None) -> Payload | None:
    return None if data is None else Payload(bytes(data), encoding or "json")


# The columns every workflow query selects, in the order workflow() reads them.
_WORKFLOW = (
    "workflow_id",
    "name",
    "status",
    "input",
    "input_encoding",
    "output",
    "output_encoding",
    "error",
    "owner_id",
    "epoch",
    "recovery_attempts",
    "created_at",
    "updated_at",
    "started_at",
    "completed_at",
    "seq",
    "deadline_at",
    "suspended",
    "parent_id",
    "parent_step_id",
    "version",
    "traceparent",
)
WORKFLOW_COLUMNS = ", ".join(_WORKFLOW)
# The same without the payloads, for listings that do not ask for them.
WORKFLOW_COLUMNS_LEAN = WORKFLOW_COLUMNS.replace("input,", "NULL::bytea AS input,").replace(
    "output,", "NULL::bytea AS output,"
)


def workflow_columns(alias: str) -> str:
    """WORKFLOW_COLUMNS of the table aliased ``alias``."""
    return ", ".join(f"{alias}.{c}" for c in _WORKFLOW)


def workflow(row: Any) -> WorkflowRecord:
    return WorkflowRecord(
        workflow_id=row[0],
        name=row[1],
        status=WorkflowStatus(row[2]),
        input=_payload(row[3], row[4]),
        output=_payload(row[5], row[6]),
        error=error_from_json(row[7]),
        owner_id=row[8],
        epoch=row[9],
        recovery_attempts=row[10],
        created_at=row[11],
        updated_at=row[12],
        started_at=row[13],
        completed_at=row[14],
        seq=row[15],
        deadline_at=row[16],
        suspended=row[17],
        parent_id=row[18],
        parent_step_id=row[19],
        version=row[20],
        traceparent=row[21],
    )


_STEP = (
    "step_id",
    "name",
    "status",
    "output",
    "output_encoding",
    "error",
    "attempts",
    "worker_id",
    "epoch",
    "started_at",
    "completed_at",
    "kind",
    "timed_out",
    "wake_at",
)
STEP_COLUMNS = ", ".join(_STEP)


def step_columns(alias: str) -> str:
    return ", ".join(f"{alias}.{c}" for c in _STEP)


def step(row: Any) -> StepRecord:
    return StepRecord(
        step_id=row[0],
        name=row[1],
        status=StepStatus(row[2]),
        output=_payload(row[3], row[4]),
        error=error_from_json(row[5]),
        attempts=row[6],
        worker_id=row[7],
        epoch=row[8],
        started_at=row[9],
        completed_at=row[10],
        kind=StepKind(row[11]),
        timed_out=row[12],
        wake_at=row[13],
    )
