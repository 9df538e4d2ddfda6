"""The conformance suite: scenarios as data, one runner, an interpreter per SDK (README.md)."""


class Planned(Exception):
    """The failure a ``fail`` command plans; recorded as ``conformance.Planned``."""
