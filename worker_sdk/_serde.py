"""Values to payloads and back (JSON by default), and exceptions to ErrorInfo and back."""

from __future__ import annotations

import builtins
import importlib
import json
import traceback as tb
from typing import Any

from worker_sdk import errors
from worker_sdk._models import ErrorInfo, Payload

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_decode = json.JSONDecoder().decode


def encode(value: Any, what: str, max_bytes: int | None = None) -> bytes:
    """Encodes ``value`` as JSON; SerializationError says what could not be encoded."""
    try:
        data = _encoder.encode(value).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        raise errors.SerializationError(f"{what} cannot be encoded as JSON: {exc}") from None
    if max_bytes is not None and len(data) > max_bytes:
        raise errors.PayloadTooLargeError(
            f"{what} is {len(data)} bytes as JSON; the coordinator accepts at most {max_bytes}"
        )
    return data


def decode(data: bytes, encoding: str = "json") -> Any:
    """Decodes a payload: JSON values for "json", the bytes themselves for "raw"."""
    if encoding == "raw":
        return data
    if encoding not in ("json", ""):
        raise errors.SerializationError(f"cannot decode a payload in encoding {encoding!r}")
    try:
        return _decode(data.decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.SerializationError(f"payload is not valid JSON: {exc}") from None


def encode_input(
    args: tuple[Any, ...], kwargs: dict[str, Any], what: str, max_bytes: int | None = None
) -> bytes:
    """A workflow input: ``{"args": [...], "kwargs": {...}}``."""
    return encode({"args": list(args), "kwargs": kwargs}, what, max_bytes)


def decode_input(data: bytes, encoding: str) -> tuple[list[Any], dict[str, Any]]:
    """Reads a workflow input; also accepts a bare JSON array (positional) or null (none)."""
    value = decode(data, encoding)
    if value is None:
        return [], {}
    if isinstance(value, list):
        return value, {}
    if isinstance(value, dict) and set(value) <= {"args", "kwargs"}:
        args, kwargs = value.get("args", []), value.get("kwargs", {})
        if isinstance(args, list) and isinstance(kwargs, dict):
            return args, kwargs
    raise errors.SerializationError(
        'a workflow input must be {"args": [...], "kwargs": {...}}, a JSON array, or null'
    )


# --- errors -----------------------------------------------------------------------------

_SDK_PREFIX = "stepline."


def type_name(exc_type: type[BaseException]) -> str:
    if exc_type.__module__ == errors.__name__:
        return _SDK_PREFIX + exc_type.__qualname__
    return f"{exc_type.__module__}.{exc_type.__qualname__}"


def error_info(exc: BaseException) -> ErrorInfo:
    """Records an exception: its type, message, traceback, and its args when they encode."""
    try:
        details: Payload | None = Payload(encode(list(exc.args), "exception args"))
    except errors.SerializationError:
        details = None
    trace = "".join(tb.format_exception(exc))
    return ErrorInfo(type_name(type(exc)), str(exc), trace, details)


def _find_type(name: str) -> type[BaseException] | None:
    if name.startswith(_SDK_PREFIX):
        found = getattr(errors, name[len(_SDK_PREFIX) :], None)
    elif "." not in name:
        found = getattr(builtins, name, None)
    else:
        found = None
        parts = name.split(".")
        # The module is the longest importable prefix; the rest is the qualified name.
        for cut in range(len(parts) - 1, 0, -1):
            try:
                obj: Any = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            for attr in parts[cut:]:
                obj = getattr(obj, attr, None)
            found = obj
            break
    if isinstance(found, type) and issubclass(found, BaseException):
        return found
    return None


def rebuild(info: ErrorInfo) -> BaseException:
    """The recorded error as its own type when it can be imported and rebuilt, else StepFailedError."""
    exc_type = _find_type(info.type)
    if exc_type is not None:
        args: Any = None
        if info.details is not None:
            try:
                args = decode(info.details.data, info.details.encoding)
            except errors.SerializationError:
                args = None
        for attempt in ((args,) if isinstance(args, list) else ()) + ([info.message],):
            try:
                exc = exc_type(*attempt)
            except Exception:
                continue
            if isinstance(exc, Exception):
                return exc
    return errors.StepFailedError(info.type, info.message, info.traceback)
