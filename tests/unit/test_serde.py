"""Values and errors to payloads and back."""

from __future__ import annotations

import pytest

from worker_sdk import NonDeterminismError, PayloadTooLargeError, SerializationError, StepFailedError
from worker_sdk._models import ErrorInfo
from worker_sdk._serde import decode, decode_input, encode, encode_input, error_info, rebuild


class CustomError(Exception):
    def __init__(self, code: int, detail: str) -> None:
        super().__init__(code, detail)
        self.code = code


def test_values_round_trip_as_json() -> None:
    value = {"a": [1, 2.5, None, True], "é": "ü"}
    assert decode(encode(value, "v")) == value
    assert decode(b"\x00\x01", "raw") == b"\x00\x01"


@pytest.mark.parametrize("bad", [{1, 2}, object(), float("nan")])
def test_unencodable_values_raise_a_serialization_error(bad: object) -> None:
    with pytest.raises(SerializationError, match="the result of step 's' cannot be encoded as JSON"):
        encode(bad, "the result of step 's'")


def test_the_size_limit_is_enforced_before_sending() -> None:
    with pytest.raises(PayloadTooLargeError, match="accepts at most 10"):
        encode("x" * 20, "v", max_bytes=10)


def test_inputs_accept_args_kwargs_arrays_and_null() -> None:
    assert decode_input(encode_input((1, "a"), {"k": 2}, "in"), "json") == ([1, "a"], {"k": 2})
    assert decode_input(b"[1, 2]", "json") == ([1, 2], {})
    assert decode_input(b"null", "json") == ([], {})
    with pytest.raises(SerializationError):
        decode_input(b'{"unexpected": 1}', "json")


def test_errors_rebuild_as_their_own_type_with_their_arguments() -> None:
    try:
        raise CustomError(7, "out of stock")
    except CustomError as exc:
        info = error_info(exc)
    assert info.type == f"{__name__}.CustomError"
    assert "raise CustomError(7" in info.traceback
    rebuilt = rebuild(info)
    assert isinstance(rebuilt, CustomError)
    assert (rebuilt.code, rebuilt.args) == (7, (7, "out of stock"))


def test_builtin_and_sdk_errors_rebuild() -> None:
    assert isinstance(rebuild(error_info(KeyError("k"))), KeyError)
    original = NonDeterminismError("w", "3", "a", "b")
    rebuilt = rebuild(error_info(original))
    assert isinstance(rebuilt, NonDeterminismError)
    assert str(rebuilt) == str(original)
    assert error_info(original).type == "stepline.NonDeterminismError"


def test_unknown_types_become_step_failed_errors_carrying_what_was_recorded() -> None:
    rebuilt = rebuild(ErrorInfo("nowhere.to.be.Found", "it broke", "Traceback ..."))
    assert isinstance(rebuilt, StepFailedError)
    assert (rebuilt.error_type, rebuilt.message, rebuilt.traceback) == (
        "nowhere.to.be.Found",
        "it broke",
        "Traceback ...",
    )
    # A name that imports but is not an exception is not trusted either.
    assert isinstance(rebuild(ErrorInfo("os.path.join", "x")), StepFailedError)
