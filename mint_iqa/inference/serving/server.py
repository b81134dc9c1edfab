"""`mint-iqa serve`: MLflow's own scoring server for a registered model (routes `/invocations`, `/ping`,
`/health`, `/version`; the request formats of `mlflow models serve`), behind one guard.

MLflow answers a bad request with the input quoted back ("Failed to predict data '<the whole request>'")
and often a Python `stack_trace`. The guard makes every error answer short JSON,
`{"error_code": ..., "message": ...}`: one line, at most `MAX_MESSAGE` characters, never a traceback,
never a piece of the request. It also refuses bodies over `MINT_IQA_MAX_REQUEST_BYTES` (413) before they
are parsed, and `params` the model does not know (400) where MLflow would ignore them silently.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from typing import Any

from mint_iqa.inference.serving import PARAMS

MAX_MESSAGE = 300
MAX_REQUEST_BYTES = int(os.environ.get("MINT_IQA_MAX_REQUEST_BYTES", str(64 * 1024 * 1024)))
KNOWN_PARAMS = frozenset(PARAMS)  # MLflow drops unknown params silently: the guard refuses them

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def short_message(body: bytes, request: bytes) -> str:
    """The one-line reason inside an error answer of MLflow's server, without any part of `request`."""
    try:
        message = str(json.loads(body).get("message", ""))
    except (ValueError, AttributeError):
        message = body.decode("utf-8", errors="replace")
    if message.startswith("Failed to predict data"):  # "... data '<request>'. \nError: <reason>"
        message = message.rpartition("\nError: ")[2]
    elif message.startswith("Failed to enforce schema"):
        message = "the request does not match the model's input: columns 'image' (base64) and 'prompt' (text)"
    message = message.split(" Input: ")[
        0
    ]  # parse errors end with the request: "... Error: '<why>' Input: b'...'"
    message = " ".join(message.split()) or "bad request"
    probe = request.strip()[:40]
    if len(probe) >= 8 and probe.decode("utf-8", errors="replace") in message:
        message = message.split(probe.decode("utf-8", errors="replace"))[0].rstrip(" :'\"") or "bad request"
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 3] + "..."


def unknown_params(request: bytes) -> list[str]:
    """Keys of the request's `params` that the model does not accept (none for a body that is not JSON:
    MLflow's parser reports that)."""
    try:
        params = json.loads(request).get("params")
    except (ValueError, AttributeError):
        return []
    return sorted(set(params) - KNOWN_PARAMS) if isinstance(params, dict) else []


class ShortErrors:
    """ASGI middleware: bounded request bodies, checked `params`, short error answers (see the module)."""

    def __init__(self, app: Any, max_request_bytes: int = MAX_REQUEST_BYTES):
        self.app, self.max_request_bytes = app, max_request_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        request, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            request += message.get("body", b"")
            more = message.get("more_body", False)
            if len(request) > self.max_request_bytes:
                return await _answer(
                    send,
                    413,
                    "REQUEST_TOO_LARGE",
                    f"request body over {self.max_request_bytes} bytes; send fewer images per request",
                )
        unknown = unknown_params(request)
        if unknown:
            return await _answer(
                send,
                400,
                "INVALID_PARAMETER_VALUE",
                f"unknown params {unknown}; this model accepts: {', '.join(sorted(KNOWN_PARAMS))}",
            )
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": request, "more_body": False}

        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def guarded(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                if message["status"] < 400:
                    return await send(message)
                start.update(message)
                return None
            if not start:
                return await send(message)
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                body = b"".join(chunks)
                code = _error_code(body)
                await _answer(send, start["status"], code, short_message(body, request))
            return None

        return await self.app(scope, replay, guarded)


def _error_code(body: bytes) -> str:
    try:
        return str(json.loads(body).get("error_code", "BAD_REQUEST"))
    except (ValueError, AttributeError):
        return "BAD_REQUEST"


async def _answer(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error_code": code, "message": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


def build_app(model_uri: str) -> ShortErrors:
    """MLflow's scoring app for `model_uri` (a registry URI such as models:/mint-iqa@champion, or a run's
    model), behind `ShortErrors`."""
    import mlflow
    from mlflow.pyfunc import load_model, scoring_server

    from mint_iqa import tracking

    mlflow.set_tracking_uri(tracking.tracking_uri())
    return ShortErrors(scoring_server.init(load_model(model_uri)))
