"""Checks applied to everything that arrives from outside, before anything is written."""

from __future__ import annotations

import orjson

from coordinator.errors import InvalidArgument
from coordinator.limits import MAX_IDENTIFIER_LENGTH as MAX_ID_LENGTH
from coordinator.models import Payload

ENCODINGS = frozenset({"json", "raw"})


def identifier(kind: str, value: str, *, optional: bool = False) -> str:
    """Returns ``value`` if it is a valid identifier of ``kind``, else raises InvalidArgument."""
    if not value:
        if optional:
            return value
        raise InvalidArgument(f"{kind} must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidArgument(f"{kind} is {len(value)} characters long; the limit is {MAX_ID_LENGTH}")
    if not value.isprintable():
        raise InvalidArgument(f"{kind} {value!r} contains control characters")
    return value


MAX_TEXT_LENGTH = 2000


def text(kind: str, value: str) -> str:
    """Free text (a reason): any printable characters, up to MAX_TEXT_LENGTH."""
    if len(value) > MAX_TEXT_LENGTH:
        raise InvalidArgument(f"{kind} is {len(value)} characters long; the limit is {MAX_TEXT_LENGTH}")
    if "\x00" in value:
        raise InvalidArgument(f"{kind} contains a NUL character")
    return value


def payload(what: str, data: bytes, encoding: str, max_bytes: int) -> Payload:
    """Returns a Payload if ``data`` fits the size limit and parses in its encoding."""
    encoding = encoding or "json"
    if encoding not in ENCODINGS:
        raise InvalidArgument(
            f"{what} has unknown encoding {encoding!r}; known: {', '.join(sorted(ENCODINGS))}"
        )
    if len(data) > max_bytes:
        raise InvalidArgument(
            f"{what} is {len(data)} bytes; the limit is {max_bytes} (STEPLINE_MAX_PAYLOAD_BYTES)"
        )
    if encoding == "json":
        # Parsed only to be checked (strict JSON: no NaN); the bytes are stored as sent.
        try:
            orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise InvalidArgument(f"{what} is not valid JSON: {exc}") from None
    return Payload(data, encoding)
