"""The Stepline coordinator: a gRPC service that keeps workflow and step state in PostgreSQL."""

from importlib import metadata

try:
    __version__ = metadata.version("stepline")
except metadata.PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "unknown"
