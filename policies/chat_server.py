"""A minimal OpenAI-compatible chat-completions server for a local Qwen-VL checkpoint.

For tests and CPU demos (the tiny Qwen3-VL from `policies.tiny`); serve real checkpoints
with vLLM or SGLang. It speaks the parts of the API `policies.openai_compat` uses:

- ``GET /v1/models`` -> ``{"object": "list", "data": [{"id": NAME, "object": "model", ...}]}``
- ``POST /v1/chat/completions`` with ``model``, ``messages`` (text parts and
  ``image_url`` parts holding base64 data URLs), ``max_tokens``, ``temperature``,
  ``top_p``, ``top_k``, ``presence_penalty``, ``repetition_penalty``, ``seed``,
  ``logprobs`` and vLLM's ``return_token_ids`` / ``return_tokens_as_token_ids``.
  An unknown model gets vLLM's 404 answer.

Fault injection for client tests: ``--fail-first N`` answers the first N chat requests
with HTTP 500; ``--delay-s S`` waits S seconds before answering each chat request. Both
can be changed at run time with ``POST /faults {"fail_next": N, "delay_s": S}`` (a test
hook, not part of the OpenAI API).

Usage: ``python -m policies.chat_server MODEL_DIR --port 8000 [--served-model-name NAME]``.
It prints ``READY http://HOST:PORT/v1`` on stdout once it accepts requests.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import logging
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from policies.prompting import SamplingParams
from policies.qwen3vl import QwenVLGenerator

logger = logging.getLogger(__name__)


class BadRequest(ValueError):
    """The request does not follow the chat-completions schema."""


def _decode_image(url: str):
    from PIL import Image

    if not url.startswith("data:"):
        raise BadRequest("only data: URLs are supported for image_url (no network access)")
    try:
        _, payload = url.split(",", 1)
        image = Image.open(io.BytesIO(base64.b64decode(payload)))
        return image.convert("RGB")
    except Exception as exc:  # noqa: BLE001 - any decoding failure is the client's
        raise BadRequest(f"cannot decode image_url data: {exc}") from exc


def to_template_messages(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Any]]:
    """Chat-completions messages -> chat-template messages and the images, in order."""
    out: list[dict[str, Any]] = []
    images: list[Any] = []
    for message in messages:
        if "role" not in message:
            raise BadRequest("every message needs a role")
        content = message.get("content")
        if isinstance(content, list):
            items: list[dict[str, Any]] = []
            for part in content:
                kind = part.get("type")
                if kind == "text":
                    items.append({"type": "text", "text": part.get("text", "")})
                elif kind == "image_url":
                    image = _decode_image((part.get("image_url") or {}).get("url", ""))
                    images.append(image)
                    items.append({"type": "image", "image": image})
                else:
                    raise BadRequest(f"unsupported content part type {kind!r}")
            content = items
        elif content is None:
            content = ""
        out.append({"role": message["role"], "content": content})
    return out, images


class ChatServer:
    """The model behind the HTTP handler (one generate at a time)."""

    def __init__(self, generator: QwenVLGenerator, served_name: str, *, fail_first: int = 0,
                 delay_s: float = 0.0):
        self.generator = generator
        self.served_name = served_name
        self.fail_first = fail_first
        self.delay_s = delay_s
        self.chat_requests = 0
        self._failures_left = fail_first
        self._lock = threading.Lock()
        self._generate_lock = threading.Lock()

    def set_faults(self, body: dict[str, Any]) -> dict[str, Any]:
        """Test hook: fail the next `fail_next` chat requests, delay each by `delay_s`."""
        with self._lock:
            self._failures_left = int(body.get("fail_next", 0))
            self.fail_first = self._failures_left
            self.delay_s = float(body.get("delay_s", 0.0))
            return {"fail_next": self._failures_left, "delay_s": self.delay_s}

    def models(self) -> dict[str, Any]:
        return {"object": "list", "data": [{
            "id": self.served_name, "object": "model", "created": int(time.time()),
            "owned_by": "qwen-cua", "root": self.generator.model_id, "max_model_len": 32768,
        }]}

    def chat(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.chat_requests += 1
            fail = self._failures_left > 0
            if fail:
                self._failures_left -= 1
            delay_s = self.delay_s
        if fail:
            return 500, _error(500, "injected failure (fault injection is on)",
                               "InternalServerError")
        if delay_s:
            time.sleep(delay_s)  # injected latency, to exercise client timeouts
        model = body.get("model")
        if model != self.served_name:
            return 404, _error(404, f"The model `{model}` does not exist.", "NotFoundError")
        try:
            messages, images = to_template_messages(body.get("messages") or [])
        except BadRequest as exc:
            return 400, _error(400, str(exc), "BadRequestError")
        temperature = float(body.get("temperature", 1.0) if body.get("temperature") is not None
                            else 1.0)
        sampling = SamplingParams(
            greedy=temperature == 0.0, temperature=temperature,
            top_p=float(body.get("top_p") or 1.0), top_k=int(body.get("top_k") or 0),
            presence_penalty=float(body.get("presence_penalty") or 0.0),
            repetition_penalty=float(body.get("repetition_penalty") or 1.0),
            seed=body.get("seed"),
        )
        max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or 256)
        with self._generate_lock:  # one generate at a time: the model is not re-entrant
            generation = self.generator.generate([(messages, images)], sampling, max_tokens)[0]
        tokenizer = self.generator.encoder.tokenizer
        as_ids = bool(body.get("return_tokens_as_token_ids"))
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": generation.text},
            "finish_reason": "stop" if generation.finished else "length",
        }
        if body.get("logprobs"):
            choice["logprobs"] = {"content": [
                {"token": f"token_id:{token}" if as_ids else tokenizer.decode([token]),
                 "logprob": logprob, "bytes": None, "top_logprobs": []}
                for token, logprob in zip(generation.response_token_ids,
                                          generation.response_logprobs, strict=True)
            ]}
        answer: dict[str, Any] = {
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
            "created": int(time.time()), "model": self.served_name, "choices": [choice],
            "usage": {
                "prompt_tokens": len(generation.prompt_token_ids),
                "completion_tokens": len(generation.response_token_ids),
                "total_tokens": len(generation.prompt_token_ids)
                + len(generation.response_token_ids),
            },
        }
        if body.get("return_token_ids"):
            answer["prompt_token_ids"] = generation.prompt_token_ids
            choice["token_ids"] = generation.response_token_ids
        return 200, answer


def _error(code: int, message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def make_handler(server: ChatServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            logger.info("%s " + format, self.address_string(), *args)

        def _send(self, code: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            if self.path.rstrip("/") in ("/v1/models", "/models"):
                self._send(200, server.models())
            elif self.path.rstrip("/") in ("/health", "/v1/health"):
                self._send(200, {"status": "ok"})
            else:
                self._send(404, _error(404, f"no route {self.path}", "NotFoundError"))

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            route = self.path.rstrip("/")
            if route not in ("/v1/chat/completions", "/chat/completions", "/faults"):
                self._send(404, _error(404, f"no route {self.path}", "NotFoundError"))
                return
            try:
                body = json.loads(raw.decode() or "{}")
            except json.JSONDecodeError as exc:
                self._send(400, _error(400, f"request body is not JSON: {exc}", "BadRequestError"))
                return
            if route == "/faults":
                self._send(200, server.set_faults(body))
                return
            try:
                code, payload = server.chat(body)
            except Exception as exc:  # noqa: BLE001 - report, keep serving
                logger.exception("chat request failed")
                code, payload = 500, _error(500, f"{type(exc).__name__}: {exc}",
                                            "InternalServerError")
            self._send(code, payload)

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="OpenAI-compatible server for a local Qwen-VL "
                                     "checkpoint (tests and CPU demos).")
    parser.add_argument("model", help="checkpoint folder or hub id")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--served-model-name", default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--fail-first", type=int, default=0,
                        help="answer the first N chat requests with HTTP 500")
    parser.add_argument("--delay-s", type=float, default=0.0,
                        help="wait this long before answering each chat request")
    parser.add_argument("--min-pixels", type=int, default=None,
                        help="image budget: smallest resized area (default: the checkpoint's)")
    parser.add_argument("--max-pixels", type=int, default=None,
                        help="image budget: largest resized area (default: the checkpoint's)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    generator = QwenVLGenerator(args.model, device=args.device, dtype=args.dtype,
                                min_pixels=args.min_pixels, max_pixels=args.max_pixels)
    chat = ChatServer(generator, args.served_model_name or args.model,
                      fail_first=args.fail_first, delay_s=args.delay_s)
    httpd = ThreadingHTTPServer((args.host, args.port), make_handler(chat))
    host, port = httpd.server_address[:2]
    print(f"READY http://{host}:{port}/v1", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()


if __name__ == "__main__":
    main()
