"""The limits the coordinator enforces and tells every client and worker (stepline.v1.Limits)."""

from __future__ import annotations

from dataclasses import dataclass

#: The largest gRPC message accepted or sent: a request, or one frame of the worker stream.
MAX_MESSAGE_BYTES = 64 << 20
MAX_STARTS_PER_CALL = 1000
MAX_AWAITED_PER_CALL = 10_000
MAX_PAGE_SIZE = 1000
MAX_IDENTIFIER_LENGTH = 255


@dataclass(frozen=True, slots=True)
class Limits:
    """What one coordinator enforces; only the payload limit is configurable."""

    max_payload_bytes: int
    max_message_bytes: int = MAX_MESSAGE_BYTES
    max_starts_per_call: int = MAX_STARTS_PER_CALL
    max_awaited_per_call: int = MAX_AWAITED_PER_CALL
    max_page_size: int = MAX_PAGE_SIZE
    max_identifier_length: int = MAX_IDENTIFIER_LENGTH
