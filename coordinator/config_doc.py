"""docs/configuration.md, generated from coordinator/config.py: every coordinator flag and
``STEPLINE_*`` variable with its default, and the variables the SDKs and the CLI read.

``./dev config-doc`` writes it; tests/unit/test_config_doc.py fails when the committed
file differs from what this makes, or when code reads a STEPLINE_* variable it lacks.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import sys
from pathlib import Path

from coordinator import config

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"

# What the SDKs (Python, TypeScript) and the client commands read; not coordinator settings.
CLIENT_VARIABLES = (
    (
        "STEPLINE_ADDRESS",
        "`127.0.0.1:7420`",
        "the coordinator, for `stepline workflows`, `workers`, `replay-check`",
    ),
    ("STEPLINE_API_KEY", "none", "the key clients and workers send when none is given in code"),
    ("STEPLINE_WORKER_ID", "`<host>-<pid>-<random>`", "a worker's ID, when none is given in code"),
    (
        "STEPLINE_WORKER_VERSION",
        "from the workflow code",
        "a worker's version (build ID), when none is given in code",
    ),
    ("STEPLINE_TLS_CA", "none (plain gRPC)", "PEM file: the CA of a coordinator that serves TLS"),
    ("STEPLINE_TLS_CERT", "none", "PEM file: this side's certificate chain, for mutual TLS"),
    ("STEPLINE_TLS_KEY", "none", "PEM file: the private key of STEPLINE_TLS_CERT"),
    ("STEPLINE_TEST_DATABASE_URL", "embedded", "the PostgreSQL the test suite uses"),
    ("STEPLINE_VENV", "`.venv`", "where `./dev` keeps its virtualenv"),
)


def _field_docs() -> dict[str, str]:
    """The docstring under each Settings field, from the source (Python keeps none)."""
    tree = ast.parse(inspect.getsource(config.Settings))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, after in itertools.pairwise(body):
        named = isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
        if named and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant):
            text = " ".join(str(after.value.value).split())
            docs[node.target.id] = text.split(": ", 1)[1] if ": " in text else ""
    return docs


def _default(field: dataclasses.Field[object]) -> str:
    value = field.default
    if value is None:
        return "none"
    return f"`{value}`"


def render() -> str:
    docs = _field_docs()
    lines = [
        "# Configuration reference",
        "",
        "Generated from `coordinator/config.py` by `./dev config-doc`; CI checks that it matches.",
        "",
        "## Coordinator (`stepline serve`)",
        "",
        "A flag wins over its variable, which wins over the default.",
        "",
        "| flag | variable | default | what it sets |",
        "|---|---|---|---|",
    ]
    for field in dataclasses.fields(config.Settings):
        env, _ = config._ENV[field.name]
        flag = "--" + field.name.replace("_", "-")
        lines.append(f"| `{flag}` | `{env}` | {_default(field)} | {docs.get(field.name, '')} |")
    lines += [
        "",
        "`stepline migrate` takes `--database-url`, `--data-dir`, `--log-level` and `--log-format` only.",
        "",
        "## Clients, workers and tools",
        "",
        "| variable | default | what it sets |",
        "|---|---|---|",
    ]
    lines += [f"| `{name}` | {default} | {what} |" for name, default, what in CLIENT_VARIABLES]
    return "\n".join(lines) + "\n"


def main() -> None:
    if sys.argv[1:] == ["--check"]:
        if DOC.read_text() != render():
            raise SystemExit(f"{DOC} is out of date: run ./dev config-doc")
        return
    DOC.write_text(render())
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
