"""A workflow's recorded steps drawn as the tree of their hierarchical IDs ("t2/t1/4"):
each concurrent scope under the step ID path that made it, for ``stepline workflows show``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def render_steps(steps: Sequence[Any]) -> list[str]:
    """One line per step and per scope: each scope's steps and inner scopes under it, in
    the order they were first recorded; a step line holds its ID, name, kind, status,
    attempts, duration, worker and epoch."""
    # scope prefix ("" for the workflow's own, "t2/" ...) -> its steps and inner scopes
    children: dict[str, list[Any]] = {"": []}
    for s in steps:
        parts = s.step_id.split("/")[:-1]
        parent = ""
        for part in parts:
            scope = f"{parent}{part}/"
            if scope not in children:
                children[scope] = []
                children[parent].append(scope)
            parent = scope
        children[parent].append(s)
    lines: list[str] = []

    def draw(scope: str, depth: int) -> None:
        for entry in children[scope]:
            if isinstance(entry, str):
                lines.append("  " * depth + f"{entry}  (concurrent scope)")
                draw(entry, depth + 1)
            else:
                lines.append("  " * depth + _line(entry))

    draw("", 0)
    return lines


def _line(s: Any) -> str:
    took = ""
    if s.started_at is not None and s.completed_at is not None:
        took = f" {(s.completed_at - s.started_at).total_seconds() * 1000:.1f}ms"
    kind = "" if s.kind.name == "STEP" else f" [{s.kind.name.lower()}]"
    attempts = f" x{s.attempts}" if s.attempts > 1 else ""
    error = f" {s.error.type}: {s.error.message}" if s.error is not None else ""
    where = f"({s.worker_id or '-'}, epoch {s.epoch})"
    return f"{s.step_id}  {s.step_name}{kind}  {s.status.name}{attempts}{took}  {where}{error}"
