"""Settings: flags over STEPLINE_* variables over defaults, checked once."""

from __future__ import annotations

import argparse

import pytest

from coordinator import config


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_flags_win_over_variables_which_win_over_defaults() -> None:
    settings = config.load(parse("--port", "9000"), {"STEPLINE_PORT": "8000", "STEPLINE_LEASE_MS": "5000"})
    assert (settings.port, settings.lease_ms, settings.host) == (9000, 5000, "127.0.0.1")
    assert settings.heartbeat_interval_ms == 1666


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"STEPLINE_PORT": "http"}, "STEPLINE_PORT='http' is not a valid value"),
        ({"STEPLINE_LEASE_MS": "10"}, "lease of 10 ms is too short"),
        ({"STEPLINE_MAX_PAYLOAD_BYTES": "5"}, "max payload must be at least 1024 bytes"),
    ],
)
def test_bad_settings_stop_the_coordinator_with_a_message(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SystemExit, match=message):
        config.load(parse(), environ)
