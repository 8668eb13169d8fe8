"""A scriptable chat-completions server for the fault tests (stdlib, loopback).

It speaks the parts of the OpenAI API that `policies.openai_compat` uses (GET /v1/models,
POST /v1/chat/completions) and answers according to `mode`:

- ``ok``: a valid Qwen3-VL tool call (left_click at the screen centre);
- ``500``: HTTP 500 with an OpenAI-style error body;
- ``hang``: holds the request until the test releases it (the client times out first);
- ``adversarial``: the next text of `ADVERSARIAL_OUTPUTS` (cycling) as the content;
- ``garbage``: HTTP 200 with a body that is not JSON;
- ``script``: the texts given to `script(texts)`, one per request, in order (then a
  ``terminate`` with status failure). `texts_seen` holds the text parts of each request's
  messages (to check what the policy was told).
"""

from __future__ import annotations

import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CLICK_CENTRE = ('I will click.\n<tool_call>\n{"name": "computer_use", "arguments": '
                '{"action": "left_click", "coordinate": [500, 500]}}\n</tool_call>')

SCRIPT_END = ('<tool_call>\n{"name": "computer_use", "arguments": {"action": "terminate", '
              '"status": "failure"}}\n</tool_call>')

ADVERSARIAL_OUTPUTS: list[str] = [
    "x" * 2_000_000,                                                   # a huge string
    "<tool_call>" + "[" * 50_000 + "]" * 50_000 + "</tool_call>",     # deeply nested JSON
    '<tool_call>{"name": "computer_use", "arguments": ' + '{"a": ' * 5_000 + "1"
    + "}" * 5_000 + "}</tool_call>",                                 # deeply nested object
    "\x00\x07\x1b[31m\r\x08<tool_call>\x00{\"name\": \"computer_use\", \"arguments\": "
    '{"action": "type", "text": "\x00\x1b\ud800\x7f"}}</tool_call>',  # control chars, lone surrogate
    '<tool_call>{"name": "computer_use", "arguments": {"action": "left_click", '
    '"coordinate": ["500", "500"]}}</tool_call>',                      # coordinates as strings
    '<tool_call>{"name": "computer_use", "arguments": {"action": "left_click", '
    '"coordinate": [NaN, Infinity]}}</tool_call>',                     # NaN / Infinity
    '<tool_call>{"name": "computer_use", "arguments": {"action": "left_click", '
    '"coordinate": [-5, 1e308]}}</tool_call>',                         # out of range
    '<tool_call>{"name": "computer_use", "arguments": {"action": "key", '
    '"keys": [' + ", ".join(['"ctrl"'] * 1000) + "]}}</tool_call>",   # too many keys
    "<tool_call>" + "{" * 10 + "</tool_call>" * 1000,                  # unbalanced tags
]


class FakeChatServer:
    """See module docstring. `requests` counts chat requests; `release()` frees hung ones."""

    def __init__(self, model: str = "fake") -> None:
        self.model = model
        self.mode = "ok"
        self.requests = 0
        self._adversarial = itertools.cycle(ADVERSARIAL_OUTPUTS)
        self._script: list[str] = []
        self.texts_seen: list[list[str]] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def _send(self, code: int, payload: bytes) -> None:
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout)

            def do_GET(self) -> None:  # noqa: N802
                body = {"object": "list", "data": [{"id": server.model, "object": "model"}]}
                self._send(200, json.dumps(body).encode())

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                if server.mode == "script":
                    server.remember(body)
                code, payload = server.answer()
                self._send(code, payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def set_mode(self, mode: str) -> None:
        with self._lock:
            self.mode = mode
            if mode == "hang":
                self._release.clear()
            else:
                self._release.set()

    def release(self) -> None:
        self._release.set()

    def script(self, texts: list[str]) -> None:
        """Answer the next requests with `texts`, in order (mode ``script``)."""
        with self._lock:
            self._script = list(texts)
        self.set_mode("script")

    def remember(self, body: bytes) -> None:
        messages = json.loads(body).get("messages", [])
        texts = [m["content"] if isinstance(m.get("content"), str) else
                 "\n".join(p.get("text", "") for p in m.get("content") or [])
                 for m in messages]
        with self._lock:
            self.texts_seen.append(texts)

    def answer(self) -> tuple[int, bytes]:
        with self._lock:
            self.requests += 1
            mode = self.mode
            if mode == "script":
                text = self._script.pop(0) if self._script else SCRIPT_END
            else:
                text = next(self._adversarial) if mode == "adversarial" else CLICK_CENTRE
        if mode == "500":
            error = {"error": {"message": "injected failure", "type": "InternalServerError",
                               "code": 500}}
            return 500, json.dumps(error).encode()
        if mode == "hang":
            self._release.wait(timeout=60)
            return 503, b'{"error": {"message": "released"}}'
        if mode == "garbage":
            return 200, b"<html>this is not json"
        answer = {"id": "x", "object": "chat.completion", "model": self.model,
                  "choices": [{"index": 0, "finish_reason": "stop",
                               "message": {"role": "assistant", "content": text}}],
                  "usage": {"prompt_tokens": 10, "completion_tokens": 10}}
        return 200, json.dumps(answer).encode()

    def close(self) -> None:
        self._release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
