"""The REST guard's error answers (`mint_iqa.inference.serving.server`): the reason MLflow gives, on one
short line, without the request it would quote back. (The guard in front of a real server:
tests/pipeline/test_serving.)"""

from __future__ import annotations

import json

from mint_iqa.inference.serving.server import MAX_MESSAGE, short_message, unknown_params


def _mlflow(message: str) -> bytes:
    return json.dumps(
        {
            "error_code": "BAD_REQUEST",
            "message": message,
            "stack_trace": "Traceback (most recent call last):\n  File ...",
        }
    ).encode()


def test_the_quoted_request_and_the_traceback_are_dropped() -> None:
    request = json.dumps({"dataframe_split": {"columns": ["image"], "data": [["A" * 100_000]]}}).encode()
    body = _mlflow(f"Failed to predict data '{request.decode()}'. \nError: missing column(s) ['prompt']")
    assert short_message(body, request) == "missing column(s) ['prompt']"
    assert short_message(
        _mlflow("Failed to enforce schema of data '" + "B" * 5000 + "'"), request
    ).startswith("the request does not match")


def test_any_message_is_one_bounded_line_without_the_request() -> None:
    request = b"Z" * 60 + b" the rest of a body that is not JSON"
    body = _mlflow("Invalid input.\nIt was: " + request.decode() + "\n" + "x" * 2000)
    message = short_message(body, request)
    assert "\n" not in message and len(message) <= MAX_MESSAGE and "ZZZZZZZZZZZZZZZZ" not in message
    assert short_message(b"<html>oops</html>", b"{}") == "<html>oops</html>"
    parse = _mlflow(
        "Invalid input. Ensure that input is a valid JSON formatted string. Error: 'Expecting value' "
        "Input: b'{not json'"
    )
    assert short_message(parse, b"{not json") == (
        "Invalid input. Ensure that input is a valid JSON formatted string. Error: 'Expecting value'"
    )


def test_unknown_params_are_named() -> None:
    assert unknown_params(b'{"dataframe_split": {}, "params": {"explain": false, "colour": 1}}') == ["colour"]
    assert unknown_params(b'{"params": {"explain": true}}') == [] == unknown_params(b"not json")
