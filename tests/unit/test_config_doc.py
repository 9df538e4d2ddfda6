"""docs/configuration.md is what coordinator/config.py says, and names every STEPLINE_* variable
the code reads."""

from __future__ import annotations

import re
from pathlib import Path

from coordinator import config, config_doc

ROOT = Path(__file__).resolve().parents[2]
# Where product code (not tests) reads its variables.
SOURCES = ["coordinator", "worker_sdk", "sdks/typescript/src", "sdks/go", "conformance", "dev", "deploy"]
READ = re.compile(r"""["'](STEPLINE_[A-Z_]+)["']""")


def test_the_committed_reference_is_the_generated_one() -> None:
    assert config_doc.DOC.read_text() == config_doc.render(), (
        "docs/configuration.md is stale: ./dev config-doc"
    )


def test_every_setting_has_a_flag_a_variable_and_a_description() -> None:
    text = config_doc.render()
    for name, (env, _) in config._ENV.items():
        row = next(line for line in text.splitlines() if f"`{env}`" in line)
        assert f"`--{name.replace('_', '-')}`" in row
        assert row.rstrip(" |").split("|")[-1].strip(), f"{env} has no description"


def test_every_variable_the_code_reads_is_documented() -> None:
    documented = set(re.findall(r"`(STEPLINE_[A-Z_]+)`", config_doc.render()))
    read: set[str] = set()
    for source in SOURCES:
        path = ROOT / source
        files = (
            [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()] if path.exists() else []
        )
        for file in files:
            if "node_modules" in file.parts or "gen" in file.parts or file.suffix in {".pyc", ".binpb"}:
                continue
            read |= set(READ.findall(file.read_text(errors="ignore")))
    assert read, "found no STEPLINE_* variables at all"
    assert read - documented == set()
