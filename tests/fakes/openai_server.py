"""A scriptable, in-process, OpenAI-compatible HTTP server for tests and benchmarks.

It speaks enough of the real protocol that the official ``openai`` SDK talks to it unmodified::

    with FakeOpenAIServer() as server:
        server.enqueue(reply(tool_calls=[("search", {"q": "x"})]), reply("Found it."))
        client = openai.OpenAI(api_key="test", base_url=server.base_url, max_retries=0)
        ...

Chat completion requests consume the FIFO queue one response per request (falling back to
``server.default`` when it is empty); a ``dynamic`` response at the head of the queue is never
consumed. Embeddings are deterministic and never use the queue.

It can also behave like the endpoints real deployments meet (``reset()`` turns this off again):

* ``server.reasoning_models = {"o3", "gpt-5"}``: those models (and their dated names) answer
  like OpenAI's reasoning models: ``max_tokens`` or a temperature other than 1 is refused with
  OpenAI's 400, and replies report ``completion_tokens_details.reasoning_tokens`` (included in
  ``completion_tokens``, as OpenAI counts them);
* ``server.refused_parameters = {"max_completion_tokens"}``: an older server that refuses a
  parameter it does not know (Azure's "Unrecognized request argument supplied");
* ``reply(refusal="I can't help with that.")``: the model declines (``content`` is null).

A refused request consumes nothing from the queue.

Run standalone as a zero-latency model: ``python -m tests.fakes.openai_server --port 8099``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import hashlib
import itertools
import json
import math
import random
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_ERROR = "Simulated error from the fake OpenAI server."


# Reasoning tokens a reasoning model reports when the reply does not say.
DEFAULT_REASONING_TOKENS = 64


@dataclass(frozen=True)
class Reply:
    content: str | None = None
    tool_calls: list[tuple[str, dict[str, Any] | str]] = field(default_factory=list)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None  # as reported: reasoning tokens included
    refusal: str | None = None
    reasoning_tokens: int | None = None


@dataclass(frozen=True)
class Error:
    status: int
    message: str = DEFAULT_ERROR
    headers: dict[str, str] = field(default_factory=dict)
    param: str | None = None
    code: str | None = None


@dataclass(frozen=True)
class Delay:
    seconds: float
    then: Response


@dataclass(frozen=True)
class Dynamic:
    fn: Callable[[dict[str, Any]], Response]


Response = Reply | Error | Delay | Dynamic


def reply(
    content: str | None = None,
    tool_calls: list[tuple[str, dict[str, Any] | str]] | None = None,
    prompt_tokens: int | None = None,
    completion_tokens: int | None = None,
    *,
    refusal: str | None = None,
    reasoning_tokens: int | None = None,
) -> Reply:
    """An assistant message; tool call arguments given as a str are sent verbatim.

    ``refusal``: the model declines, with this reason (and no content). ``reasoning_tokens``:
    reported in ``completion_tokens_details`` (and counted in ``completion_tokens`` unless
    that is given).
    """
    return Reply(
        content,
        list(tool_calls or []),
        prompt_tokens,
        completion_tokens,
        refusal,
        reasoning_tokens,
    )


def error(
    status: int,
    message: str = DEFAULT_ERROR,
    headers: dict[str, str] | None = None,
    *,
    param: str | None = None,
    code: str | None = None,
) -> Error:
    """An HTTP error with an OpenAI-style body, e.g. ``error(429, headers={"Retry-After": "1"})``."""
    return Error(status, message, dict(headers or {}), param, code)


def delay(seconds: float, then: Response) -> Delay:
    """Sleep ``seconds`` on the request thread, then answer with ``then``."""
    return Delay(seconds, then)


def dynamic(fn: Callable[[dict[str, Any]], Response]) -> Dynamic:
    """Compute the answer per request from the request body; stays at the head of the queue."""
    return Dynamic(fn)


_ERROR_CODES = {400: "invalid_request_error", 401: "invalid_api_key", 404: "not_found"}
_ERROR_CODES |= {429: "rate_limit_exceeded", 500: "server_error", 503: "service_unavailable"}


def error_body(
    status: int, message: str, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    code = code or _ERROR_CODES.get(status, f"http_{status}")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _text_length(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):  # content parts: [{"type": "text", "text": "..."}, ...]
        return sum(len(part.get("text") or "") for part in content if isinstance(part, dict))
    return 0


def fake_embedding(text: str, dimensions: int) -> list[float]:
    """A deterministic, L2-normalised vector derived from a hash of ``text``."""
    rng = random.Random(hashlib.sha256(text.encode()).digest())
    vector = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so the SDK reuses its connections
    disable_nagle_algorithm = True
    wbufsize = -1  # buffer headers + body into one write, flushed per request
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.server.connections.add(self.connection)

    def finish(self) -> None:
        self.server.connections.discard(self.connection)
        super().finish()

    def do_GET(self) -> None:
        self._dispatch(b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._dispatch(self.rfile.read(length) if length else b"")

    def _dispatch(self, raw: bytes) -> None:
        fake = self.server.fake
        path = self.path.split("?", 1)[0]
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        fake._record(path, {k.lower(): v for k, v in self.headers.items()}, body)
        if self.command != "POST" or path not in ("/v1/chat/completions", "/v1/embeddings"):
            return self._send(404, error_body(404, f"Unknown path {self.command} {path}."))
        if not isinstance(body, dict):
            return self._send(400, error_body(400, "Request body is not a valid JSON object."))
        if path == "/v1/embeddings":
            if str(body.get("model", "")).startswith("unavailable"):  # to test an outage
                return self._send(503, error_body(503, "The embedding model is overloaded."))
            return self._send(200, fake._embeddings(body))
        if body.get("stream"):
            return self._send(400, error_body(400, "The fake server does not support streaming."))
        refused = fake._refuse(body)
        if refused is not None:
            return self._send(
                400, error_body(400, refused.message, param=refused.param, code=refused.code)
            )
        try:
            response = fake._resolve(fake._next(), body)
        except Exception as exc:  # a broken dynamic(fn) shows up as a 500, not a dropped socket
            response = error(500, f"Fake server script raised {exc!r}")
        if isinstance(response, Error):
            payload = error_body(
                response.status, response.message, param=response.param, code=response.code
            )
            return self._send(response.status, payload, response.headers)
        self._send(200, fake._completion(response, body))

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog is 5: 200 loops connecting at once (the loop benchmark)
    # overflowed it, costing 1 s SYN retries and now and then a failed connection.
    request_queue_size = 1024
    fake: FakeOpenAIServer
    connections: set[socket.socket]

    def handle_error(self, request, client_address) -> None:
        # A client that went away (a worker killed mid-call, by the fault benchmark) is
        # nothing to print a traceback for; anything else still is.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


DEFAULT_REPLY = reply(content="Done.")


class FakeOpenAIServer:
    """An OpenAI-compatible endpoint on 127.0.0.1, scripted with ``enqueue``."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.default: Response = DEFAULT_REPLY
        self.requests: list[dict[str, Any]] = []
        self.reasoning_models: set[str] = set()
        self.refused_parameters: set[str] = set()
        self._queue: deque[Response] = deque()
        self._lock = threading.Lock()
        self._completion_ids = itertools.count(1)
        self._tool_call_ids = itertools.count(1)
        self._httpd: _HTTPServer | None = None

    # Lifecycle ------------------------------------------------------------------------------

    def start(self) -> FakeOpenAIServer:
        self._httpd = _HTTPServer(("127.0.0.1", self.port), _Handler)
        self._httpd.fake = self
        self._httpd.connections = set()
        self.port = self._httpd.server_address[1]
        # A short poll interval keeps stop() (and so test teardown) fast.
        serve = functools.partial(self._httpd.serve_forever, poll_interval=0.05)
        threading.Thread(target=serve, name="fake-openai", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            for conn in list(self._httpd.connections):  # end idle keep-alive handler threads
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            self._httpd = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # Scripting ------------------------------------------------------------------------------

    def enqueue(self, *responses: Response) -> None:
        with self._lock:
            self._queue.extend(responses)

    def reset(self) -> None:
        """Clear the queue, the recorded requests and the endpoint's refusals, and answer
        "Done." again when the queue is empty (tool call ids keep counting)."""
        with self._lock:
            self.default = DEFAULT_REPLY
            self._queue.clear()
            self.requests.clear()
            self.reasoning_models = set()
            self.refused_parameters = set()

    def is_reasoning_model(self, model: Any) -> bool:
        name = str(model or "")
        return any(name == m or name.startswith(f"{m}-") for m in self.reasoning_models)

    @property
    def calls(self) -> int:
        with self._lock:
            return sum(1 for r in self.requests if r["path"] == "/v1/chat/completions")

    # Request handling (called from handler threads) -----------------------------------------

    def _record(self, path: str, headers: dict[str, str], body: Any) -> None:
        with self._lock:
            self.requests.append({"path": path, "headers": headers, "body": body})

    def _next(self) -> Response:
        with self._lock:
            if not self._queue:
                return self.default
            if isinstance(self._queue[0], Dynamic):
                return self._queue[0]
            return self._queue.popleft()

    def _refuse(self, body: dict[str, Any]) -> Error | None:
        """The 400 an endpoint answers to a parameter it does not accept, as OpenAI words it."""
        for name in sorted(self.refused_parameters):
            if name in body:
                return error(400, f"Unrecognized request argument supplied: {name}", param=name)
        if not self.is_reasoning_model(body.get("model")):
            return None
        if "max_tokens" in body:
            return error(
                400,
                "Unsupported parameter: 'max_tokens' is not supported with this model. "
                "Use 'max_completion_tokens' instead.",
                param="max_tokens",
                code="unsupported_parameter",
            )
        if "temperature" in body and body["temperature"] != 1:
            return error(
                400,
                f"Unsupported value: 'temperature' does not support {body['temperature']} with "
                "this model. Only the default (1) value is supported.",
                param="temperature",
                code="unsupported_value",
            )
        return None

    def _resolve(self, response: Response, body: dict[str, Any]) -> Reply | Error:
        while isinstance(response, Delay | Dynamic):
            if isinstance(response, Delay):
                time.sleep(response.seconds)
                response = response.then
            else:
                response = response.fn(body)
        return response

    def _completion(self, response: Reply, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            completion_id = next(self._completion_ids)
            ids = [next(self._tool_call_ids) for _ in response.tool_calls]
        tool_calls = [
            {
                "id": f"call_{call_id}",
                "type": "function",
                "function": {
                    "name": name,
                    "arguments": args if isinstance(args, str) else json.dumps(args),
                },
            }
            for call_id, (name, args) in zip(ids, response.tool_calls, strict=True)
        ]
        prompt = response.prompt_tokens
        if prompt is None:
            chars = sum(
                _text_length(m.get("content"))
                for m in body.get("messages") or []
                if isinstance(m, dict)
            )
            prompt = max(1, chars // 4)
        reasoning = response.reasoning_tokens
        if reasoning is None and self.is_reasoning_model(body.get("model")):
            reasoning = DEFAULT_REASONING_TOKENS
        completion = response.completion_tokens
        if completion is None:
            chars = (
                len(response.content or "")
                + len(response.refusal or "")
                + sum(len(c["function"]["arguments"]) for c in tool_calls)
            )
            completion = max(1, chars // 4) + (reasoning or 0)
        message: dict[str, Any] = {
            "role": "assistant",
            "content": response.content,
            "refusal": response.refusal,
        }
        if tool_calls:
            message["tool_calls"] = tool_calls
        usage: dict[str, Any] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        if reasoning is not None:
            usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
        return {
            "id": f"chatcmpl-{completion_id}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake-model"),
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "tool_calls" if tool_calls else "stop",
                    "message": message,
                    "logprobs": None,
                }
            ],
            "usage": usage,
        }

    def _embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
        texts = [t if isinstance(t, str) else json.dumps(t) for t in texts]  # token arrays
        dimensions = int(body.get("dimensions") or 384)
        data = []
        for index, text in enumerate(texts):
            vector: Any = fake_embedding(text, dimensions)
            if body.get("encoding_format") == "base64":  # the SDK's default: packed float32
                vector = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": vector})
        tokens = max(1, sum(len(t) for t in texts) // 4)
        return {
            "object": "list",
            "data": data,
            "model": body.get("model", "fake-embedding"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Serve default replies from a fake OpenAI endpoint."
    )
    parser.add_argument("--port", type=int, default=8099)
    args = parser.parse_args(argv)
    server = FakeOpenAIServer(port=args.port).start()
    print(server.base_url, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()
    server.stop()


if __name__ == "__main__":
    main()
